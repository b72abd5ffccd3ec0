"""The sweep's results: reading them back, the dense reference, the accuracy curves and summary.

What a point holds is declared in ``columns.py``. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunelab import atomic, paths
from prunelab.errors import PrunelabError
from prunelab.report.columns import POINT_KEYS, SWEEP_CURVE_COLUMNS
from prunelab.report.curves import CurveValue, mean_of, mean_std, present
from prunelab.report.curves import curves as _curves
from prunelab.report.curves import summary as _summary

__all__ = [
    "CURVE_VALUES",
    "SWEEP_CURVE_COLUMNS",
    "baselines",
    "curves",
    "load_sweep",
    "point_values",
    "summary",
    "versus_baseline",
]

# curves.csv: accuracy and loss against k, with the parameters left (the points' mean at k)
CURVE_VALUES: dict[str, CurveValue] = {
    "params": lambda at, regime: mean_of(at, "nonzero_params")[0],
    "accuracy": lambda at, regime: mean_of(at, f"{regime.prefix}_test_accuracy")[0],
    "accuracy_std": lambda at, regime: mean_of(at, f"{regime.prefix}_test_accuracy")[1],
    "loss": lambda at, regime: mean_of(at, f"{regime.prefix}_test_loss")[0],
    "loss_std": lambda at, regime: mean_of(at, f"{regime.prefix}_test_loss")[1],
    "seeds": lambda at, regime: len(present(at, f"{regime.prefix}_test_accuracy")),
}


def point_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The measured values a sweep point keeps (structure's before/after counts go to the prune stage only)."""
    return {k: v for k, v in values.items() if k in POINT_KEYS}


def load_sweep(
    path: str | Path, method: str, sparsities: Sequence[float], seed: int | None = None
) -> list[dict[str, Any]]:
    """Read one method's sweep result (one seed) and check it holds exactly the requested points."""
    path = Path(path)
    stage = f"sweep@{method}" + (f"-{seed}" if seed is not None else "")
    if not path.exists():
        raise PrunelabError(f"sweep result {path} is missing: run `dvc repro` (stage {stage})")
    points = atomic.read_json(path)["points"]
    found = [p["sparsity"] for p in points]
    if sorted(found) != sorted(sparsities):
        raise PrunelabError(
            f"{path} holds sparsities {found}, but sweep.sparsities is {list(sparsities)}: it is stale; run `dvc repro`"
        )
    return points


def baselines(seeds: Sequence[int]) -> dict[str, Any]:
    """The dense baselines of ``seeds`` as one reference: mean and spread of their test numbers, export size."""
    records = [atomic.read_json(paths.baseline_metrics(s)) for s in seeds]
    dense: dict[str, Any] = {"test_accuracies": [b["test_accuracy"] for b in records]}
    for key in ("test_accuracy", "test_loss"):
        dense[key], dense[f"{key}_std"] = mean_std([b[key] for b in records])
    dense["export_mib"] = mean_std([b["export_bytes"] for b in records])[0] / 2**20
    return dense


def curves(points_by_method: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """results/plots/curves.csv: per method, regime and k, the mean over seeds (``SWEEP_CURVE_COLUMNS``)."""
    return _curves(_rows(points_by_method), CURVE_VALUES)


def summary(
    points_by_method: Mapping[str, list[dict[str, Any]]], baseline_accuracies: Sequence[float], tolerance: float
) -> dict[str, Any]:
    """results/sweep_summary.json: per method and regime, the largest k whose mean accuracy over seeds
    stays within ``tolerance`` of the dense baselines' mean, with the spread over seeds there and at the largest k."""
    baseline, baseline_std = mean_std(list(baseline_accuracies))
    head = {
        "baseline_test_accuracy": baseline,
        "baseline_test_accuracy_std": baseline_std,
        "seeds": len(baseline_accuracies),
    }
    return head | _summary(_rows(points_by_method), baseline, tolerance)


def _rows(points_by_method: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{**p, "method": method} for method, points in points_by_method.items() for p in points]


def versus_baseline(test_accuracy: float, params: int, baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluate stage's comparison with the dense baseline (metrics/baseline.json)."""
    return {
        "baseline_test_accuracy": baseline["test_accuracy"],
        "accuracy_drop": baseline["test_accuracy"] - test_accuracy,
        # physically removed filters or units; masks leave the count unchanged (see compression_ratio)
        "baseline_params": baseline["params"],
        "param_reduction": 1 - params / baseline["params"],
    }
