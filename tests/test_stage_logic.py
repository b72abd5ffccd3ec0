"""What the prune, finetune, evaluate and sweep stages compute on each schedule, called as the
stage scripts call them (each script is argv → one of these calls), in a copy of the built
tiny project.

The process boundary (exit codes, one-line errors, `-S` values put back, which stages DVC
reruns) is tested once through `dvc exp run` in tests/test_pipeline_e2e.py; here the
polynomial, physical-unit and iterative paths run in this process, with their real files
and MLflow runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from project import copy_built, runs, set_params

from prunelab.errors import ConfigError

# the built project (a real `dvc repro prune`) underneath
pytestmark = pytest.mark.e2e


def read_json(proj: Path, rel: str):
    return json.loads((proj / rel).read_text())


@pytest.fixture
def proj(built, tmp_path, monkeypatch) -> Path:
    """A fresh copy per test, as the working directory: paths and the MLflow store are the copy's."""
    proj = copy_built(built, tmp_path / "prunelab")
    monkeypatch.chdir(proj)
    for name in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRUNELAB_TIMING", "quick")  # timings reach no exact output
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return proj


def prune_finetune_evaluate() -> None:
    from prunelab.pipeline.evaluate import evaluate
    from prunelab.pipeline.finetune import finetune
    from prunelab.pipeline.prune import prune

    prune()
    finetune()
    evaluate()


def test_polynomial_schedule_prunes_during_finetuning(proj, capsys):
    set_params(proj, prune={"schedule": "polynomial", "sparsity": 0.6, "steps": 3})
    prune_finetune_evaluate()
    assert "pruned gradually to sparsity 0.6" in capsys.readouterr().out
    assert read_json(proj, "metrics/prune.json")["sparsity_prunable"] == 0.0  # the ramp starts dense
    assert read_json(proj, "metrics/evaluate.json")["sparsity_prunable"] == pytest.approx(0.6, abs=1e-4)
    with open(proj / "metrics/finetune_history.csv") as fh:
        ramp = [float(r["sparsity"]) for r in csv.DictReader(fh)]
    assert ramp == sorted(ramp) and ramp[-1] == 0.6


def test_physical_unit_pruning_runs_through_prune_to_evaluate_and_the_sweep(proj):
    from prunelab.data import load_prepared
    from prunelab.export import load_export
    from prunelab.pipeline.sweep import sweep
    from prunelab.train.evaluate import evaluate

    set_params(proj, prune={"method": "unit", "physical": True, "sparsity": 0.5}, sweep={"methods": ["unit"]})
    prune_finetune_evaluate()
    prune = read_json(proj, "metrics/prune.json")
    assert prune["units_removed_fraction"] == pytest.approx(0.5, abs=0.01)
    assert prune["params_after"] < prune["params_before"] and prune["sparsity_prunable"] == 0.0
    result = read_json(proj, "metrics/evaluate.json")
    assert result["params"] == prune["params_after"] and result["param_reduction"] == pytest.approx(
        prune["param_reduction"]
    )
    # the reported accuracy is the smaller exported network's on the test split, exactly
    import torch

    smaller = load_export(next((proj / "models/export/finetuned").iterdir()), force="dense")
    test = load_prepared(proj / "data/prepared/dataset.pt").test
    assert result["test_accuracy"] == evaluate(smaller, test, torch.device("cpu"))["accuracy"]
    sweep("unit", 0)
    units = read_json(proj, "results/sweep/unit/seed-0.json")["points"]
    assert [p["units_removed_fraction"] for p in units] == pytest.approx([p["sparsity"] for p in units], abs=0.01)


def test_iterative_pruning_drives_prune_finetune_evaluate(proj, capsys):
    from prunelab.pipeline.prune import prune

    set_params(
        proj,
        prune={"schedule": "iterative", "rewind": "epoch:1", "sparsity": 0.9},
        sweep={"sparsities": [0.0, 0.5, 0.9]},
    )
    prune_finetune_evaluate()
    assert "replay baseline to epoch 1" in capsys.readouterr().out  # epoch:1 replays the first epoch, digest checked
    assert read_json(proj, "metrics/prune.json")["sparsity_prunable"] == pytest.approx(0.9, abs=1e-4)
    assert read_json(proj, "metrics/evaluate.json")["sparsity_prunable"] == pytest.approx(0.9, abs=1e-4)
    levels = [r for r in runs(proj) if r["name"].startswith("prune IMP k=")]
    assert sorted(r["name"] for r in levels) == ["prune IMP k=0", "prune IMP k=0.5", "prune IMP k=0.9"]
    stage_runs = [r for r in runs(proj) if r["tags"].get("stage") == "prune" and r not in levels]
    assert len(stage_runs) == 1
    assert {r["tags"].get("mlflow.parentRunId") for r in levels} == {stage_runs[0]["id"]}  # nested under it
    # rewinding to the baseline's last epoch leaves nothing to retrain: refused before anything is written
    before = (proj / "models/pruned.pt").read_bytes()
    set_params(proj, prune={"rewind": "epoch:2"})
    with pytest.raises(ConfigError) as refused:
        prune()
    assert "prune.rewind = 'epoch:2'" in str(refused.value) and "N < 2" in str(refused.value)
    assert (proj / "models/pruned.pt").read_bytes() == before
