"""What pruning buys, per sweep point: accuracy beside the export's size and measured speed.

Joins each point's counted values (results/sweep/, exact) with its timings
(results/speed/, measured) by method, seed and k. The timings are of the point's final
model (fine-tuned where the sweep fine-tunes); its one-shot model has the same mask, so
the same export size and kernels, and both regimes are drawn at them. IMP levels are other
models (other masks) that are not exported: they are left out here. Importing this module
imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prunelab import atomic, paths
from prunelab.errors import PrunelabError
from prunelab.report.columns import EFFICIENCY_CURVE_COLUMNS, EXPORTED, POINT_IDENTITY, TIMED_POINT_COLUMNS
from prunelab.report.curves import CurveValue, mean_of
from prunelab.report.curves import curves as _curves
from prunelab.report.curves import summary as _summary
from prunelab.report.sweep import load_sweep

__all__ = [
    "CURVE_VALUES",
    "EFFICIENCY_CURVE_COLUMNS",
    "TIMED_POINT_COLUMNS",
    "curves",
    "join",
    "load",
    "load_timings",
    "summary",
]


def load_timings(path: str | Path, method: str, seed: int, sparsities: Sequence[float]) -> list[dict[str, Any]]:
    """One sweep stage's timings, checked to hold exactly the requested points."""
    path = Path(path)
    if not path.exists():
        raise PrunelabError(f"sweep timings {path} are missing: run `dvc repro` (stage sweep@{method}-{seed})")
    timings = atomic.read_json(path)
    found = [p["sparsity"] for p in timings.get("points", [])]
    if sorted(found) != sorted(sparsities):
        raise PrunelabError(
            f"{path} holds sparsities {found}, but sweep.sparsities is {list(sparsities)}: it is stale; run `dvc repro`"
        )
    return timings["points"]


def join(points: Sequence[Mapping[str, Any]], timings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each point with its timings (matched on method, seed and k)."""
    key = lambda p: tuple(p[k] for k in POINT_IDENTITY)  # noqa: E731
    timed = {key(t): t for t in timings}
    missing = [key(p) for p in points if key(p) not in timed]
    if missing:
        raise PrunelabError(f"no timings for sweep points {missing[:3]}: run `dvc repro`")
    return [{**p, **{k: v for k, v in timed[key(p)].items() if k not in POINT_IDENTITY}} for p in points]


def load(methods: Sequence[str], seeds: Sequence[int], sparsities: Sequence[float]) -> list[dict[str, Any]]:
    """Every sweep point of ``methods`` and ``seeds`` joined with its timings, in params order."""
    return [
        row
        for m in methods
        for s in seeds
        for row in join(
            load_sweep(paths.sweep_result(m, s), m, sparsities, s),
            load_timings(paths.sweep_speed(m, s), m, s, sparsities),
        )
    ]


def _run(row: Mapping[str, Any], what: str) -> Any:
    """The export's value, or the model's where nothing was exported."""
    return row.get(f"export_{what}", row.get(what))


def quiet(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows whose timings are not ``noisy`` (taken under load, or too spread: ``measure.load``).
    Where every one is noisy, all of them: the curve still shows where the point lies, drawn hollow."""
    return [r for r in rows if not r.get("noisy")] or list(rows)


def _all_noisy(at: Sequence[Mapping[str, Any]]) -> bool:
    return bool(at) and all(r.get("noisy") for r in at)


def _quiet_mean(key: str) -> Callable[[Sequence[Mapping[str, Any]]], float | None]:
    return lambda at: mean_of([r for r in at if not r.get("noisy")], key)[0]


def _us_per_image(at: Sequence[Mapping[str, Any]]) -> float | None:
    values = [1e6 / t for r in quiet(at) if (t := _run(r, "throughput_ips"))]
    return mean_of([{"v": v} for v in values], "v")[0]


def _mib(at: Sequence[Mapping[str, Any]], size_of: str) -> float | None:
    size = mean_of(at, f"{size_of}_bytes")[0]
    return size / 2**20 if size is not None else None


# curves.csv: accuracy against the export's latency and size, the ratios against the dense model
CURVE_VALUES: dict[str, CurveValue] = {
    "accuracy": lambda at, regime: mean_of(at, f"{regime.prefix}_test_accuracy")[0],
    "accuracy_std": lambda at, regime: mean_of(at, f"{regime.prefix}_test_accuracy")[1],
    "latency_b1_ms": lambda at, regime: mean_of([{"v": _run(r, "latency_b1_ms")} for r in quiet(at)], "v")[0],
    "latency_b1_ms_std": lambda at, regime: mean_of([{"v": _run(r, "latency_b1_ms")} for r in quiet(at)], "v")[1],
    "us_per_image": lambda at, regime: _us_per_image(at),
    "export_mib": lambda at, regime: _mib(at, regime.size),
    "export_size_ratio": lambda at, regime: mean_of(at, f"{regime.size}_size_ratio")[0],
    "speedup_b1": lambda at, regime: mean_of(quiet(at), "speedup_b1")[0],
    "speedup_eval": lambda at, regime: mean_of(quiet(at), "speedup_eval")[0],
    "dense_latency_b1_ms": lambda at, regime: mean_of(quiet(at), "dense_latency_b1_ms")[0],
    "seeds": lambda at, regime: len(at),
    # 1 where every seed's timing at k is noisy: drawn hollow, it claims no speed
    "noisy_timing": lambda at, regime: int(_all_noisy(at)),
}
# what pruning buys for free, at the largest k where accuracy holds: the size ratio (a count), and
# speed-ups from timings that are not noisy only (none claimed where every seed's is)
AT_HOLDS: dict[str, Callable[[Sequence[Mapping[str, Any]], Any], Any]] = {
    "export_size_ratio": lambda at, regime: mean_of(at, f"{regime.size}_size_ratio")[0],
    "speedup_b1": lambda at, regime: _quiet_mean("speedup_b1")(at),
    "speedup_eval": lambda at, regime: _quiet_mean("speedup_eval")(at),
    "noisy_timing": lambda at, regime: True if _all_noisy(at) else None,
}


def curves(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """results/efficiency/curves.csv: per method, measured regime and k, the mean over seeds."""
    return _curves(rows, CURVE_VALUES, EXPORTED)


def summary(rows: Sequence[Mapping[str, Any]], baseline_accuracy: float, tolerance: float) -> dict[str, Any]:
    """results/efficiency/summary.json: per method and regime, where accuracy holds and what the
    export buys there (``AT_HOLDS``)."""
    return _summary(rows, baseline_accuracy, tolerance, EXPORTED, AT_HOLDS)
