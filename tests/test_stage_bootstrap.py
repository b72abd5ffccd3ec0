"""stages/_bootstrap.py: the checkout's own src/ first; passive OpenMP waits only in exp copies."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[1] / "stages" / "_bootstrap.py"
PROBE = "import _bootstrap, os, sys; print(sys.path[0]); print(os.environ.get('OMP_WAIT_POLICY', '-'))"


def probe(root: Path, **env: str) -> list[str]:
    (root / "stages").mkdir(parents=True)
    shutil.copy(BOOTSTRAP, root / "stages")
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root / "stages",
        env=clean | {"PYTHONPATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.parametrize("where, policy", [("repo", "-"), ("repo/.dvc/tmp/exps/tmpab12", "PASSIVE")])
def test_src_first_and_wait_policy(tmp_path, where, policy):
    root = tmp_path / where
    src, seen = probe(root)
    assert src == str(root.resolve() / "src")
    assert seen == policy


def test_user_setting_wins(tmp_path):
    assert probe(tmp_path / "r/.dvc/tmp/exps/tmpx", OMP_WAIT_POLICY="ACTIVE")[1] == "ACTIVE"
