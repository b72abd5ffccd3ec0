"""Stage sweep@<method>-<seed>: the seed's baseline pruned at every sweep.sparsities point, one-shot and fine-tuned.

A gradual schedule reaches each point gradually; the iterative one adds IMP. Each point's
final model is exported and measured: counts go in the point, timings in results/speed/.
"""

import argparse

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True, help="the replicate: one of sweep.seeds")
    args = parser.parse_args()

    import dataclasses
    from prunelab import atomic, checkpoint, config, exporting, paths, tracking
    from prunelab.data import load_prepared
    from prunelab.lottery import plan
    from prunelab.pruning import METHODS
    from prunelab.pruning.point import point_config
    from prunelab.reproducibility import seed_everything
    from prunelab.sweep import Sweep, check_schedule, run_sweep
    from prunelab.training import resolve_device

    params = config.load_params()
    sweep_cfg, tune_cfg = config.section(params, config.SweepConfig), config.section(params, config.FinetuneConfig)
    seed, augment = config.check_int("--seed", args.seed, minimum=0), config.section(params, config.DataConfig).augment
    prune_cfg = dataclasses.replace(config.section(params, config.PruneConfig), seed=seed)
    device = resolve_device(config.section(params, config.TrainConfig).device)
    config.check_choice("--method", args.method, METHODS.names())
    first = point_config(prune_cfg, args.method, sweep_cfg.sparsities[0])  # the method's options, checked
    check_schedule(first, sweep_cfg.finetune_epochs)
    seed_everything(seed)
    base, data = checkpoint.load(paths.baseline_model(seed)), load_prepared(paths.PREPARED_DATA)
    METHODS.get(args.method).check_model(base.model, base.model_cfg.name, first, key="sweep.methods")
    tune = dataclasses.replace(tune_cfg, epochs=sweep_cfg.finetune_epochs) if sweep_cfg.finetune_epochs else None
    iterative = (plan(base.model, base.rewind, paths.baseline_model(seed), prune_cfg, tune, data, device)
                 if prune_cfg.iterative else None)
    measured = exporting.SweepMeasure(base, seed, device, data.test)
    dataset = (paths.PREPARED_DATA, data.name, "training")

    def tags(**extra):
        return tracking.run_tags("sweep", dataset=data.name, model=base.model_cfg.name, method=args.method,
                                 seed=seed, **extra)

    def log_point(point, result):  # one nested run per point, one per IMP level
        tracking.log_child(f"sweep {args.method} seed {seed} {point['sparsity']:g}",
                           tags=tags(sparsity=point["sparsity"]), values=point | measured.timings[-1],
                           params={"method": args.method, "sparsity": point["sparsity"], "seed": seed,
                                   "finetune_epochs": sweep_cfg.finetune_epochs, "finetune.lr": tune_cfg.lr},
                           history=result.history if result else None, dataset=dataset)

    def log_level(level, values):
        tracking.log_child(f"sweep {args.method} seed {seed} IMP k={level.sparsity:g}", values=values,
                           params={"sparsity": level.sparsity, "rewind": iterative.rewind.label,
                                   "epochs": iterative.train.epochs, "lr": iterative.train.lr},
                           tags=tags(sparsity=level.sparsity, regime="iterative"), dataset=dataset,
                           history=level.result.history if level.result else None)

    run_params = {"sweep": {**sweep_cfg.as_dict(), "methods": args.method, "seeds": seed},
                  "finetune": tune_cfg.as_dict(), "prune.include_classifier": prune_cfg.include_classifier,
                  "prune.schedule": prune_cfg.schedule, "prune.rewind": prune_cfg.rewind,
                  "prune.physical": first.physical, "data.augment": augment, "seed": seed}
    with tracking.start_run(f"sweep {args.method} seed {seed}", params=run_params, dataset=dataset, tags=tags()):
        points = run_sweep(Sweep(base.model, data, tune, seed, device, augment, iterative, measured), prune_cfg,
                           args.method, sweep_cfg.sparsities, on_point=log_point, on_level=log_level)
        out, timed = paths.sweep_result(args.method, seed), paths.sweep_speed(args.method, seed)
        atomic.write_json(out, {"method": args.method, "seed": seed, "dataset": data.name, "points": points,
                                "schedule": prune_cfg.schedule, "rewind": iterative and iterative.rewind.label})
        tracking.log_metrics(measured.write(timed, data, tune, method=args.method, seed=seed))
        tracking.log_artifacts([out, timed])


if __name__ == "__main__":
    stage.run(main)
