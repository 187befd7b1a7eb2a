#!/usr/bin/env python3
"""The module import graph of src/, read from `crate::`, `super::` and `self::` paths.

Prints the import circles (strongly connected components of more than one file) and the
edges that run upward against the layer order below, then exits non-zero when there is
a circle. Test code (`tests.rs` files and `#[cfg(test)] mod tests` blocks) is left out: it
may reach anywhere.

    python3 tools/import-graph.py            # summary
    python3 tools/import-graph.py --edges    # every edge, "from -> to"
    python3 tools/import-graph.py --as FILE  # a JSON {"module": "layer head"} for trees
                                             # (an old checkout) whose files sit elsewhere
"""

import json
import os
import re
import sys

# Layers from the top (the process) to the bottom (leaves). A module imports from its own
# layer or from layers below it. Modules are matched by their first path segment; `None`
# means a leaf, the bottom layer.
LAYERS = [
    ("main", ["cli"]),
    ("app", ["app", "dev"]),
    ("edge", ["edge"]),
    ("generation", ["generation", "shared"]),
    ("proxy", ["proxy"]),
    ("upstream, websocket, tickets", ["upstream", "websocket", "tickets"]),
    ("auth", ["auth"]),
    ("config", ["config"]),
]
LEAF_RANK = len(LAYERS)


ALIASES = {}


def rank(module):
    head = module.split("::")[0]
    head = ALIASES.get(module, ALIASES.get(head, head))
    for i, (_, heads) in enumerate(LAYERS):
        if head in heads:
            return i
    return LEAF_RANK


def layer_name(r):
    return LAYERS[r][0] if r < LEAF_RANK else "leaves"


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) if parts else "crate"


def strip_tests(text):
    """Drops `#[cfg(test)] mod tests { ... }` blocks, which may import anything."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    return [p for item in items if item for p in expand(prefix + item)]


def references(text, module):
    """Every module path the text names, resolved to absolute `a::b::c` form."""
    refs = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)::[^;]+);", text):
        refs.extend(expand(m.group(1)))
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", text):
        refs.append(m.group(1))
    here = module.split("::") if module != "crate" else []
    resolved = []
    for ref in refs:
        parts = ref.split("::")
        base = list(here)
        if parts[0] == "crate":
            base, parts = [], parts[1:]
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
        resolved.append(base + [p.split(" as ")[0] for p in parts])
    return resolved


def main():
    if "--as" in sys.argv:
        with open(sys.argv[sys.argv.index("--as") + 1], encoding="utf-8") as fh:
            ALIASES.update(json.load(fh))
    src = os.environ.get("SRC") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "src"
    )
    modules = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs") and f != "tests.rs":
                path = os.path.join(root, f)
                modules[module_of(path, src)] = path
    edges = set()
    for module, path in modules.items():
        if module == "crate":
            continue
        with open(path, encoding="utf-8") as fh:
            text = strip_tests(fh.read())
        for parts in references(text, module):
            for n in range(len(parts), 0, -1):
                target = "::".join(parts[:n])
                if target in modules:
                    if target != module and not module.startswith(target + "::"):
                        edges.add((module, target))
                    break

    graph = {m: sorted(t for f, t in edges if f == m) for m in modules}
    circles = [c for c in sccs(graph) if len(c) > 1]
    upward = sorted((f, t) for f, t in edges if rank(t) < rank(f))

    if "--edges" in sys.argv:
        for f, t in sorted(edges):
            print(f"{f} -> {t}")
    print(f"modules: {len(modules) - 1}, import edges: {len(edges)}")
    print(f"import circles: {len(circles)}")
    for c in circles:
        print(f"  circle of {len(c)}: {', '.join(sorted(c))}")
    print(f"upward edges: {len(upward)}")
    for f, t in upward:
        print(f"  {f} ({layer_name(rank(f))}) -> {t} ({layer_name(rank(t))})")
    return 1 if circles else 0


def sccs(graph):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, []))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    comp.append(n)
                    if n == node:
                        break
                out.append(comp)
    return out


if __name__ == "__main__":
    sys.exit(main())
