"""Tables from sweep results: the whole-sweep CSV, the long-format curves, the summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunelab import atomic
from prunelab.errors import PrunelabError
from prunelab.plotting import REGIMES
from prunelab.sweep import holds_until

CURVE_COLUMNS = ["series", "method", "regime", "sparsity", "params", "accuracy", "loss"]


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
        for regime, regime_label, _, _ in REGIMES:
            for p in sorted(points, key=lambda p: p["sparsity"]):
                if p.get(f"{regime}_test_accuracy") is None:
                    continue
                rows.append({"series": f"{method}, {regime_label}", "method": method, "regime": regime,
                             "sparsity": p["sparsity"], "params": p["nonzero_params"],
                             "accuracy": p[f"{regime}_test_accuracy"],
                             "loss": p[f"{regime}_test_loss"]})
    return rows


def summary(points_by_method: dict[str, list[dict[str, Any]]], baseline_accuracy: float,
            tolerance: float) -> dict[str, Any]:
    """Per method and regime: the largest k whose accuracy stays within ``tolerance`` of dense."""
    out: dict[str, Any] = {"baseline_test_accuracy": baseline_accuracy}
    for method, points in points_by_method.items():
        entry = {}
        for regime, _, _, _ in REGIMES:
            key = f"{regime}_test_accuracy"
            if any(p.get(key) is not None for p in points):
                held = holds_until(points, key, baseline_accuracy, tolerance)
                entry[f"{regime}_holds_until"] = held if held is not None else -1.0
                entry[f"{regime}_accuracy_at_max_sparsity"] = max(points, key=lambda p: p["sparsity"])[key]
        out[method] = entry
    return out
