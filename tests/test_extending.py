"""docs/extending.md: a method, a metric and a stage added from outside, run as the page shows them.

A throwaway method is registered from a module written to a temporary folder, exactly as
the page shows it, then run through the prune stage's own code and through the sweep; the
page's metric is measured; its stage runs, and its dvc.yaml deps cover what it imports.
"""

import copy
import csv
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import yaml
from imports import closure, covered

from prunelab import atomic
from prunelab.config import FinetuneConfig
from prunelab.measure import METRICS, Column, Metric, Subject
from prunelab.pipeline.sweep_points import Sweep, run_sweep
from prunelab.pruning import METHODS
from prunelab.pruning.options import configure, sweep_config
from prunelab.report import columns as report
from prunelab.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]

PAGE = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")


def doc_block(section: str, language: str = "python", index: int = 0) -> str:
    """The ``index``-th code block in ``language`` under the page's heading ``section``."""
    text = PAGE[PAGE.index(section) :]
    text = text[: text.index("\n### ", 1)] if "\n### " in text[1:] else text
    blocks = text.split(f"```{language}\n")[1:]
    return blocks[index].split("```")[0]


def load_module(folder: Path, name: str, source: str, monkeypatch):
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    return importlib.import_module(name)


@pytest.fixture
def first_k(tmp_path, monkeypatch):
    """The page's method, imported from a temporary module; the registry is restored afterwards."""
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    (tmp_path / "plugins").mkdir()
    module = load_module(tmp_path / "plugins", "first_k_method", doc_block("### A pruning method"), monkeypatch)
    yield METHODS.get("first_k")
    sys.modules.pop(module.__name__, None)


def test_registering_the_same_name_twice_is_loud(first_k):
    with pytest.raises(ValueError, match="duplicate pruning method name 'first_k'"):
        METHODS.add(first_k)


def test_a_new_method_runs_through_the_prune_stage(
    first_k, tiny_model, tiny_model_cfg, tiny_data, tmp_path, monkeypatch
):
    work = tmp_path / "work"
    (work / "models/baseline").mkdir(parents=True)
    checkpoint.save(
        work / "models/baseline/seed-0.pt",
        checkpoint.Checkpoint(
            tiny_model, tiny_model_cfg, tiny_data.input_shape, tiny_data.num_classes, meta={"dataset": "toy"}
        ),
    )
    (work / "params.yaml").write_text(yaml.safe_dump({"prune": {"method": "first_k", "sparsity": 0.5}}))
    monkeypatch.chdir(work)
    for var in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(ROOT / "stages"))
    stage = importlib.import_module("prune")  # stages/prune.py, its main() as `dvc repro` runs it
    try:
        stage.main()
    finally:
        sys.modules.pop("prune", None)
    metrics = atomic.read_json(work / "metrics/prune.json")
    assert metrics["sparsity_prunable"] == 0.5  # tiny layers have an even number of weights
    pruned = checkpoint.load(work / "models/pruned.pt")
    assert pruned.meta["method"] == "first_k"
    for name, mask in pruned.masks.items():  # the method's own rule: the front half is gone
        flat = mask.flatten()
        assert not flat[: flat.numel() // 2].any() and flat[flat.numel() // 2 :].all(), name


def test_a_new_method_runs_through_the_sweep_and_its_table(first_k, tiny_model, tiny_data, tmp_path):
    assert sweep_config({"sweep": {"methods": ["weight", "first_k"]}}).methods == ("weight", "first_k")
    sweep = Sweep(tiny_model, tiny_data, FinetuneConfig(epochs=1, batch_size=64), seed=0, device=torch.device("cpu"))
    points = run_sweep(sweep, configure(), "first_k", [0.0, 0.5])
    assert [p["sparsity_prunable"] for p in points] == [0.0, 0.5]
    assert all(set(p) <= report.POINT_KEYS for p in points)
    path = atomic.write_csv(tmp_path / "sweep.csv", points, report.POINT_COLUMNS)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["first_k", "first_k"] and all(r["finetuned_test_accuracy"] for r in rows)


@pytest.fixture
def weight_norm(tmp_path, monkeypatch):
    """The page's metric, registered from a temporary module; the registry is restored afterwards."""
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))
    (tmp_path / "plugins").mkdir(exist_ok=True)
    module = load_module(tmp_path / "plugins", "weight_norm_metric", doc_block("### A metric"), monkeypatch)
    yield METRICS.get("weight_norm")
    sys.modules.pop(module.__name__, None)


