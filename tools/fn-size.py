#!/usr/bin/env python3
"""Files over 400 lines and functions over 60 lines in src/ (test code included).

A function runs from its `fn` line to the brace that closes its body; braces inside
strings, chars and comments are skipped. Exits non-zero when anything is over.

    python3 tools/fn-size.py              # limits 400 lines per file, 60 per function
    python3 tools/fn-size.py --top 10     # also the ten longest functions
"""

import os
import re
import sys

MAX_FILE, MAX_FN = 400, 60
FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def code_only(line, state):
    """The line without string, char and comment contents; `state` carries a block comment."""
    out, i = [], 0
    while i < len(line):
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"], i = False, end + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"], i = True, i + 2
            continue
        if c == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    state = {"block": False}
    code = [code_only(l, state) for l in lines]
    for n, line in enumerate(code):
        m = FN.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for k in range(n, len(code)):
            if not opened and ";" in code[k] and "{" not in code[k]:
                break  # a declaration without a body (trait method)
            for ch in code[k]:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if opened and depth == 0:
                yield m.group(1), n + 1, k - n + 1
                break


def main():
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    over, sizes = 0, []
    for root, _, files in sorted(os.walk(src)):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, os.path.join(src, ".."))
            with open(path, encoding="utf-8") as fh:
                count = fh.read().count("\n")
            if count > MAX_FILE:
                print(f"file over {MAX_FILE} lines: {rel} ({count})")
                over += 1
            for name, line, length in functions(path):
                sizes.append((length, f"{rel}:{line} {name}"))
                if length > MAX_FN:
                    print(f"function over {MAX_FN} lines: {rel}:{line} {name} ({length})")
                    over += 1
    if "--top" in sys.argv:
        for length, where in sorted(sizes, reverse=True)[: int(sys.argv[sys.argv.index("--top") + 1])]:
            print(f"  {length:4} {where}")
    print(f"{len(sizes)} functions; over the limits: {over}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
