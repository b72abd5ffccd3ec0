"""Stage evaluate: test accuracy and loss, size and achieved sparsity of the pruned model.

Reports the model before fine-tuning (one-shot) and after, against the baseline.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, checkpoint, paths
    from prunelab.data import load_prepared
    from prunelab.measure import METRICS, Subject
    from prunelab.pruning import prunable_layers
    from prunelab.report import versus_baseline

    data = load_prepared(paths.PREPARED_DATA)
    pruned, tuned = checkpoint.load(paths.PRUNED_MODEL), checkpoint.load(paths.FINETUNED_MODEL)
    baseline = atomic.read_json(paths.baseline_metrics(tuned.meta.get("seed", 0)))  # the baseline it was pruned from
    from prunelab import tracking

    meta = tuned.meta
    tags = tracking.run_tags("evaluate", dataset=data.name, model=tuned.model_cfg.name,
                             method=meta.get("method"), sparsity=meta.get("sparsity"))
    with tracking.start_run("evaluate", params={}, tags=tags,
                            dataset=(paths.PREPARED_DATA, data.name, "evaluation")):
        layers = prunable_layers(tuned.model, meta.get("include_classifier", False))
        tuned_subject = Subject(tuned.model, layers, split=data.test)
        metrics = (METRICS.get("test")(tuned_subject)
                   | METRICS.get("test")(Subject(pruned.model, split=data.test), "oneshot_")
                   | METRICS.get("parameters")(tuned_subject) | {"target_sparsity": meta.get("sparsity")})
        metrics |= versus_baseline(metrics["test_accuracy"], metrics["params"], baseline)
        atomic.write_json(paths.EVALUATE_METRICS, metrics)
        tracking.log_metrics(metrics)
        tracking.log_artifacts([paths.EVALUATE_METRICS])
        print(f"evaluate: test accuracy {metrics['test_accuracy']:.4f} "
              f"(one-shot {metrics['oneshot_test_accuracy']:.4f}, baseline {baseline['test_accuracy']:.4f}), "
              f"sparsity {metrics['sparsity_prunable']:.4f}, "
              f"{metrics['nonzero_params']:,} of {metrics['params']:,} parameters nonzero"
              + (f"; {metrics['param_reduction']:.1%} fewer parameters than the baseline"
                 if metrics["param_reduction"] > 0 else ""))


if __name__ == "__main__":
    stage.run(main)
