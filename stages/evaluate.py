"""Stage evaluate: test accuracy and loss, size and achieved sparsity of the pruned model.

Reports the model before fine-tuning (one-shot) and after, against the baseline.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, checkpoint, paths
    from prunelab.data import load_prepared
    from prunelab.measure import sparsity_report
    from prunelab.pruning import prunable_layers
    from prunelab.training import evaluate

    data = load_prepared(paths.PREPARED_DATA)
    pruned, tuned = checkpoint.load(paths.PRUNED_MODEL), checkpoint.load(paths.FINETUNED_MODEL)
    baseline = atomic.read_json(paths.BASELINE_METRICS)
    from prunelab import tracking

    meta = tuned.meta
    tags = tracking.run_tags("evaluate", dataset=data.name, model=tuned.model_cfg.name,
                             method=meta.get("method"), sparsity=meta.get("sparsity"))
    with tracking.start_run("evaluate", params={}, tags=tags):
        oneshot, test = evaluate(pruned.model, data.test), evaluate(tuned.model, data.test)
        report = sparsity_report(tuned.model, prunable_layers(tuned.model, meta.get("include_classifier", False)))
        metrics = {
            "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "oneshot_test_accuracy": oneshot["accuracy"], "oneshot_test_loss": oneshot["loss"],
            "baseline_test_accuracy": baseline["test_accuracy"],
            "accuracy_drop": baseline["test_accuracy"] - test["accuracy"],
            "target_sparsity": meta.get("sparsity"), **report,
            # physically removed filters or units; masks leave the count unchanged (see compression_ratio)
            "baseline_params": baseline["params"], "param_reduction": 1 - report["params"] / baseline["params"],
        }
        atomic.write_json(paths.EVALUATE_METRICS, metrics)
        tracking.log_metrics(metrics)
        tracking.log_artifacts([paths.EVALUATE_METRICS])
        print(f"evaluate: test accuracy {test['accuracy']:.4f} (one-shot {oneshot['accuracy']:.4f}, "
              f"baseline {baseline['test_accuracy']:.4f}), sparsity {report['sparsity_prunable']:.4f}, "
              f"{report['nonzero_params']:,} of {report['params']:,} parameters nonzero"
              + (f"; {metrics['param_reduction']:.1%} fewer parameters than the baseline"
                 if metrics["param_reduction"] > 0 else ""))


if __name__ == "__main__":
    stage.run(main)
