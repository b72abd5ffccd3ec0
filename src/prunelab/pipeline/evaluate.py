"""Stage evaluate: test accuracy and loss, size, sparsity, FLOPs and speed of the pruned model.

Reports the model before fine-tuning (one-shot) and after, against the baseline: counts in
metrics/evaluate.json, timings (each export against the dense baseline, in the same
rounds; one training epoch of each) in metrics/speed/evaluate.json.
"""

from __future__ import annotations

from prunelab import atomic, config, paths
from prunelab.data import load_prepared
from prunelab.measure import METRICS, Subject
from prunelab.pipeline import exports
from prunelab.pruning import prunable_layers
from prunelab.report.sweep import versus_baseline
from prunelab.train import checkpoint


def evaluate() -> None:
    data = load_prepared(paths.PREPARED_DATA)
    pruned, tuned = checkpoint.load(paths.PRUNED_MODEL), checkpoint.load(paths.FINETUNED_MODEL)
    seed = tuned.meta.get("seed", 0)
    baseline = atomic.read_json(paths.baseline_metrics(seed))  # the baseline it was pruned from
    params = config.load_params()
    device, optim = config.section(params, config.TrainConfig).device, config.section(params, config.FinetuneConfig)
    dense, dense_bytes = checkpoint.load(paths.baseline_model(seed)).model, paths.baseline_export(seed).stat().st_size
    opened = [
        exports.open_export(exports.find_export(f), device=device)  # verified before any run starts
        for f in (paths.PRUNED_EXPORT, paths.FINETUNED_EXPORT)
    ]
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    meta = tuned.meta
    tags = track.run_tags(
        "evaluate",
        dataset=data.name,
        model=tuned.model_cfg.name,
        method=meta.get("method"),
        sparsity=meta.get("sparsity"),
    )
    with track.start_run("evaluate", params={}, tags=tags, dataset=(paths.PREPARED_DATA, data.name, "evaluation")):
        layers = prunable_layers(tuned.model, meta.get("include_classifier", False))
        tuned_subject = Subject(tuned.model, layers, split=data.test)
        metrics = (
            METRICS.get("test")(tuned_subject)
            | METRICS.get("test")(Subject(pruned.model, split=data.test), "oneshot_")
            | METRICS.get("parameters")(tuned_subject)
            | {"target_sparsity": meta.get("sparsity")}
        )
        metrics |= versus_baseline(metrics["test_accuracy"], metrics["params"], baseline)
        speed = {}
        regimes = (
            ("oneshot_", pruned.model, paths.PRUNED_MODEL, opened[0], {}),
            ("", tuned.model, paths.FINETUNED_MODEL, opened[1], {"train": data.train, "optim": optim}),
        )
        for prefix, model, path, export, tune in regimes:
            cost, timed = exports.measure(
                model,
                data.input_shape,
                device=device,
                prefix=prefix,
                checkpoint=path,
                export=export,
                reference=dense,
                dense_bytes=dense_bytes,
                split=data.test,
                **tune,
            )
            metrics, speed = metrics | cost, speed | timed
        atomic.write_json(paths.EVALUATE_METRICS, metrics)
        exports.write_measurements(paths.EVALUATE_SPEED, speed, device=device)
        track.log_metrics(metrics | speed)
        track.log_artifacts([paths.EVALUATE_METRICS, paths.EVALUATE_SPEED])
        print(
            f"evaluate: test accuracy {metrics['test_accuracy']:.4f} "
            f"(one-shot {metrics['oneshot_test_accuracy']:.4f}, baseline {baseline['test_accuracy']:.4f}), "
            f"sparsity {metrics['sparsity_prunable']:.4f}, "
            f"{metrics['nonzero_params']:,} of {metrics['params']:,} parameters nonzero"
            + (
                f"; {metrics['param_reduction']:.1%} fewer parameters than the baseline"
                if metrics["param_reduction"] > 0
                else ""
            )
        )
        print(
            f"evaluate: export {metrics['export_bytes'] / 2**20:.2f} MiB ({metrics['export_size_ratio']:.3f} of the "
            f"dense export), {speed['speedup_b1']:.2f}x the dense speed at batch 1, "
            f"{speed['speedup_eval']:.2f}x at batch {speed['eval_batch']} ({speed['threads']} threads)"
        )
