"""Stage prune: prune the baseline with prune.method at prune.sparsity (or prune.threshold).

With prune.schedule 'polynomial' it prunes to prune.initial_sparsity and records the
schedule in the checkpoint; the finetune stage then reaches prune.sparsity gradually.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    import dataclasses

    from prunelab import atomic, checkpoint, config, paths
    from prunelab.measure import sparsity_report
    from prunelab.pruning.applicable import check_applicable
    from prunelab.pruning.masks import make_permanent
    from prunelab.sweep import prune_point

    params = config.load_params()
    cfg = config.section(params, config.PruneConfig)
    base = checkpoint.load(paths.BASELINE_MODEL)
    check_applicable(cfg.method, base.model, base.model_cfg.name, cfg.include_classifier)
    from prunelab import tracking

    tags = tracking.run_tags("prune", dataset=base.meta.get("dataset"), model=base.model_cfg.name,
                             method=cfg.method, sparsity=cfg.sparsity, threshold=cfg.threshold)
    plan = cfg.gradual
    with tracking.start_run(f"prune {cfg.method} {cfg.label}", params={"prune": cfg.as_dict()}, tags=tags):
        amount = plan.initial if plan else cfg.sparsity
        layers, masks, structure = prune_point(base.model, cfg.method, amount, cfg.include_classifier,
                                               input_shape=base.input_shape, threshold=cfg.threshold,
                                               norm=cfg.norm, physical=cfg.physical)
        make_permanent(base.model)
        kept_one = structure.pop("kept_one", [])
        if kept_one:
            print(f"prune: every filter or unit of {', '.join(kept_one)} would have gone; kept the strongest")
        report = sparsity_report(base.model, layers) | structure
        meta = {**base.meta, "method": cfg.method, "sparsity": cfg.sparsity, "threshold": cfg.threshold,
                "include_classifier": cfg.include_classifier,
                "schedule": dataclasses.asdict(plan) if plan else None}
        checkpoint.save(paths.PRUNED_MODEL, checkpoint.Checkpoint(
            base.model, base.model_cfg, base.input_shape, base.num_classes, masks, meta))
        atomic.write_json(paths.PRUNE_METRICS, report)
        tracking.log_metrics(report)
        tracking.log_artifacts([paths.PRUNE_METRICS])
        print(f"prune: {cfg.method} {cfg.label}: achieved sparsity {report['sparsity_prunable']:.4f} "
              f"of prunable weights, {report['sparsity_all']:.4f} of all parameters"
              + "".join(f"; removed {structure[f'{kind}_removed_fraction']:.1%} of {kind}, "
                        f"{structure['param_reduction']:.1%} of parameters"
                        for kind in ("filters", "units") if f"{kind}_removed_fraction" in structure))


if __name__ == "__main__":
    stage.run(main)
