"""Stage prune: prune the baseline one-shot with prune.method at prune.sparsity."""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, checkpoint, config, paths
    from prunelab.errors import ConfigError
    from prunelab.measure import sparsity_report
    from prunelab.pruning import STRUCTURAL
    from prunelab.pruning.masks import make_permanent
    from prunelab.pruning.structured import conv_layers
    from prunelab.sweep import prune_point

    params = config.load_params()
    cfg = config.section(params, config.PruneConfig)
    base = checkpoint.load(paths.BASELINE_MODEL)
    if cfg.method in STRUCTURAL and not conv_layers(base.model):
        raise ConfigError("prune.method", cfg.method, f"weight, weight_global or unit: model "
                          f"{base.model_cfg.name!r} has no convolution layers to remove filters from")
    from prunelab import tracking

    tags = tracking.run_tags("prune", dataset=base.meta.get("dataset"), model=base.model_cfg.name,
                             method=cfg.method, sparsity=cfg.sparsity, threshold=cfg.threshold)
    with tracking.start_run(f"prune {cfg.method} {cfg.label}", params={"prune": cfg.as_dict()}, tags=tags):
        layers, masks, structure = prune_point(base.model, cfg.method, cfg.sparsity, cfg.include_classifier,
                                               input_shape=base.input_shape, threshold=cfg.threshold,
                                               norm=cfg.norm)
        make_permanent(base.model)
        kept_one = structure.pop("kept_one", [])
        if kept_one:
            print(f"prune: the threshold would remove every filter of {', '.join(kept_one)}; kept the strongest")
        report = sparsity_report(base.model, layers) | structure
        meta = {**base.meta, "method": cfg.method, "sparsity": cfg.sparsity, "threshold": cfg.threshold,
                "include_classifier": cfg.include_classifier}
        checkpoint.save(paths.PRUNED_MODEL, checkpoint.Checkpoint(
            base.model, base.model_cfg, base.input_shape, base.num_classes, masks, meta))
        atomic.write_json(paths.PRUNE_METRICS, report)
        tracking.log_metrics(report)
        tracking.log_artifacts([paths.PRUNE_METRICS])
        print(f"prune: {cfg.method} {cfg.label}: achieved sparsity {report['sparsity_prunable']:.4f} "
              f"of prunable weights, {report['sparsity_all']:.4f} of all parameters"
              + (f"; removed {structure['filters_removed_fraction']:.1%} of filters, "
                 f"{structure['param_reduction']:.1%} of parameters" if structure else ""))


if __name__ == "__main__":
    stage.run(main)
