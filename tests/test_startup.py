"""A stage process starts fast: it imports what it uses when it uses it, and its collector waits.

Each check runs where an eager import would show: in a fresh interpreter (``sys.modules``
of this one holds whatever earlier tests imported). See track/startup.py and
docs/performance.md#where-the-time-goes for the seconds at stake.
"""

import gc
import json
import os
import subprocess
import sys

from prunelab import track
from prunelab.track import startup


def fresh(code: str, **env: str) -> dict:
    """What ``code`` prints last (JSON), run by a fresh interpreter with ``env`` added."""
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MLFLOW_TRACKING_URI")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_stage_modules_import_no_mlflow_pandas_or_torch_export_tracer():
    """torch.export's tracer (dynamo) comes with the first export, pandas and mlflow with the run."""
    code = (
        "import json, sys\n"
        "import prunelab.pipeline.runner, prunelab.track\n"
        "early = sorted(m for m in ('mlflow', 'pandas', 'torch') if m in sys.modules)\n"
        "for name in ('fetch', 'baseline', 'prune', 'finetune', 'compress', 'evaluate', 'sweep', 'plot',"
        " 'efficiency'):\n"
        "    __import__('prunelab.pipeline.' + name)\n"
        "late = sorted(m for m in ('mlflow', 'pandas', 'torch._dynamo', 'torch.export._trace') if m in sys.modules)\n"
        "print(json.dumps({'early': early, 'late': late}))"
    )
    assert fresh(code) == {"early": [], "late": []}


def test_a_rank_other_than_0_goes_through_its_run_without_mlflow_and_collects_once_it_starts():
    code = """
import atexit, gc, json, sys
seen = {}
# registered before the runner's own exit handler, so it runs after it (atexit is last in, first out)
atexit.register(lambda: print(json.dumps(seen | {"frozen_at_exit": gc.get_freeze_count()})))
from prunelab import track
from prunelab.pipeline import runner

def main():
    seen["collecting_while_importing"] = gc.isenabled()
    with track.start_run("stage", params={"a": 1}, tags=track.run_tags("stage")) as run:
        seen["run"] = run
        seen["collecting_in_the_run"] = gc.isenabled()
        seen["frozen_at_start"] = gc.get_freeze_count()
        track.log_metrics({"loss": 1.0}, step=1)
        track.log_history([{"epoch": 1, "loss": 1.0}])
    seen["mlflow"] = "mlflow" in sys.modules
    global kept
    kept = [[] for _ in range(5000)]  # alive at exit, made after the run started

runner.run(main)
"""
    seen = fresh(code, RANK="1", WORLD_SIZE="2")
    assert seen["run"] is None and seen["mlflow"] is False
    assert seen["collecting_while_importing"] is False and seen["collecting_in_the_run"] is True
    assert seen["frozen_at_start"] > 0
    assert seen["frozen_at_exit"] > seen["frozen_at_start"]  # what the work made is frozen before Python ends


def test_a_writer_collects_again_once_its_run_has_started(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    was_enabled = gc.isenabled()
    startup.hold()
    try:
        assert not gc.isenabled()
        with track.start_run("stage", params={"a": 1}, tags={"stage": "stage"}) as run:
            assert run is not None and gc.isenabled()
    finally:
        startup.release()
        if was_enabled:
            gc.enable()


def test_someone_elses_disabled_collector_stays_theirs():
    gc.disable()
    try:
        startup.hold()
        startup.release()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_first_memory_measurement_freezes_what_came_after_the_imports():
    """Else every later measurement walks all of torch.export's objects again (docs/performance.md)."""
    code = """
import gc, json
from prunelab.measure.memory import PeakMemory
from prunelab.track import startup
startup.hold()
startup.release()
after_imports = gc.get_freeze_count()
made_later = [{} for _ in range(5000)]
with PeakMemory("cpu"):
    pass
print(json.dumps([after_imports, gc.get_freeze_count()]))
"""
    after_imports, after_measuring = fresh(code)
    assert after_measuring > after_imports + 5000
