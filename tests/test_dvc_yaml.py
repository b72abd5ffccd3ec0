"""dvc.yaml agrees with paths.py and with the params each stage really reads."""

from pathlib import Path

import yaml

from prunelab import paths
from prunelab.config import load_params

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _entries(items):
    for item in items or []:
        yield from (item if isinstance(item, dict) else {item: None})


def test_stage_names_and_outputs_match_paths_py():
    stages = DVC["stages"]
    assert list(stages) == ["fetch_data", "train_baseline", "prune", "finetune", "evaluate", "sweep", "plot",
                            "efficiency"]
    outs = {s: set(_entries(st.get("outs"))) | set(_entries(st.get("metrics"))) | set(_entries(st.get("plots")))
            for s, st in stages.items()}
    assert str(paths.PREPARED_DATA) in outs["fetch_data"] and str(paths.DATA_SUMMARY) in outs["fetch_data"]
    assert str(paths.LOCAL_SOURCES) in stages["fetch_data"]["deps"]
    assert (ROOT / paths.LOCAL_SOURCES).is_dir()  # tracked in git (README.md), so the dependency always exists
    per_seed = {str(f("${item.seed}")) for f in (paths.baseline_model, paths.baseline_metrics, paths.baseline_history)}
    assert per_seed <= outs["train_baseline"]
    assert str(paths.baseline_model("${seed}")) in stages["prune"]["deps"]  # the single path's replicate
    assert {str(paths.PRUNED_MODEL), str(paths.PRUNE_METRICS)} <= outs["prune"]
    assert {str(paths.FINETUNED_MODEL), str(paths.FINETUNE_HISTORY)} <= outs["finetune"]
    assert str(paths.EVALUATE_METRICS) in outs["evaluate"]
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


def test_stage_scripts_exist_and_are_thin():
    for name, stage in DVC["stages"].items():
        script = ROOT / stage["cmd"].split()[1]
        assert script.exists(), script
        assert len(script.read_text().splitlines()) < 80, f"{script} is not thin"


# Modules whose changes change no number a stage writes: config reading, file writing,
# logging, errors. A stage's data comes from its prepared-dataset dependency, not from
# the loader code (fetch_data itself does depend on data/).
NOT_RESULTS = {"atomic", "checkpoint", "config", "paths", "stage", "tracking", "errors", "validate"}


def imported_modules(script: Path) -> set[str]:
    """prunelab modules a stage script imports directly, as paths relative to the repo root."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunelab"):
            names = [node.module + "." + a.name for a in node.names] if node.module == "prunelab" else [node.module]
            for name in names:
                parts = name.split(".")[1:]
                if parts[0] in NOT_RESULTS or (parts[0] == "data" and script.stem != "fetch_data"):
                    continue
                rel = Path("src/prunelab", *parts)
                found.add(str(rel) if (ROOT / rel).is_dir() else f"{rel}.py")
    return found


def test_each_stage_depends_on_the_code_that_computes_its_results():
    for name, stage in DVC["stages"].items():
        script = ROOT / "stages" / f"{name}.py"
        deps = [str(d) for d in stage["deps"]]
        for module in imported_modules(script):
            assert any(module == d or module.startswith(d.rstrip("/") + "/") for d in deps), \
                f"stage {name} imports {module} but does not depend on it"
