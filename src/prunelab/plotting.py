"""Figures for people: accuracy and loss versus sparsity (or parameters left), one colour per method.

Solid lines are one-shot (pruned, not retrained); dashed lines are after fine-tuning.
The dense baseline is a grey reference line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from prunelab import atomic  # noqa: E402
from prunelab.report import REGIMES  # noqa: E402

STYLES = {"oneshot": ("-", "o"), "finetuned": ("--", "s")}  # line and marker per regime


X_AXES = {  # x: how to read it from a point, its label
    "sparsity": (lambda p: p["sparsity"] * 100, "sparsity k (% of the weights, units or filters each method removes)"),
    # non-zero parameters: what a masked model really holds, and a filter-pruned model's size
    "params": (lambda p: p["nonzero_params"], "parameters left (non-zero)"),
}


def sweep_figure(points_by_method: dict[str, list[dict[str, Any]]], baseline: dict[str, float],
                 title: str, path: str | Path, x: str = "sparsity") -> Path:
    x_of, x_label = X_AXES[x]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric, label in ((axes[0], "accuracy", "test accuracy"), (axes[1], "loss", "test loss")):
        ax.axhline(baseline[f"test_{metric}"], color="0.55", lw=1, ls=":", label="dense baseline")
        for i, (method, points) in enumerate(points_by_method.items()):
            pts = sorted(points, key=lambda p: p["sparsity"])
            for regime, regime_label in REGIMES:
                style, marker = STYLES[regime]
                ys = [p.get(f"{regime}_test_{metric}") for p in pts]
                if all(y is None for y in ys):
                    continue
                xs = [x_of(p) for p, y in zip(pts, ys) if y is not None]
                ax.plot(xs, [y for y in ys if y is not None], ls=style, marker=marker, ms=4,
                        color=colours[i % len(colours)], label=f"{method}, {regime_label}")
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
    axes[0].legend(loc="lower left", fontsize=9)
    fig.suptitle(title)
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return Path(path)
