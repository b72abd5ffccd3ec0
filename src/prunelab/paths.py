"""Every artifact path, defined once. dvc.yaml names the same files; tests check they agree."""

from __future__ import annotations

import os
from pathlib import Path

PARAMS = Path("params.yaml")

DATA_DIR = Path("data")
PREPARED_DATA = DATA_DIR / "prepared" / "dataset.pt"  # output of fetch_data
DOWNLOAD_CACHE = DATA_DIR / "downloads"  # raw archives fetched from the internet
LOCAL_SOURCES = DATA_DIR / "local"  # users' own dataset files; fetch_data depends on this folder
DATA_SUMMARY = Path("metrics") / "data.json"

MODELS_DIR = Path("models")
BASELINE_DIR = MODELS_DIR / "baseline"  # one dense model per seed of sweep.seeds: seed-<s>.pt
PRUNED_MODEL = MODELS_DIR / "pruned.pt"
FINETUNED_MODEL = MODELS_DIR / "finetuned.pt"
# exports (prunelab.export): one folder per model, holding model.pt2 or model.sparse (the
# format follows the pruning, so the folder is the DVC output); the dense baseline's is a .pt2
EXPORT_DIR = MODELS_DIR / "export"
PRUNED_EXPORT = EXPORT_DIR / "pruned"
FINETUNED_EXPORT = EXPORT_DIR / "finetuned"
COMPRESSED_EXPORT = EXPORT_DIR / "compressed"  # the fine-tuned model quantized and encoded (model.sparse, v2)
EXPORT_STEM = "model"

METRICS_DIR = Path("metrics")
BASELINE_METRICS_DIR = METRICS_DIR / "baseline"  # seed-<s>.json
BASELINE_HISTORY_DIR = METRICS_DIR / "baseline_history"  # seed-<s>.csv: one DVC plot per seed
PRUNE_METRICS = METRICS_DIR / "prune.json"
FINETUNE_HISTORY = METRICS_DIR / "finetune_history.csv"
EVALUATE_METRICS = METRICS_DIR / "evaluate.json"
COMPRESS_METRICS = METRICS_DIR / "compress.json"
# measurements (timings, peak memory): they differ from run to run, so they are kept out of
# every file above, whose hashes dvc.lock pins
SPEED_DIR = METRICS_DIR / "speed"
BASELINE_SPEED_DIR = SPEED_DIR / "baseline"  # seed-<s>.json
EVALUATE_SPEED = SPEED_DIR / "evaluate.json"

RESULTS_DIR = Path("results")
SWEEP_DIR = RESULTS_DIR / "sweep"  # <method>/seed-<s>.json, written by the sweep matrix
SWEEP_CSV = RESULTS_DIR / "sweep.csv"  # the whole sweep, one row per (method, seed, sparsity)
PLOTS_DIR = RESULTS_DIR / "plots"
CURVES_CSV = PLOTS_DIR / "curves.csv"  # long format for `dvc plots show`
SWEEP_PNG = PLOTS_DIR / "sweep.png"
SWEEP_PARAMS_PNG = PLOTS_DIR / "sweep_params.png"  # the same curves against parameters left
SWEEP_SUMMARY = RESULTS_DIR / "sweep_summary.json"
SWEEP_SPEED_DIR = RESULTS_DIR / "speed"  # <method>/seed-<s>.json: each point's timings (measurements)
EFFICIENCY_DIR = RESULTS_DIR / "efficiency"  # accuracy against latency and size: measurements
EFFICIENCY_CSV = EFFICIENCY_DIR / "points.csv"  # every point: exact cost and its timings, one row each
EFFICIENCY_CURVES = EFFICIENCY_DIR / "curves.csv"  # mean over seeds per method, regime and k (DVC plots)
EFFICIENCY_PNG = EFFICIENCY_DIR / "efficiency.png"
EFFICIENCY_SUMMARY = EFFICIENCY_DIR / "summary.json"  # what each method buys where accuracy holds

# which stage writes each file that later stages load, so an error can say what to rerun
WRITTEN_BY = {
    PREPARED_DATA: "fetch_data",
    PRUNED_MODEL: "prune",
    FINETUNED_MODEL: "finetune",
    PRUNED_EXPORT: "prune",
    FINETUNED_EXPORT: "finetune",
    COMPRESSED_EXPORT: "compress",
}


def _seeded(folder: Path, seed: int, suffix: str) -> Path:
    return folder / f"seed-{seed}{suffix}"


def baseline_model(seed: int) -> Path:
    return _seeded(BASELINE_DIR, seed, ".pt")


def baseline_metrics(seed: int) -> Path:
    return _seeded(BASELINE_METRICS_DIR, seed, ".json")


def baseline_history(seed: int) -> Path:
    return _seeded(BASELINE_HISTORY_DIR, seed, ".csv")


def sweep_result(method: str, seed: int) -> Path:
    return _seeded(SWEEP_DIR / method, seed, ".json")


def sweep_speed(method: str, seed: int) -> Path:
    return _seeded(SWEEP_SPEED_DIR / method, seed, ".json")


def baseline_export(seed: int) -> Path:
    return _seeded(BASELINE_DIR, seed, ".pt2")


def baseline_speed(seed: int) -> Path:
    return _seeded(BASELINE_SPEED_DIR, seed, ".json")


def writer(path: str | os.PathLike[str]) -> str | None:
    """The stage that writes ``path`` (None for a file no stage writes)."""
    path = Path(path)
    if path.parent == BASELINE_DIR and path.stem.startswith("seed-"):
        return f"train_baseline@{path.stem[len('seed-') :]}"  # the DVC matrix stage of that seed
    if path.parent in (PRUNED_EXPORT, FINETUNED_EXPORT):  # a file in an export folder
        return WRITTEN_BY[path.parent]
    return WRITTEN_BY.get(path)


def repo_root() -> Path:
    """The main repository's root.

    `dvc exp run --queue/--temp` runs stages in a temporary copy but sets DVC_ROOT to
    the parent repo, so anything that must outlive the run (the MLflow store) uses this.
    """
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists():
            return candidate
    return here


def mlruns_dir() -> Path:
    return repo_root() / "mlruns"
