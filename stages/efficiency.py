"""Stage efficiency: what pruning buys. Test accuracy against the export's measured latency and
its size on disk, per method and regime, with the dense model as reference.

Reads the sweep's points (counted, exact) and their timings (measured), for exactly the
methods, seeds and sparsities in params. Every output holds timings: a measurement.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, config, paths, tracking
    from prunelab import efficiency_report as report
    from prunelab.plotting import efficiency_figure
    from prunelab.report import load_sweep, mean_std

    cfg = config.section(config.load_params(), config.SweepConfig)
    rows = [row for m in cfg.methods for s in cfg.seeds
            for row in report.join(load_sweep(paths.sweep_result(m, s), m, cfg.sparsities, s),
                                   report.load_timings(paths.sweep_speed(m, s), m, s, cfg.sparsities))]
    baselines = [atomic.read_json(paths.baseline_metrics(s)) for s in cfg.seeds]
    acc, acc_std = mean_std([b["test_accuracy"] for b in baselines])
    dense = {"test_accuracy": acc, "test_accuracy_std": acc_std,
             "latency_b1_ms": mean_std([r["dense_latency_b1_ms"] for r in rows])[0],
             "us_per_image": mean_std([1e6 / r["dense_throughput_ips"] for r in rows])[0],
             "export_mib": mean_std([b["export_bytes"] for b in baselines])[0] / 2**20}
    with tracking.start_run("efficiency", params={"sweep": cfg.as_dict()}, tags=tracking.run_tags("efficiency")):
        curves = report.curves(rows)
        atomic.write_csv(paths.EFFICIENCY_CSV, rows, report.POINTS_COLUMNS)
        atomic.write_csv(paths.EFFICIENCY_CURVES, curves, report.CURVE_COLUMNS)
        result = report.summary(rows, acc, cfg.tolerance)
        atomic.write_json(paths.EFFICIENCY_SUMMARY, result)
        threads = sorted({r["threads"] for r in rows})
        title = (f"What pruning buys: {', '.join(cfg.methods)}; timings on {'/'.join(map(str, threads))} threads, "
                 f"one run (see {paths.EFFICIENCY_CSV} for every point)")
        efficiency_figure(curves, dense, title, paths.EFFICIENCY_PNG)
        tracking.log_metrics({f"{m}.{k}": v for m in result for k, v in result[m].items()})
        tracking.log_artifacts([paths.EFFICIENCY_PNG], artifact_path="figures")
        tracking.log_artifacts([paths.EFFICIENCY_CSV, paths.EFFICIENCY_CURVES, paths.EFFICIENCY_SUMMARY])
        print(f"efficiency: wrote {paths.EFFICIENCY_PNG}; where accuracy holds: {result}")


if __name__ == "__main__":
    stage.run(main)
