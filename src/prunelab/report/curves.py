"""Means over seeds: one curve per method and regime, and where along it accuracy holds.

``curves`` and ``summary`` serve both reports (the sweep's accuracy and loss, the
efficiency's latency and size): each says which values a curve row carries
(``CurveValue``) and what a summary adds at the held k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prunelab.report.columns import REGIMES, Regime

Row = Mapping[str, Any]
# (the rows of one method at one k, the regime) -> the curve's value there
CurveValue = Callable[[Sequence[Row], Regime], Any]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0


def present(rows: Sequence[Row], key: str) -> list[Any]:
    """The values of ``key`` in ``rows`` that are there (a seed may lack one: not exported, not timed)."""
    return [r[key] for r in rows if r.get(key) is not None]


def mean_of(rows: Sequence[Row], key: str) -> tuple[float | None, float]:
    """Mean and spread of ``key`` over ``rows`` that have it; (None, 0) where none has."""
    values = present(rows, key)
    return mean_std(values) if values else (None, 0.0)


def mean_curve(points: Sequence[Row], key: str) -> list[dict[str, float]]:
    """``key``'s mean and spread over seeds at each k that has it: [{sparsity, mean, std, seeds}]."""
    out = []
    for k in sorted({p["sparsity"] for p in points}):
        values = present([p for p in points if p["sparsity"] == k], key)
        if values:
            mean, std = mean_std(values)
            out.append({"sparsity": k, "mean": mean, "std": std, "seeds": len(values)})
    return out


def holds_until(points: Sequence[Row], key: str, reference: float, tolerance: float) -> float | None:
    """The largest sparsity up to which the mean of ``key`` over seeds stays within ``tolerance`` of ``reference``."""
    best = None
    for row in mean_curve(points, key):
        if row["mean"] < reference - tolerance:
            break
        best = row["sparsity"]
    return best


def curves(
    rows: Sequence[Row], values: Mapping[str, CurveValue], regimes: Sequence[Regime] = REGIMES
) -> list[dict[str, Any]]:
    """Per method (in order of appearance), regime and k (ascending, where the regime was measured):
    the series' name and each of ``values``."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        for regime in regimes:
            for point in mean_curve(mine, f"{regime.prefix}_test_accuracy"):
                at = [r for r in mine if r["sparsity"] == point["sparsity"]]
                out.append(
                    {
                        "series": f"{method}, {regime.label}",
                        "method": method,
                        "regime": regime.prefix,
                        "sparsity": point["sparsity"],
                    }
                    | {name: value(at, regime) for name, value in values.items()}
                )
    return out


def summary(
    rows: Sequence[Row],
    baseline_accuracy: float,
    tolerance: float,
    regimes: Sequence[Regime] = REGIMES,
    at_holds: Mapping[str, Callable[[Sequence[Row], Regime], Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per method and regime: the largest k whose mean accuracy over seeds stays within ``tolerance``
    of the dense baseline's (-1 where none does), the spread there, the accuracy at the largest k,
    and each of ``at_holds`` computed on the rows at the held k (left out where it is None)."""
    out: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine, entry = [r for r in rows if r["method"] == method], {}
        for regime in regimes:
            key = f"{regime.prefix}_test_accuracy"
            curve = mean_curve(mine, key)
            if not curve:
                continue
            held = holds_until(mine, key, baseline_accuracy, tolerance)
            at = {r["sparsity"]: r for r in curve}
            entry[f"{regime.prefix}_holds_until"] = held if held is not None else -1.0
            entry[f"{regime.prefix}_accuracy_std_at_holds_until"] = at[held]["std"] if held is not None else 0.0
            entry[f"{regime.prefix}_accuracy_at_max_sparsity"] = curve[-1]["mean"]
            entry[f"{regime.prefix}_accuracy_std_at_max_sparsity"] = curve[-1]["std"]
            for name, value in (at_holds or {}).items() if held is not None else ():
                if (v := value([r for r in mine if r["sparsity"] == held], regime)) is not None:
                    entry[f"{regime.prefix}_{name}"] = v
        out[method] = entry
    return out
