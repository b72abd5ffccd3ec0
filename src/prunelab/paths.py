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
BASELINE_MODEL = MODELS_DIR / "baseline.pt"
PRUNED_MODEL = MODELS_DIR / "pruned.pt"
FINETUNED_MODEL = MODELS_DIR / "finetuned.pt"

METRICS_DIR = Path("metrics")
BASELINE_METRICS = METRICS_DIR / "baseline.json"
BASELINE_HISTORY = METRICS_DIR / "baseline_history.csv"
PRUNE_METRICS = METRICS_DIR / "prune.json"
FINETUNE_HISTORY = METRICS_DIR / "finetune_history.csv"
EVALUATE_METRICS = METRICS_DIR / "evaluate.json"

RESULTS_DIR = Path("results")
SWEEP_DIR = RESULTS_DIR / "sweep"  # one file per method, written by the sweep matrix
SWEEP_CSV = RESULTS_DIR / "sweep.csv"  # the whole sweep, one row per (method, sparsity)
PLOTS_DIR = RESULTS_DIR / "plots"
CURVES_CSV = PLOTS_DIR / "curves.csv"  # long format for `dvc plots show`
SWEEP_PNG = PLOTS_DIR / "sweep.png"
SWEEP_PARAMS_PNG = PLOTS_DIR / "sweep_params.png"  # the same curves against parameters left
SWEEP_SUMMARY = RESULTS_DIR / "sweep_summary.json"

# which stage writes each file that later stages load, so an error can say what to rerun
WRITTEN_BY = {PREPARED_DATA: "fetch_data", BASELINE_MODEL: "train_baseline", PRUNED_MODEL: "prune",
              FINETUNED_MODEL: "finetune"}


def writer(path: str | os.PathLike[str]) -> str | None:
    """The stage that writes ``path`` (None for a file no stage writes)."""
    return WRITTEN_BY.get(Path(path))


def sweep_result(method: str) -> Path:
    return SWEEP_DIR / f"{method}.json"


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
