"""Figures for people: accuracy and loss versus sparsity (or parameters left), one colour per method.

Solid lines are one-shot (pruned, not retrained), dashed lines after fine-tuning,
dash-dotted after iterative magnitude pruning. The dense baseline is a grey reference
line. With several seeds each line is the mean over them and a shaded band ± 1 sample
standard deviation (the baseline's band is grey).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from prunelab import atomic
from prunelab.report.columns import EXPORTED, REGIMES

STYLES = {
    "oneshot": ("-", "o"),
    "finetuned": ("--", "s"),
    "compressed": (":", "D"),
    "iterative": ("-.", "^"),
}  # line and marker per regime
X_AXES = {  # x: which curves.csv column, its label
    "sparsity": ("sparsity", "sparsity k (% of the weights, units or filters each method removes)"),
    # non-zero parameters: what a masked model really holds, and a filter-pruned model's size
    "params": ("params", "parameters left (non-zero)"),
}


def _dense_line(ax: Any, mean: float, std: float) -> None:
    """The dense baseline: a grey dotted line, and a band of ± 1 std over seeds where there are several."""
    ax.axhline(mean, color="0.55", lw=1, ls=":", label="dense baseline")
    if std:
        ax.axhspan(mean - std, mean + std, color="0.55", alpha=0.12, lw=0)


def _save(fig: Any, title: str, path: str | Path) -> Path:
    """Title the figure and write it atomically as a PNG (a failed write keeps the old file)."""
    fig.suptitle(title)
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return Path(path)


def sweep_figure(
    rows: list[dict[str, Any]], baseline: dict[str, float], title: str, path: str | Path, x: str = "sparsity"
) -> Path:
    """The curves of ``report.sweep.curves`` (means over seeds): a shaded band of ± 1 std where there are several seeds.

    ``baseline``: test_accuracy, test_loss and their *_std over the seeds' dense models.
    """
    column, x_label = X_AXES[x]
    scale = 100 if x == "sparsity" else 1
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, metric, label in ((axes[0], "accuracy", "test accuracy"), (axes[1], "loss", "test loss")):
        _dense_line(ax, baseline[f"test_{metric}"], baseline.get(f"test_{metric}_std", 0.0))
        for regime, regime_label, *_ in REGIMES:
            style, marker = STYLES[regime]
            for method in methods:
                pts = sorted(
                    (r for r in rows if r["method"] == method and r["regime"] == regime), key=lambda r: r["sparsity"]
                )
                if not pts:
                    continue
                colour = colours[methods.index(method) % len(colours)]
                xs = [r[column] * scale for r in pts]
                ys = [r[metric] for r in pts]
                ax.plot(xs, ys, ls=style, marker=marker, ms=4, color=colour, label=f"{method}, {regime_label}")
                if any(r[f"{metric}_std"] for r in pts):
                    sd = [r[f"{metric}_std"] for r in pts]
                    lower = [max(y - d, 1e-6) if metric == "loss" else y - d for y, d in zip(ys, sd)]
                    ax.fill_between(xs, lower, [y + d for y, d in zip(ys, sd)], color=colour, alpha=0.15, lw=0)
        ax.set_xlabel(x_label)
        if x == "params":
            ax.set_xscale("log")
            ax.invert_xaxis()  # left to right: more pruning, as on the sparsity plot
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if metric == "accuracy":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
        else:
            ax.set_yscale("log")
    seeds = max((r["seeds"] for r in rows), default=1)
    axes[0].legend(
        loc="lower left",
        fontsize=9,
        title=f"mean of {seeds} seeds, band ± 1 std" if seeds > 1 else None,
        title_fontsize=9,
    )
    return _save(fig, title, path)


EFFICIENCY_AXES = (  # curves column, label, log scale, a timing (measured, noisy) rather than a count
    ("latency_b1_ms", "latency at batch 1 (ms, the export; median)", True, True),
    ("us_per_image", "time per image at the evaluation batch (µs, the export)", True, True),
    ("export_mib", "size on disk (MiB: the export, or the compressed file)", True, False),
)


def efficiency_figure(rows: list[dict[str, Any]], dense: dict[str, float], title: str, path: str | Path) -> Path:
    """Test accuracy against what the export costs to run and to store (``report.efficiency.curves``).

    One panel per cost; each marker is a k, larger markers for larger k. ``dense``:
    test_accuracy (± test_accuracy_std) and, where known, the dense model's value of each
    x column, drawn as grey reference lines: left of the vertical line is faster or smaller.
    """
    fig, axes = plt.subplots(1, len(EFFICIENCY_AXES), figsize=(16, 5.4), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, (column, label, log, timed) in zip(axes, EFFICIENCY_AXES, strict=True):
        _dense_line(ax, dense["test_accuracy"], dense.get("test_accuracy_std", 0.0))
        if dense.get(column):
            ax.axvline(dense[column], color="0.4", lw=1, ls="--", label="dense model")
        for regime, regime_label, *_ in EXPORTED:
            style, marker = STYLES[regime]
            for method in methods:
                pts = sorted(
                    (r for r in rows if r["method"] == method and r["regime"] == regime and r.get(column) is not None),
                    key=lambda r: r["sparsity"],
                )
                if not pts:
                    continue
                colour = colours[methods.index(method) % len(colours)]
                xs, ys = [r[column] for r in pts], [r["accuracy"] for r in pts]
                # timings are not joined by lines: from point to point, noise would read as a trend
                ax.plot(
                    xs,
                    ys,
                    ls="none" if timed else style,
                    lw=1,
                    color=colour,
                    alpha=0.7,
                    label=f"{method}, {regime_label}",
                )
                if timed and column == "latency_b1_ms" and any(r["latency_b1_ms_std"] for r in pts):
                    ax.errorbar(
                        xs, ys, xerr=[r["latency_b1_ms_std"] for r in pts], fmt="none", ecolor=colour, alpha=0.5, lw=1
                    )
                # hollow: a noisy timing (other processes ran on our cores, or its samples spread), not a result
                hollow = [timed and bool(r.get("noisy_timing")) for r in pts]
                ax.scatter(
                    xs,
                    ys,
                    marker=marker,
                    s=[8 + 60 * r["sparsity"] ** 2 for r in pts],
                    zorder=3,
                    facecolors=["none" if h else colour for h in hollow],
                    edgecolors=colour,
                )
        ax.set_xlabel(label)
        if log:
            ax.set_xscale("log")
        ax.set_ylabel("test accuracy")
        ax.grid(True, which="both", alpha=0.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    seeds = max((r["seeds"] for r in rows), default=1)
    handles, labels = axes[-1].get_legend_handles_labels()  # the size panel draws lines: visible keys
    # below the panels: inside one it would hide the high-k points, which sit bottom left
    noisy = any(r.get("noisy_timing") for r in rows)
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=min(len(labels), 6),
        fontsize=9,
        title="marker size: k"
        + (f"; mean of {seeds} seeds" if seeds > 1 else "")
        + ("; hollow: a noisy timing (machine busy or samples spread), not a result" if noisy else ""),
        title_fontsize=9,
    )
    return _save(fig, title, path)
