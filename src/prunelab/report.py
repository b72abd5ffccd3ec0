"""The sweep's results: what a point holds, the whole-sweep table, the curves, the summary.

The schema is derived from the registered metrics (``prunelab.measure``): a sweep point
is its method and requested k, then each metric of ``POINT_METRICS`` in order, ``test``
once per regime. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunelab import atomic
from prunelab.errors import PrunelabError
from prunelab.measure import METRICS

# (prefix, label): before fine-tuning (pruned and evaluated at once) and after it
REGIMES = (("oneshot", "one-shot"), ("finetuned", "fine-tuned"))
# What each sweep point measures, in table order, and with which column prefixes.
POINT_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("parameters", ("",)),
    ("test", tuple(f"{regime}_" for regime, _ in REGIMES)),
    ("finetune", ("",)),
    ("structure", ("",)),
)
POINT_IDENTITY = ["method", "sparsity"]  # what the point is: its method and requested k


def _columns(where: str) -> list[str]:
    return [prefix + c.name for name, prefixes in POINT_METRICS for prefix in prefixes
            for c in METRICS.get(name).columns if getattr(c, where)]


POINT_COLUMNS = POINT_IDENTITY + _columns("table")  # results/sweep.csv
POINT_KEYS = frozenset(POINT_IDENTITY + _columns("point"))  # results/sweep/<method>.json
CURVE_COLUMNS = ["series", "method", "regime", "sparsity", "params", "accuracy", "loss"]


def point_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The measured values a sweep point keeps (structure's before/after counts go to the prune stage only)."""
    return {k: v for k, v in values.items() if k in POINT_KEYS}


def load_sweep(path: str | Path, method: str, sparsities: Sequence[float]) -> list[dict[str, Any]]:
    """Read one method's sweep result and check it holds exactly the requested points."""
    path = Path(path)
    if not path.exists():
        raise PrunelabError(f"sweep result {path} is missing: run `dvc repro` (stage sweep@{method})")
    points = atomic.read_json(path)["points"]
    found = [p["sparsity"] for p in points]
    if sorted(found) != sorted(sparsities):
        raise PrunelabError(f"{path} holds sparsities {found}, but sweep.sparsities is {list(sparsities)}: "
                            "it is stale; run `dvc repro`")
    return points


def curves(points_by_method: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for method, points in points_by_method.items():
        for regime, regime_label in REGIMES:
            for p in sorted(points, key=lambda p: p["sparsity"]):
                if p.get(f"{regime}_test_accuracy") is None:
                    continue
                rows.append({"series": f"{method}, {regime_label}", "method": method, "regime": regime,
                             "sparsity": p["sparsity"], "params": p["nonzero_params"],
                             "accuracy": p[f"{regime}_test_accuracy"],
                             "loss": p[f"{regime}_test_loss"]})
    return rows


def holds_until(points: list[dict[str, Any]], key: str, reference: float, tolerance: float) -> float | None:
    """The largest sparsity up to which every point keeps ``key`` within ``tolerance`` of ``reference``."""
    best = None
    for p in sorted(points, key=lambda p: p["sparsity"]):
        if p.get(key) is None or p[key] < reference - tolerance:
            break
        best = p["sparsity"]
    return best


def summary(points_by_method: dict[str, list[dict[str, Any]]], baseline_accuracy: float,
            tolerance: float) -> dict[str, Any]:
    """Per method and regime: the largest k whose accuracy stays within ``tolerance`` of dense."""
    out: dict[str, Any] = {"baseline_test_accuracy": baseline_accuracy}
    for method, points in points_by_method.items():
        entry = {}
        for regime, _ in REGIMES:
            key = f"{regime}_test_accuracy"
            if any(p.get(key) is not None for p in points):
                held = holds_until(points, key, baseline_accuracy, tolerance)
                entry[f"{regime}_holds_until"] = held if held is not None else -1.0
                entry[f"{regime}_accuracy_at_max_sparsity"] = max(points, key=lambda p: p["sparsity"])[key]
        out[method] = entry
    return out


def versus_baseline(test_accuracy: float, params: int, baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluate stage's comparison with the dense baseline (metrics/baseline.json)."""
    return {"baseline_test_accuracy": baseline["test_accuracy"],
            "accuracy_drop": baseline["test_accuracy"] - test_accuracy,
            # physically removed filters or units; masks leave the count unchanged (see compression_ratio)
            "baseline_params": baseline["params"], "param_reduction": 1 - params / baseline["params"]}
