"""Shared fixtures for the chart and Dockerfile tests (run by `bash .ci/run`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def gatehouse_bin() -> Path:
    """The debug binary, as `cargo build --locked` leaves it (or $GATEHOUSE_BIN).

    Without $GATEHOUSE_BIN the binary is built here, so a plain `pytest tests/chart` never
    checks the rendered config with a stale binary.
    """
    given = os.environ.get("GATEHOUSE_BIN")
    if given:
        path = Path(given).resolve()
    else:
        subprocess.run(
            ["cargo", "build", "--locked", "--bin", "gatehouse"], cwd=REPO, check=True
        )
        target = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
        path = target / "debug" / "gatehouse"
    assert path.is_file(), f"gatehouse binary not found at {path}"
    return path
