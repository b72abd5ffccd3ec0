"""Stage efficiency: what pruning buys. Test accuracy against the export's measured latency and
its size on disk, per method and regime, with the dense model as reference.

Reads the sweep's points (counted, exact) and their timings (measured), for exactly the
methods, seeds and sparsities in params. Every output holds timings: a measurement.
"""

from __future__ import annotations

from prunelab import atomic, config, paths
from prunelab.pruning.options import sweep_config
from prunelab.report import efficiency as report
from prunelab.report.curves import mean_std
from prunelab.report.figures import efficiency_figure
from prunelab.report.sweep import baselines


def efficiency() -> None:
    cfg = sweep_config(config.load_params())
    rows = report.load(cfg.methods, cfg.seeds, cfg.sparsities)
    dense = baselines(cfg.seeds)
    calm = report.quiet(rows)  # the dense reference lines, from timings taken on a quiet machine
    dense |= {
        "latency_b1_ms": mean_std([r["dense_latency_b1_ms"] for r in calm])[0],
        "us_per_image": mean_std([1e6 / r["dense_throughput_ips"] for r in calm])[0],
    }
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    with track.start_run("efficiency", params={"sweep": cfg.as_dict()}, tags=track.run_tags("efficiency")):
        curves = report.curves(rows)
        atomic.write_csv(paths.EFFICIENCY_CSV, rows, report.TIMED_POINT_COLUMNS)
        atomic.write_csv(paths.EFFICIENCY_CURVES, curves, report.EFFICIENCY_CURVE_COLUMNS)
        result = report.summary(rows, dense["test_accuracy"], cfg.tolerance)
        atomic.write_json(paths.EFFICIENCY_SUMMARY, result)
        threads = sorted({r["threads"] for r in rows})
        title = (
            f"What pruning buys: {', '.join(cfg.methods)}; timings on {'/'.join(map(str, threads))} threads, "
            f"one run (see {paths.EFFICIENCY_CSV} for every point)"
        )
        efficiency_figure(curves, dense, title, paths.EFFICIENCY_PNG)
        track.log_metrics({f"{m}.{k}": v for m in result for k, v in result[m].items()})
        track.log_artifacts([paths.EFFICIENCY_PNG], artifact_path="figures")
        track.log_artifacts([paths.EFFICIENCY_CSV, paths.EFFICIENCY_CURVES, paths.EFFICIENCY_SUMMARY])
        print(f"efficiency: wrote {paths.EFFICIENCY_PNG}; where accuracy holds: {result}")
