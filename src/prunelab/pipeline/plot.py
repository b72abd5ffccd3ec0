"""Stage plot: the sweep's curves as a PNG and DVC plot data, the whole sweep as a CSV.

Reads exactly the methods, seeds and sparsities in params (never globs result files), so
a shrunk sweep plots only its own points. With several seeds the curves are the mean over
them with a band of ± 1 sample standard deviation, and the summary is computed on the mean.
"""

from __future__ import annotations

from prunelab import atomic, config, paths
from prunelab.pruning.options import sweep_config
from prunelab.report.columns import POINT_COLUMNS, SWEEP_CURVE_COLUMNS
from prunelab.report.figures import sweep_figure
from prunelab.report.sweep import baselines, curves, load_sweep, summary


def plot() -> None:
    cfg = sweep_config(config.load_params())
    points = {
        m: [p for s in cfg.seeds for p in load_sweep(paths.sweep_result(m, s), m, cfg.sparsities, s)]
        for m in cfg.methods
    }
    dense = baselines(cfg.seeds)
    acc, acc_std = dense["test_accuracy"], dense["test_accuracy_std"]
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    tags = track.run_tags("plot", dataset=atomic.read_json(paths.DATA_SUMMARY)["dataset"])
    # named after the DVC experiment: runs compared side by side are told apart in MLflow's legends
    with track.start_run(f"plot {tags['dvc_exp']}", params={"sweep": cfg.as_dict()}, tags=tags):
        atomic.write_csv(paths.SWEEP_CSV, [p for m in cfg.methods for p in points[m]], POINT_COLUMNS)
        rows = curves(points)
        atomic.write_csv(paths.CURVES_CSV, rows, SWEEP_CURVE_COLUMNS)
        result = summary(points, dense["test_accuracies"], cfg.tolerance)
        atomic.write_json(paths.SWEEP_SUMMARY, result)
        title = f"Pruning sweep: {', '.join(cfg.methods)} (dense test accuracy {acc:.2%}" + (
            f" ± {acc_std:.2%}, {len(cfg.seeds)} seeds)" if len(cfg.seeds) > 1 else ")"
        )
        runs = [atomic.read_json(paths.sweep_result(m, s)) for m in cfg.methods for s in cfg.seeds]
        if any(r.get("schedule") == "polynomial" for r in runs):
            title += "\nfine-tuned = pruned gradually to k during fine-tuning (polynomial schedule)"
        if rewinds := sorted({r["rewind"] for r in runs if r.get("rewind")}):
            title += f"\nIMP = iterative magnitude pruning through these k, rewound to {' / '.join(rewinds)}"
        sweep_figure(rows, dense, title, paths.SWEEP_PNG)
        sweep_figure(rows, dense, title, paths.SWEEP_PARAMS_PNG, x="params")
        track.log_metrics(
            {f"{m}.{k}": v for m in cfg.methods for k, v in result[m].items()}
            | {k: result[k] for k in ("baseline_test_accuracy", "baseline_test_accuracy_std")}
        )
        track.log_curves(rows)  # accuracy against k, in the chart view
        track.log_table([p for m in cfg.methods for p in points[m]], POINT_COLUMNS, "sweep_table.json")
        track.log_artifacts([paths.SWEEP_PNG, paths.SWEEP_PARAMS_PNG], artifact_path="figures")
        track.log_artifacts([paths.SWEEP_CSV, paths.CURVES_CSV, paths.SWEEP_SUMMARY])
        print(f"plot: wrote {paths.SWEEP_PNG}, {paths.SWEEP_CSV}; summary {result}")
