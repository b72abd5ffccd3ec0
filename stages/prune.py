"""Stage prune: prune the seed's baseline with prune.method at prune.sparsity (or prune.threshold).

On a gradual schedule it prunes to prune.initial_sparsity and records the schedule in
the checkpoint; the finetune stage then reaches prune.sparsity gradually. On the
iterative one it runs IMP (lottery.py) up through sweep.sparsities below prune.sparsity,
then to it, rewinding and training at each level.
"""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    import dataclasses

    from prunelab import atomic, checkpoint, config, exporting, paths
    from prunelab.measure import METRICS, Subject
    from prunelab.pruning import METHODS
    from prunelab.pruning.masks import make_permanent
    from prunelab.pruning.point import prune

    params = config.load_params()
    seed = config.seed(params)
    cfg = dataclasses.replace(config.section(params, config.PruneConfig), seed=seed)
    base = checkpoint.load(paths.baseline_model(seed))
    METHODS.get(cfg.method).check_model(base.model, base.model_cfg.name, cfg)
    from prunelab import tracking

    tags = tracking.run_tags("prune", dataset=base.meta.get("dataset"), model=base.model_cfg.name,
                             method=cfg.method, sparsity=cfg.sparsity, threshold=cfg.threshold)
    with tracking.start_run(f"prune {cfg.method} {cfg.label}", params={"prune": cfg.as_dict()}, tags=tags):
        if cfg.iterative:  # IMP: levels up through sweep.sparsities below the target, then the target
            from prunelab import lottery
            from prunelab.data import load_prepared
            from prunelab.training import resolve_device

            data, device = load_prepared(paths.PREPARED_DATA), resolve_device(config.section(params, config.TrainConfig).device)
            how = lottery.plan(base.model, base.rewind, paths.baseline_model(seed), cfg,
                               config.section(params, config.FinetuneConfig), data, device)
            ks = lottery.levels(config.section(params, config.SweepConfig).sparsities, cfg.sparsity)

            def log_level(level):
                tracking.log_child(f"prune IMP k={level.sparsity:g}", params={"sparsity": level.sparsity},
                                   tags={**tags, "sparsity": str(level.sparsity)}, history=level.result and level.result.history,
                                   values=METRICS.get("test")(Subject(base.model, split=data.test, device=device)))

            pruned = lottery.run(base.model, METHODS.get(cfg.method), cfg, ks, how, data, device, log_level)
            base.model.cpu()
        else:
            pruned = prune(base.model, cfg, base.input_shape)
        make_permanent(base.model)
        if pruned.kept_one:
            print(f"prune: every filter or unit of {', '.join(pruned.kept_one)} would have gone; kept the strongest")
        subject = Subject(base.model, pruned.layers, pruned.structure)
        report = METRICS.get("parameters")(subject) | METRICS.get("structure")(subject)
        plan = cfg.gradual
        meta = {**base.meta, "method": cfg.method, "sparsity": cfg.sparsity, "threshold": cfg.threshold,
                "include_classifier": cfg.include_classifier, "seed": seed,
                "rewind": cfg.rewind if cfg.iterative else None,
                "schedule": dataclasses.asdict(plan) if plan else None}
        checkpoint.save(paths.PRUNED_MODEL, checkpoint.Checkpoint(
            base.model, base.model_cfg, base.input_shape, base.num_classes, pruned.masks, meta))
        exporting.write_export(base.model, base.input_shape, paths.PRUNED_EXPORT / paths.EXPORT_STEM, timing="none")
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
