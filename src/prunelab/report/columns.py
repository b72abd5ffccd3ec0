"""What the sweep's tables hold: the regimes, a point's columns, the curves' columns.

The schema is derived from the registered metrics (``prunelab.measure``): a sweep point
is its method, seed and requested k, then each metric of ``POINT_METRICS`` in order,
``test`` once per regime. Importing this module imports no torch.
"""

from __future__ import annotations

from typing import NamedTuple

from prunelab.measure import METRICS


class Regime(NamedTuple):
    prefix: str  # the columns' prefix: oneshot_test_accuracy, ...
    label: str  # in legends and series names
    exported: bool  # the regime's model is the point's exported and timed one (IMP levels are other models)
    size: str = "export"  # the file whose bytes the efficiency curves draw: <size>_bytes, <size>_size_ratio


# before fine-tuning (pruned and evaluated at once), after it, the fine-tuned model compressed
# (quantized and encoded: compress section; its accuracy is the loaded file's), and after
# iterative magnitude pruning (prune.schedule iterative: each k a level of IMP). The one-shot
# and compressed models have the fine-tuned one's mask, so its kernels: all three are drawn
# at its timings, the compressed one at its own, smaller, file size.
REGIMES = (
    Regime("oneshot", "one-shot", True),
    Regime("finetuned", "fine-tuned", True),
    Regime("compressed", "compressed", True, "compressed"),
    Regime("iterative", "IMP", False),
)
EXPORTED = tuple(r for r in REGIMES if r.exported)

# What each sweep point measures, in table order, and with which column prefixes.
POINT_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("parameters", ("",)),
    ("test", tuple(f"{regime.prefix}_" for regime in REGIMES)),
    ("finetune", ("",)),
    ("structure", ("",)),
    ("cost", ("",)),  # the point's final model: FLOPs, checkpoint and export bytes (timings: results/speed)
    ("compression", ("",)),  # its compressed file's bytes (compress.sweep)
)
POINT_IDENTITY = ["method", "seed", "sparsity"]  # what the point is: method, replicate, requested k


def _columns(where: str) -> list[str]:
    return [
        prefix + c.name
        for name, prefixes in POINT_METRICS
        for prefix in prefixes
        for c in METRICS.get(name).columns
        if getattr(c, where)
    ]


POINT_COLUMNS = POINT_IDENTITY + _columns("table")  # results/sweep.csv
POINT_KEYS = frozenset(POINT_IDENTITY + _columns("point"))  # results/sweep/<method>/seed-<s>.json
# results/speed/<method>/seed-<s>.json: each point's timings
SPEED_COLUMNS = POINT_IDENTITY + [c.name for c in METRICS.get("speed").columns]
# results/efficiency/points.csv: each point with its timings
TIMED_POINT_COLUMNS = POINT_COLUMNS + [c for c in SPEED_COLUMNS if c not in POINT_IDENTITY]

# A curve row is one (method, regime, k): the mean over seeds, *_std the spread (sample std,
# 0 with one seed), seeds how many replicates the mean is over.
CURVE_KEYS = ["series", "method", "regime", "sparsity"]
# results/plots/curves.csv: accuracy and loss against k and the parameters left
SWEEP_CURVE_COLUMNS = [*CURVE_KEYS, "params", "accuracy", "accuracy_std", "loss", "loss_std", "seeds"]
# results/efficiency/curves.csv: accuracy against the export's latency at batch 1, its time per
# image at the evaluation batch, its size on disk, and the ratios against the dense model
EFFICIENCY_CURVE_COLUMNS = [
    *CURVE_KEYS,
    "accuracy",
    "accuracy_std",
    "latency_b1_ms",
    "latency_b1_ms_std",
    "us_per_image",
    "export_mib",
    "export_size_ratio",
    "speedup_b1",
    "speedup_eval",
    "dense_latency_b1_ms",
    "seeds",
    "noisy_timing",
]
