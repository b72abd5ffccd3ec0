"""Stage prune: prune the baseline one-shot with prune.method at prune.sparsity."""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, checkpoint, config, paths
    from prunelab.measure import sparsity_report
    from prunelab.pruning.masks import make_permanent
    from prunelab.sweep import prune_point

    params = config.load_params()
    cfg = config.section(params, config.PruneConfig)
    base = checkpoint.load(paths.BASELINE_MODEL)
    from prunelab import tracking

    tags = tracking.run_tags("prune", dataset=base.meta.get("dataset"), model=base.model_cfg.name,
                             method=cfg.method, sparsity=cfg.sparsity)
    with tracking.start_run(f"prune {cfg.method} {cfg.sparsity:g}", params={"prune": cfg.as_dict()}, tags=tags):
        layers, masks = prune_point(base.model, cfg.method, cfg.sparsity, cfg.include_classifier)
        make_permanent(base.model)
        report = sparsity_report(base.model, layers)
        meta = {**base.meta, "method": cfg.method, "sparsity": cfg.sparsity,
                "include_classifier": cfg.include_classifier}
        checkpoint.save(paths.PRUNED_MODEL, checkpoint.Checkpoint(
            base.model, base.model_cfg, base.input_shape, base.num_classes, masks, meta))
        atomic.write_json(paths.PRUNE_METRICS, report)
        tracking.log_metrics(report)
        tracking.log_artifacts([paths.PRUNE_METRICS])
        print(f"prune: {cfg.method} k={cfg.sparsity:g}: achieved sparsity {report['sparsity_prunable']:.4f} "
              f"of prunable weights, {report['sparsity_all']:.4f} of all parameters")


if __name__ == "__main__":
    stage.run(main)
