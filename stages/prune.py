"""Stage prune: prune the baseline with prune.method at prune.sparsity (or prune.threshold).

On a gradual schedule it prunes to prune.initial_sparsity and records the schedule in
the checkpoint; the finetune stage then reaches prune.sparsity gradually.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    import dataclasses

    from prunelab import atomic, checkpoint, config, paths
    from prunelab.measure import METRICS, Subject
    from prunelab.pruning import METHODS
    from prunelab.pruning.masks import make_permanent
    from prunelab.pruning.point import prune

    cfg = config.section(config.load_params(), config.PruneConfig)
    base = checkpoint.load(paths.BASELINE_MODEL)
    METHODS.get(cfg.method).check_model(base.model, base.model_cfg.name, cfg)
    from prunelab import tracking

    tags = tracking.run_tags("prune", dataset=base.meta.get("dataset"), model=base.model_cfg.name,
                             method=cfg.method, sparsity=cfg.sparsity, threshold=cfg.threshold)
    with tracking.start_run(f"prune {cfg.method} {cfg.label}", params={"prune": cfg.as_dict()}, tags=tags):
        pruned = prune(base.model, cfg, base.input_shape)
        make_permanent(base.model)
        if pruned.kept_one:
            print(f"prune: every filter or unit of {', '.join(pruned.kept_one)} would have gone; kept the strongest")
        subject = Subject(base.model, pruned.layers, pruned.structure)
        report = METRICS.get("parameters")(subject) | METRICS.get("structure")(subject)
        plan = cfg.gradual
        meta = {**base.meta, "method": cfg.method, "sparsity": cfg.sparsity, "threshold": cfg.threshold,
                "include_classifier": cfg.include_classifier,
                "schedule": dataclasses.asdict(plan) if plan else None}
        checkpoint.save(paths.PRUNED_MODEL, checkpoint.Checkpoint(
            base.model, base.model_cfg, base.input_shape, base.num_classes, pruned.masks, meta))
        atomic.write_json(paths.PRUNE_METRICS, report)
        tracking.log_metrics(report)
        tracking.log_artifacts([paths.PRUNE_METRICS])
        print(f"prune: {cfg.method} {cfg.label}: achieved sparsity {report['sparsity_prunable']:.4f} "
              f"of prunable weights, {report['sparsity_all']:.4f} of all parameters"
              + "".join(f"; removed {report[f'{kind}_removed_fraction']:.1%} of {kind}, "
                        f"{report['param_reduction']:.1%} of parameters"
                        for kind in ("filters", "units") if f"{kind}_removed_fraction" in report))


if __name__ == "__main__":
    stage.run(main)
