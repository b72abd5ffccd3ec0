"""Stage plot: the sweep's curves as a PNG and DVC plot data, the whole sweep as a CSV.

Reads exactly the methods and sparsities in params (never globs result files), so a
shrunk sweep plots only its own points.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, config, paths
    from prunelab.plotting import sweep_figure
    from prunelab.report import CURVE_COLUMNS, POINT_COLUMNS, REGIMES, curves, load_sweep, summary

    cfg = config.section(config.load_params(), config.SweepConfig)
    points = {m: load_sweep(paths.sweep_result(m), m, cfg.sparsities) for m in cfg.methods}
    baseline = atomic.read_json(paths.BASELINE_METRICS)
    from prunelab import tracking

    tags = tracking.run_tags("plot", dataset=atomic.read_json(paths.DATA_SUMMARY)["dataset"])
    # named after the DVC experiment: runs compared side by side are told apart in MLflow's legends
    with tracking.start_run(f"plot {tags['dvc_exp']}", params={"sweep": cfg.as_dict()}, tags=tags):
        atomic.write_csv(paths.SWEEP_CSV, [p for m in cfg.methods for p in points[m]], POINT_COLUMNS)
        atomic.write_csv(paths.CURVES_CSV, curves(points), CURVE_COLUMNS)
        result = summary(points, baseline["test_accuracy"], cfg.tolerance)
        atomic.write_json(paths.SWEEP_SUMMARY, result)
        title = (f"Pruning sweep: {', '.join(cfg.methods)} "
                 f"(dense test accuracy {baseline['test_accuracy']:.2%})")
        if any(atomic.read_json(paths.sweep_result(m)).get("schedule") == "polynomial" for m in cfg.methods):
            title += "\nfine-tuned = pruned gradually to k during fine-tuning (polynomial schedule)"
        sweep_figure(points, baseline, title, paths.SWEEP_PNG)
        sweep_figure(points, baseline, title, paths.SWEEP_PARAMS_PNG, x="params")
        tracking.log_metrics({f"{m}.{k}": v for m in cfg.methods for k, v in result[m].items()})
        tracking.log_curves(points, [regime for regime, _ in REGIMES])  # accuracy against k, in the chart view
        tracking.log_table([p for m in cfg.methods for p in points[m]], POINT_COLUMNS, "sweep_table.json")
        tracking.log_artifacts([paths.SWEEP_PNG, paths.SWEEP_PARAMS_PNG], artifact_path="figures")
        tracking.log_artifacts([paths.SWEEP_CSV, paths.CURVES_CSV, paths.SWEEP_SUMMARY])
        print(f"plot: wrote {paths.SWEEP_PNG}, {paths.SWEEP_CSV}; summary {result}")


if __name__ == "__main__":
    stage.run(main)
