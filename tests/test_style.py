"""The codebase is ruff-clean (lint and format, configured in pyproject.toml): checked with every run."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")  # the dev group's pinned ruff, beside this interpreter


@pytest.mark.parametrize("command", [["check", "--no-fix"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    out = subprocess.run([str(RUFF), *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"uv run ruff {' '.join(command)} .\n{out.stdout[-3000:]}{out.stderr[-1000:]}"
