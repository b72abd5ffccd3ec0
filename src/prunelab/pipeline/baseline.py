"""Stage train_baseline@<seed>: train the dense model on the prepared dataset and test it once.

One process per seed of sweep.seeds (a DVC matrix), each cached on its own. The
checkpoint also keeps the rewind points iterative pruning needs (``pruning.imp.RewindPoints``).
"""

from __future__ import annotations

from prunelab import atomic, config, parallel, paths
from prunelab.data import load_prepared
from prunelab.measure.parameters import count_params
from prunelab.models import build_for, model_config
from prunelab.pipeline import exports, runner
from prunelab.pruning.imp import RewindPoints
from prunelab.seeding import seed_everything
from prunelab.train import checkpoint
from prunelab.train.evaluate import evaluate, scaled
from prunelab.train.fit import HISTORY_COLUMNS, fit, resolve_device


def train_baseline(seed: int) -> None:
    params = config.load_params()
    model_cfg, train_cfg = model_config(params), config.section(params, config.TrainConfig)
    config.seed(params)  # the split's seed must be one of sweep.seeds (the single-model path prunes its baseline)
    seed, augment = config.check_int("--seed", seed, minimum=0), config.section(params, config.DataConfig).augment
    device = resolve_device(train_cfg.device)
    seed_everything(seed)
    data = load_prepared(paths.PREPARED_DATA)
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    model = build_for(model_cfg, data)
    tags = track.run_tags(
        "train_baseline", dataset=data.name, model=model_cfg.name, method="none", sparsity=0.0, seed=seed
    )
    run_params = {"model": model_cfg.as_dict(), "train": train_cfg.as_dict(), "data.augment": augment, "seed": seed}
    with track.start_run(
        f"train_baseline seed {seed}",
        params=run_params,
        tags=tags,
        dataset=(paths.PREPARED_DATA, data.name, "training"),
    ):
        points = RewindPoints.record(model, train_cfg, seed, augment)

        def after_epoch(record):  # fingerprint the weights for rewinding, then log the epoch
            points.after_epoch(model)
            runner.after_epoch(record)

        result = fit(
            model,
            data,
            train_cfg,
            seed=seed,
            device=device,
            desc=f"train baseline seed {seed}",
            on_epoch=after_epoch,
            augment=augment,
        )
        if not parallel.is_writer():
            return  # every rank trained; rank 0 alone tests, measures, writes and logs
        test = evaluate(model, data.test, device)
        model.cpu()
        checkpoint.save(
            paths.baseline_model(seed),
            checkpoint.Checkpoint(
                model,
                model_cfg,
                data.input_shape,
                data.num_classes,
                meta={"dataset": data.name, "seed": seed},
                rewind=points.as_blob(),
            ),
        )
        export = exports.write_export(
            model, data.input_shape, paths.baseline_export(seed).with_suffix(""), device=device, dense=True
        )
        cost, speed = exports.measure(
            model,
            data.input_shape,
            device=device,
            checkpoint=paths.baseline_model(seed),
            export=export,
            dense_bytes=export.bytes,
            train=data.train,
            optim=train_cfg,
            split=data.test,
        )
        last = result.history[-1]
        metrics = {
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "epochs": len(result.history),
            "train_accuracy": last["train_accuracy"],
            "val_accuracy": last["val_accuracy"],
            "params": count_params(model),
        } | cost
        atomic.write_json(paths.baseline_metrics(seed), metrics)
        atomic.write_csv(paths.baseline_history(seed), result.history, HISTORY_COLUMNS)
        exports.write_measurements(paths.baseline_speed(seed), speed, device=device)
        track.log_metrics(metrics | speed)
        track.log_artifacts([paths.baseline_metrics(seed), paths.baseline_history(seed), paths.baseline_speed(seed)])
        track.log_model(model.cpu(), "baseline", scaled(data.test.images[:2]).numpy())
        print(f"train_baseline seed {seed}: test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")
