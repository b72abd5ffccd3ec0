"""What pruning buys, per sweep point: accuracy beside the export's size and measured speed.

Joins each point's counted values (results/sweep/, exact) with its timings
(results/speed/, measured) by method, seed and k. The timings are of the point's final
model (fine-tuned where the sweep fine-tunes); its one-shot model has the same mask, so
the same export size and kernels, and both regimes are drawn at them. IMP levels are other
models (other masks) that are not exported: they are left out here. Importing this module
imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunelab import atomic, paths
from prunelab.errors import PrunelabError
from prunelab.report.sweep import POINT_COLUMNS, POINT_IDENTITY, SPEED_COLUMNS, holds_until, load_sweep, mean_std

REGIMES = (("oneshot", "one-shot"), ("finetuned", "fine-tuned"))  # the regimes whose model was measured
POINTS_COLUMNS = POINT_COLUMNS + [c for c in SPEED_COLUMNS if c not in POINT_IDENTITY]
# x of each curve, from the points: the export's latency at batch 1, its time per image at
# the evaluation batch, its size on disk; the ratios against the dense model
CURVE_COLUMNS = ["series", "method", "regime", "sparsity", "accuracy", "accuracy_std", "latency_b1_ms",
                 "latency_b1_ms_std", "us_per_image", "export_mib", "export_size_ratio", "speedup_b1",
                 "speedup_eval", "dense_latency_b1_ms", "seeds"]


def load_timings(path: str | Path, method: str, seed: int, sparsities: Sequence[float]) -> list[dict[str, Any]]:
    """One sweep stage's timings, checked to hold exactly the requested points."""
    path = Path(path)
    if not path.exists():
        raise PrunelabError(f"sweep timings {path} are missing: run `dvc repro` (stage sweep@{method}-{seed})")
    timings = atomic.read_json(path)
    found = [p["sparsity"] for p in timings.get("points", [])]
    if sorted(found) != sorted(sparsities):
        raise PrunelabError(f"{path} holds sparsities {found}, but sweep.sparsities is {list(sparsities)}: "
                            "it is stale; run `dvc repro`")
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
    return [row for m in methods for s in seeds
            for row in join(load_sweep(paths.sweep_result(m, s), m, sparsities, s),
                            load_timings(paths.sweep_speed(m, s), m, s, sparsities))]


def _mean(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[float | None, float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return mean_std(values) if values else (None, 0.0)


def _run(row: Mapping[str, Any], what: str) -> Any:
    """The export's value, or the model's where nothing was exported."""
    return row.get(f"export_{what}", row.get(what))


def curves(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean over seeds per method, regime and k: accuracy against the export's latency and size."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        for k in sorted({r["sparsity"] for r in mine}):
            at = [r for r in mine if r["sparsity"] == k]
            latency = [{"v": _run(r, "latency_b1_ms")} for r in at]
            throughput = [{"v": 1e6 / t} for r in at if (t := _run(r, "throughput_ips"))]
            for regime, label in REGIMES:
                acc, acc_std = _mean(at, f"{regime}_test_accuracy")
                if acc is None:
                    continue
                lat, lat_std = _mean(latency, "v")
                size = _mean(at, "export_bytes")[0]
                out.append({"series": f"{method}, {label}", "method": method, "regime": regime, "sparsity": k,
                            "accuracy": acc, "accuracy_std": acc_std, "latency_b1_ms": lat,
                            "latency_b1_ms_std": lat_std, "us_per_image": _mean(throughput, "v")[0],
                            "export_mib": size / 2**20 if size is not None else None,
                            "export_size_ratio": _mean(at, "export_size_ratio")[0],
                            "speedup_b1": _mean(at, "speedup_b1")[0], "speedup_eval": _mean(at, "speedup_eval")[0],
                            "dense_latency_b1_ms": _mean(at, "dense_latency_b1_ms")[0], "seeds": len(at)})
    return out


def summary(rows: Sequence[Mapping[str, Any]], baseline_accuracy: float, tolerance: float) -> dict[str, Any]:
    """Per method and regime, at the largest k whose mean accuracy stays within ``tolerance`` of
    the dense one: the export's size ratio and speed-ups there (what pruning buys for free)."""
    out: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [dict(r) for r in rows if r["method"] == method]
        entry = {}
        for regime, _ in REGIMES:
            held = holds_until(mine, f"{regime}_test_accuracy", baseline_accuracy, tolerance)
            if held is None:
                continue
            at = [r for r in mine if r["sparsity"] == held]
            entry[f"{regime}_holds_until"] = held
            for key in ("export_size_ratio", "speedup_b1", "speedup_eval"):
                value = _mean(at, key)[0]
                if value is not None:
                    entry[f"{regime}_{key}"] = value
        out[method] = entry
    return out