def test_the_page_metric_measures(weight_norm, tiny_model):
    value = weight_norm(Subject(tiny_model))["weight_norm"]
    expected = torch.cat([p.detach().flatten() for p in tiny_model.parameters()]).norm()
    assert value == pytest.approx(float(expected), rel=1e-5)


def test_the_page_stage_runs_and_its_deps_cover_what_it_imports(
    weight_norm, tiny_model, tiny_model_cfg, tiny_data, tmp_path, monkeypatch
):
    # its work, importable under the name its script imports (as if it were in src/prunelab/pipeline/)
    work_module = tmp_path / "norms.py"
    work_module.write_text(doc_block("### A stage", index=0))
    spec = importlib.util.spec_from_file_location("prunelab.pipeline.norms", work_module)
    norms = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "prunelab.pipeline.norms", norms)
    spec.loader.exec_module(norms)
    # a workspace holding the two models it reads
    work = tmp_path / "work"
    for path, scale in (("models/baseline/seed-0.pt", 1.0), ("models/finetuned.pt", 0.5)):
        model = copy.deepcopy(tiny_model)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
        checkpoint.save(
            work / path, checkpoint.Checkpoint(model, tiny_model_cfg, tiny_data.input_shape, tiny_data.num_classes)
        )
    (work / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "sweep": {"seeds": [0]}}))
    monkeypatch.chdir(work)
    for var in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(ROOT / "stages"))  # its script imports _bootstrap from there
    (tmp_path / "stages").mkdir()
    script = load_module(tmp_path / "stages", "report_norms", doc_block("### A stage", index=1), monkeypatch)
    try:
        script.main()
    finally:
        sys.modules.pop("report_norms", None)
    written = atomic.read_json(work / "metrics/norms.json")
    assert written["finetuned"] == pytest.approx(written["baseline"] / 2, rel=1e-5) and written["baseline"] > 0
    # the dvc.yaml entry: every module the stage's process can import is a dep, and no src dep is idle
    entry = yaml.safe_load(doc_block("### A stage", "yaml"))["report_norms"]
    assert entry["cmd"] == "python stages/report_norms.py"
    needed = closure(work_module) | closure(tmp_path / "stages" / "report_norms.py")
    needed |= {Path("src/prunelab/pipeline/norms.py"), Path("stages/report_norms.py"), Path("stages/_bootstrap.py")}
    assert sorted(str(m) for m in needed if not covered(m, entry["deps"])) == []
    idle = [d for d in entry["deps"] if d.startswith(("src/", "stages/")) and not any(covered(m, [d]) for m in needed)]
    assert idle == []


def test_a_metric_declares_its_columns_and_may_return_no_others():
    metric = Metric(
        "weight_norm",
        "the L2 norm of all parameters",
        (Column("weight_norm", "L2 norm"),),
        lambda s: {"weight_norm": 1.0, "surprise": 2.0},
    )
    with pytest.raises(ValueError, match=r"metric 'weight_norm' returned undeclared columns \['surprise'\]"):
        metric(Subject(model=None))


def test_sweep_table_columns_come_from_the_metrics_declarations():
    declared = [c.name for c in METRICS.get("parameters").columns if c.table]
    assert report.POINT_COLUMNS[len(report.POINT_IDENTITY) : len(report.POINT_IDENTITY) + len(declared)] == declared
    hidden = {c.name for name in METRICS.names() for c in METRICS.get(name).columns if not c.point}
    assert "params_before" in hidden and not hidden & report.POINT_KEYS
    for regime, *_ in report.REGIMES:
        assert f"{regime}_test_accuracy" in report.POINT_COLUMNS
