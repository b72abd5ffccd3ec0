"""dvc.yaml agrees with paths.py, with the params each stage really reads, and with the code it imports."""

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml
from imports import closure, covered
from project import copy_project, sh

from prunelab import paths
from prunelab.config import load_params

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _entries(items):
    for item in items or []:
        yield from (item if isinstance(item, dict) else {item: None})


def test_stage_names_and_outputs_match_paths_py():
    stages = DVC["stages"]
    assert list(stages) == [
        "fetch_data",
        "train_baseline",
        "prune",
        "finetune",
        "compress",
        "evaluate",
        "sweep",
        "plot",
        "efficiency",
    ]
    outs = {
        s: set(_entries(st.get("outs"))) | set(_entries(st.get("metrics"))) | set(_entries(st.get("plots")))
        for s, st in stages.items()
    }
    assert str(paths.PREPARED_DATA) in outs["fetch_data"] and str(paths.DATA_SUMMARY) in outs["fetch_data"]
    assert str(paths.LOCAL_SOURCES) in stages["fetch_data"]["deps"]
    assert (ROOT / paths.LOCAL_SOURCES).is_dir()  # tracked in git (README.md), so the dependency always exists
    per_seed = {str(f("${item.seed}")) for f in (paths.baseline_model, paths.baseline_metrics, paths.baseline_history)}
    assert per_seed <= outs["train_baseline"]
    assert str(paths.baseline_model("${seed}")) in stages["prune"]["deps"]  # the single path's replicate
    assert {str(paths.PRUNED_MODEL), str(paths.PRUNE_METRICS)} <= outs["prune"]
    assert {str(paths.FINETUNED_MODEL), str(paths.FINETUNE_HISTORY)} <= outs["finetune"]
    assert str(paths.EVALUATE_METRICS) in outs["evaluate"]
    assert {str(paths.COMPRESSED_EXPORT), str(paths.COMPRESS_METRICS)} <= outs["compress"]
    assert str(paths.FINETUNED_MODEL) in stages["compress"]["deps"]
    assert str(paths.sweep_result("${item.method}", "${item.seed}")) in outs["sweep"]
    assert str(paths.baseline_model("${item.seed}")) in stages["sweep"]["deps"]
    assert {str(paths.SWEEP_CSV), str(paths.PLOTS_DIR), str(paths.SWEEP_SUMMARY)} <= outs["plot"]


def test_every_declared_param_exists_and_prune_sparsity_is_read_only_where_it_matters():
    params = load_params(ROOT / "params.yaml")
    readers = {}
    for name, stage in DVC["stages"].items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"{name} declares unknown param {key}"
                node = node[part]
            # a whole section declared counts as itself and as each of its keys
            for full in [key, *([f"{key}.{k}" for k in node] if isinstance(node, dict) else [])]:
                readers.setdefault(full, []).append(name)
    assert readers["prune.sparsity"] == ["prune"]
    assert readers["prune.method"] == ["prune"]  # the sweep has its own list of methods
    assert sorted(readers["prune.schedule"]) == ["prune", "sweep"]
    assert "train" in readers and readers["train"] == ["train_baseline"]
    assert "sweep.methods" not in [k for k, v in readers.items() if "sweep" in v]
    # augmentation changes training, never the prepared dataset
    assert sorted(readers["data.augment"]) == ["finetune", "sweep", "train_baseline"]
    # replicates are cached on their own: a seed's stages read their seed from the matrix
    # (the command), so adding one to sweep.seeds changes no other stage's params
    assert sorted(readers["sweep.seeds"]) == ["efficiency", "plot"]
    assert "seed" not in [k for k, v in readers.items() if {"train_baseline", "sweep"} & set(v)]
    assert {"data.name", "data.root", "data.image_size"} <= {k for k, v in readers.items() if "fetch_data" in v}


def test_stage_scripts_are_argv_then_one_library_call():
    """A stage script parses argv and calls prunelab.pipeline: no closures, no loops, no logic of its own."""
    for stage in DVC["stages"].values():
        script = ROOT / stage["cmd"].split()[1]
        tree = ast.parse(script.read_text(encoding="utf-8"))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Lambda)]
        assert [f.name for f in functions if isinstance(f, ast.FunctionDef)] == ["main"], f"{script}: one main()"
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.For | ast.While | ast.comprehension)], script
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert {m for m in imported if m.startswith("prunelab")} <= {"prunelab.pipeline"} | {
            m for m in imported if m.startswith("prunelab.pipeline.")
        }, f"{script} reaches past prunelab.pipeline"
        assert len(script.read_text().splitlines()) <= 30, f"{script} is not thin"


def test_each_stage_depends_on_every_module_its_process_imports():
    """The cache cannot go stale: whatever the stage can import is one of its deps, and no src dep is idle."""
    for name, stage in DVC["stages"].items():
        script = ROOT / stage["cmd"].split()[1]
        deps = [str(d) for d in stage["deps"]]
        needed = closure(script) | {Path("stages/_bootstrap.py"), script.relative_to(ROOT)}
        missing = sorted(str(m) for m in needed if not covered(m, deps))
        assert missing == [], f"stage {name} imports {missing} but does not depend on them"
        idle = [d for d in deps if d.startswith(("src/", "stages/")) and not any(covered(m, [d]) for m in needed)]
        assert idle == [], f"stage {name} depends on {idle}, which its process never imports"


def test_import_closure_follows_imports_inside_functions_and_packages(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from prunelab.train import checkpoint\n")
    found = closure(script)
    assert Path("src/prunelab/train/checkpoint.py") in found  # a submodule named in `from … import`
    assert Path("src/prunelab/train/__init__.py") in found  # its package runs first
    assert Path("src/prunelab/models/__init__.py") in found  # checkpoint imports models: followed
    assert not covered(Path("src/prunelab/train/augment.py"), ["src/prunelab/training.py"])


@pytest.mark.e2e
def test_editing_augmentation_reruns_the_training_stages(tmp_path):
    """dvc status in a copy: the locked pipeline is current, and an edit to augment.py makes every stage that
    trains (or imports training) out of date, and only those."""
    proj = copy_project(tmp_path / "proj", {})
    shutil.copy(ROOT / "dvc.lock", proj / "dvc.lock")
    augment = proj / "src/prunelab/train/augment.py"

    def changed_code() -> dict[str, set[str]]:
        status = json.loads(sh(proj, "dvc", "status", "--json").stdout or "{}")
        found: dict[str, set[str]] = {}
        for stage, entries in status.items():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    found.setdefault(stage, set()).update(
                        d for d in entry.get("changed deps", {}) if d.startswith("src/")
                    )
        return {s: d for s, d in found.items() if d}

    assert changed_code() == {}, "dvc.lock does not match the code: run `dvc repro` and commit dvc.lock"
    augment.write_text(augment.read_text() + "\n# an edit\n")
    changed = changed_code()
    trains = {s for s, st in DVC["stages"].items() if covered(augment.relative_to(proj), st["deps"])}
    assert {"train_baseline", "finetune", "sweep"} <= trains
    assert {s.split("@")[0] for s in changed} == trains
    assert all(d == {"src/prunelab/train"} for d in changed.values())
