"""Stage prune: prune the seed's baseline with prune.method at prune.sparsity (or prune.threshold).

On a gradual schedule it prunes to prune.initial_sparsity and records the schedule in
the checkpoint; the finetune stage then reaches prune.sparsity gradually. On the
iterative one it runs IMP (``pruning.imp``) up through sweep.sparsities below
prune.sparsity, then to it, rewinding and training at each level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prunelab import atomic, config, parallel, paths
from prunelab.measure import METRICS, Subject
from prunelab.pipeline import exports
from prunelab.pruning import METHODS, Pruned, prune_config
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.point import prune as prune_point
from prunelab.pruning.schedule import gradual
from prunelab.train import checkpoint


def prune() -> None:
    params = config.load_params()
    seed = config.seed(params)
    cfg = prune_config(params, seed=seed)
    base = checkpoint.load(paths.baseline_model(seed))
    METHODS.get(cfg.method).check_model(base.model, base.model_cfg.name, cfg)
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    tags = track.run_tags(
        "prune",
        dataset=base.meta.get("dataset"),
        model=base.model_cfg.name,
        method=cfg.method,
        sparsity=cfg.sparsity,
        threshold=cfg.threshold,
    )
    with track.start_run(f"prune {cfg.method} {cfg.label}", params={"prune": cfg.as_dict()}, tags=tags):
        if cfg.iterative:  # IMP: levels up through sweep.sparsities below the target, then the target
            pruned = iterative(base, cfg, params, seed, tags)
            if not parallel.is_writer():
                return  # IMP trained on every rank; rank 0 alone writes
        else:
            pruned = prune_point(base.model, cfg, base.input_shape)
        make_permanent(base.model)
        if pruned.kept_one:
            print(f"prune: every filter or unit of {', '.join(pruned.kept_one)} would have gone; kept the strongest")
        subject = Subject(base.model, pruned.layers, pruned.structure)
        report = METRICS.get("parameters")(subject) | METRICS.get("structure")(subject)
        plan = gradual(cfg)
        meta = {
            **base.meta,
            "method": cfg.method,
            "sparsity": cfg.sparsity,
            "threshold": cfg.threshold,
            "include_classifier": cfg.include_classifier,
            "seed": seed,
            "rewind": cfg.rewind if cfg.iterative else None,
            "schedule": dataclasses.asdict(plan) if plan else None,
        }
        checkpoint.save(
            paths.PRUNED_MODEL,
            checkpoint.Checkpoint(base.model, base.model_cfg, base.input_shape, base.num_classes, pruned.masks, meta),
        )
        exports.write_export(base.model, base.input_shape, paths.PRUNED_EXPORT / paths.EXPORT_STEM, timing="none")
        atomic.write_json(paths.PRUNE_METRICS, report)
        track.log_metrics(report)
        track.log_artifacts([paths.PRUNE_METRICS])
        print(
            f"prune: {cfg.method} {cfg.label}: achieved sparsity {report['sparsity_prunable']:.4f} "
            f"of prunable weights, {report['sparsity_all']:.4f} of all parameters"
            + "".join(
                f"; removed {report[f'{kind}_removed_fraction']:.1%} of {kind}, "
                f"{report['param_reduction']:.1%} of parameters"
                for kind in ("filters", "units")
                if f"{kind}_removed_fraction" in report
            )
        )


def iterative(
    base: checkpoint.Checkpoint, cfg: config.PruneConfig, params: Mapping[str, Any], seed: int, tags: Mapping[str, str]
) -> Pruned:
    """IMP on the baseline up to ``cfg.sparsity``, each level logged as a nested MLflow run."""
    from prunelab import track
    from prunelab.data import load_prepared
    from prunelab.pruning import imp
    from prunelab.train.fit import resolve_device

    data = load_prepared(paths.PREPARED_DATA)
    device = resolve_device(config.section(params, config.TrainConfig).device)
    how = imp.plan(
        base.model,
        base.rewind,
        paths.baseline_model(seed),
        cfg,
        config.section(params, config.FinetuneConfig),
        data,
        device,
    )
    ks = imp.levels(config.section(params, config.SweepConfig).sparsities, cfg.sparsity)

    def log_level(level: imp.Level) -> None:
        track.log_child(
            f"prune IMP k={level.sparsity:g}",
            params={"sparsity": level.sparsity},
            tags={**tags, "sparsity": str(level.sparsity)},
            history=level.result and level.result.history,
            values=METRICS.get("test")(Subject(base.model, split=data.test, device=device)),
        )

    pruned = imp.run(base.model, METHODS.get(cfg.method), cfg, ks, how, data, device, log_level)
    base.model.cpu()
    return pruned
