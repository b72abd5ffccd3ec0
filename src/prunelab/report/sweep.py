"""The sweep's results: what a point holds, the whole-sweep table, the curves, the summary.

The schema is derived from the registered metrics (``prunelab.measure``): a sweep point
is its method and requested k, then each metric of ``POINT_METRICS`` in order, ``test``
once per regime. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunelab import atomic, paths
from prunelab.errors import PrunelabError
from prunelab.measure import METRICS

# (prefix, label): before fine-tuning (pruned and evaluated at once), after it, and after
# iterative magnitude pruning (prune.schedule iterative: each k a level of IMP)
REGIMES = (("oneshot", "one-shot"), ("finetuned", "fine-tuned"), ("iterative", "IMP"))
# What each sweep point measures, in table order, and with which column prefixes.
POINT_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("parameters", ("",)),
    ("test", tuple(f"{regime}_" for regime, _ in REGIMES)),
    ("finetune", ("",)),
    ("structure", ("",)),
    ("cost", ("",)),  # the point's final model: FLOPs, checkpoint and export bytes (timings: results/speed)
)
POINT_IDENTITY = ["method", "seed", "sparsity"]  # what the point is: method, replicate, requested k


def _columns(where: str) -> list[str]:
    return [prefix + c.name for name, prefixes in POINT_METRICS for prefix in prefixes
            for c in METRICS.get(name).columns if getattr(c, where)]


POINT_COLUMNS = POINT_IDENTITY + _columns("table")  # results/sweep.csv
POINT_KEYS = frozenset(POINT_IDENTITY + _columns("point"))  # results/sweep/<method>/seed-<s>.json
# results/speed/<method>/seed-<s>.json and results/efficiency/points.csv: each point's timings
SPEED_COLUMNS = POINT_IDENTITY + [c.name for c in METRICS.get("speed").columns]
# curves.csv: the mean over seeds per method, regime and k; *_std the spread (sample std,
# 0 with one seed), seeds how many replicates the mean is over
CURVE_COLUMNS = ["series", "method", "regime", "sparsity", "params", "accuracy", "accuracy_std", "loss",
                 "loss_std", "seeds"]


def point_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The measured values a sweep point keeps (structure's before/after counts go to the prune stage only)."""
    return {k: v for k, v in values.items() if k in POINT_KEYS}


def load_sweep(path: str | Path, method: str, sparsities: Sequence[float], seed: int | None = None) -> list[dict[str, Any]]:
    """Read one method's sweep result (one seed) and check it holds exactly the requested points."""
    path = Path(path)
    stage = f"sweep@{method}" + (f"-{seed}" if seed is not None else "")
    if not path.exists():
        raise PrunelabError(f"sweep result {path} is missing: run `dvc repro` (stage {stage})")
    points = atomic.read_json(path)["points"]
    found = [p["sparsity"] for p in points]
    if sorted(found) != sorted(sparsities):
        raise PrunelabError(f"{path} holds sparsities {found}, but sweep.sparsities is {list(sparsities)}: "
                            "it is stale; run `dvc repro`")
    return points


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0


def baselines(seeds: Sequence[int]) -> dict[str, Any]:
    """The dense baselines of ``seeds`` as one reference: mean and spread of their test numbers, export size."""
    records = [atomic.read_json(paths.baseline_metrics(s)) for s in seeds]
    dense: dict[str, Any] = {"test_accuracies": [b["test_accuracy"] for b in records]}
    for key in ("test_accuracy", "test_loss"):
        dense[key], dense[f"{key}_std"] = mean_std([b[key] for b in records])
    dense["export_mib"] = mean_std([b["export_bytes"] for b in records])[0] / 2**20
    return dense


def by_sparsity(points: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, list[float]]]:
    """Each k in order with the values of ``key`` over the seeds that have one."""
    ks = sorted({p["sparsity"] for p in points})
    out = [(k, [p[key] for p in points if p["sparsity"] == k and p.get(key) is not None]) for k in ks]
    return [(k, vs) for k, vs in out if vs]


def mean_curve(points: Sequence[Mapping[str, Any]], key: str) -> list[dict[str, float]]:
    """``key``'s mean and spread over seeds at each k: [{sparsity, mean, std, seeds}]."""
    return [{"sparsity": k, "mean": m, "std": sd, "seeds": len(vs)}
            for k, vs in by_sparsity(points, key) for m, sd in [mean_std(vs)]]


def curves(points_by_method: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for method, points in points_by_method.items():
        for regime, regime_label in REGIMES:
            acc, loss = mean_curve(points, f"{regime}_test_accuracy"), mean_curve(points, f"{regime}_test_loss")
            params = {r["sparsity"]: r["mean"] for r in mean_curve(points, "nonzero_params")}
            for a, lo in zip(acc, loss):
                rows.append({"series": f"{method}, {regime_label}", "method": method, "regime": regime,
                             "sparsity": a["sparsity"], "params": params[a["sparsity"]],
                             "accuracy": a["mean"], "accuracy_std": a["std"], "loss": lo["mean"],
                             "loss_std": lo["std"], "seeds": a["seeds"]})
    return rows


def holds_until(points: list[dict[str, Any]], key: str, reference: float, tolerance: float) -> float | None:
    """The largest sparsity up to which the mean of ``key`` over seeds stays within ``tolerance`` of ``reference``."""
    best = None
    for row in mean_curve(points, key):
        if row["mean"] < reference - tolerance:
            break
        best = row["sparsity"]
    return best


def summary(points_by_method: dict[str, list[dict[str, Any]]], baseline_accuracies: Sequence[float],
            tolerance: float) -> dict[str, Any]:
    """Per method and regime: the largest k whose mean accuracy over seeds stays within ``tolerance``
    of the dense baselines' mean, with the spread over seeds there and at the largest k."""
    baseline, baseline_std = mean_std(list(baseline_accuracies))
    out: dict[str, Any] = {"baseline_test_accuracy": baseline, "baseline_test_accuracy_std": baseline_std,
                           "seeds": len(baseline_accuracies)}
    for method, points in points_by_method.items():
        entry = {}
        for regime, _ in REGIMES:
            curve = mean_curve(points, f"{regime}_test_accuracy")
            if not curve:
                continue
            held = holds_until(points, f"{regime}_test_accuracy", baseline, tolerance)
            at = {r["sparsity"]: r for r in curve}
            entry[f"{regime}_holds_until"] = held if held is not None else -1.0
            entry[f"{regime}_accuracy_std_at_holds_until"] = at[held]["std"] if held is not None else 0.0
            entry[f"{regime}_accuracy_at_max_sparsity"] = curve[-1]["mean"]
            entry[f"{regime}_accuracy_std_at_max_sparsity"] = curve[-1]["std"]
        out[method] = entry
    return out


def versus_baseline(test_accuracy: float, params: int, baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluate stage's comparison with the dense baseline (metrics/baseline.json)."""
    return {"baseline_test_accuracy": baseline["test_accuracy"],
            "accuracy_drop": baseline["test_accuracy"] - test_accuracy,
            # physically removed filters or units; masks leave the count unchanged (see compression_ratio)
            "baseline_params": baseline["params"], "param_reduction": 1 - params / baseline["params"]}
