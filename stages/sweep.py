"""Stage sweep@<method>: the baseline pruned at every sweep.sparsities point, one-shot and fine-tuned.

On a gradual schedule the fine-tuned numbers come from gradual pruning to each point.

One process per method (a DVC matrix over sweep.methods), one MLflow run per point,
nested under the stage's run.
"""

import argparse

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True)
    args = parser.parse_args()

    import dataclasses

    from prunelab import atomic, checkpoint, config, paths
    from prunelab.data import load_prepared
    from prunelab.pruning import METHODS
    from prunelab.pruning.point import point_config
    from prunelab.reproducibility import seed_everything
    from prunelab.sweep import Sweep, run_sweep
    from prunelab.training import resolve_device

    params = config.load_params()
    sweep_cfg, tune_cfg = config.section(params, config.SweepConfig), config.section(params, config.FinetuneConfig)
    prune_cfg, augment = config.section(params, config.PruneConfig), config.section(params, config.DataConfig).augment
    seed, device = config.seed(params), resolve_device(config.section(params, config.TrainConfig).device)
    config.check_choice("--method", args.method, METHODS.names())
    first = point_config(prune_cfg, args.method, sweep_cfg.sparsities[0])  # the method's options, checked
    if first.gradual and sweep_cfg.finetune_epochs == 0:
        raise config.ConfigError("sweep.finetune_epochs", 0, f"at least 1 with prune.schedule {first.schedule!r} "
                                 "(the schedule prunes during fine-tuning)")
    seed_everything(seed)
    base, data = checkpoint.load(paths.BASELINE_MODEL), load_prepared(paths.PREPARED_DATA)
    METHODS.get(args.method).check_model(base.model, base.model_cfg.name, first, key="sweep.methods")
    from prunelab import tracking

    def tags(**extra):
        return tracking.run_tags("sweep", dataset=data.name, model=base.model_cfg.name, method=args.method, **extra)

    def log_point(point, result):
        run_params = {"method": args.method, "sparsity": point["sparsity"],
                      "finetune_epochs": sweep_cfg.finetune_epochs, "finetune.lr": tune_cfg.lr}
        with tracking.start_run(f"sweep {args.method} {point['sparsity']:g}", params=run_params,
                                tags=tags(sparsity=point["sparsity"]), nested=True, dataset=dataset):
            tracking.log_metrics({k: v for k, v in point.items() if isinstance(v, int | float)})
            if result is not None:
                tracking.log_history(result.history)

    run_params = {"sweep": {**sweep_cfg.as_dict(), "methods": args.method}, "finetune": tune_cfg.as_dict(),
                  "prune.include_classifier": prune_cfg.include_classifier, "prune.schedule": prune_cfg.schedule,
                  "prune.physical": first.physical, "data.augment": augment, "seed": seed}
    tune = dataclasses.replace(tune_cfg, epochs=sweep_cfg.finetune_epochs) if sweep_cfg.finetune_epochs else None
    dataset = (paths.PREPARED_DATA, data.name, "training")
    with tracking.start_run(f"sweep {args.method}", params=run_params, tags=tags(), dataset=dataset):
        points = run_sweep(Sweep(base.model, data, tune, seed, device, augment), prune_cfg, args.method,
                           sweep_cfg.sparsities, on_point=log_point)
        out = paths.sweep_result(args.method)
        atomic.write_json(out, {"method": args.method, "dataset": data.name, "schedule": prune_cfg.schedule,
                                "points": points})
        tracking.log_artifacts([out])
        for p in points:
            tuned = p.get("finetuned_test_accuracy")
            print(f"sweep {args.method} k={p['sparsity']:<6g} one-shot {p['oneshot_test_accuracy']:.4f}"
                  + (f"  fine-tuned {tuned:.4f}" if tuned is not None else ""))


if __name__ == "__main__":
    stage.run(main)
