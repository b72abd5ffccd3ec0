"""Stage train_baseline: train the dense model on the prepared dataset and test it once."""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, checkpoint, config, paths
    from prunelab.data import load_prepared
    from prunelab.measure.parameters import count_params
    from prunelab.models import build_for
    from prunelab.reproducibility import seed_everything
    from prunelab.evaluation import evaluate, scaled
    from prunelab.training import HISTORY_COLUMNS, fit, resolve_device

    params = config.load_params()
    model_cfg, train_cfg = config.section(params, config.ModelConfig), config.section(params, config.TrainConfig)
    seed, augment = config.seed(params), config.section(params, config.DataConfig).augment
    device = resolve_device(train_cfg.device)
    seed_everything(seed)
    data = load_prepared(paths.PREPARED_DATA)
    from prunelab import tracking

    model = build_for(model_cfg, data)
    tags = tracking.run_tags("train_baseline", dataset=data.name, model=model_cfg.name, method="none", sparsity=0.0)
    run_params = {"model": model_cfg.as_dict(), "train": train_cfg.as_dict(), "data.augment": augment, "seed": seed}
    with tracking.start_run("train_baseline", params=run_params, tags=tags,
                            dataset=(paths.PREPARED_DATA, data.name, "training")):
        result = fit(model, data, train_cfg, seed=seed, device=device, desc="train baseline",
                     on_epoch=stage.after_epoch, augment=augment)
        test = evaluate(model, data.test, device)
        model.cpu()
        checkpoint.save(paths.BASELINE_MODEL, checkpoint.Checkpoint(
            model, model_cfg, data.input_shape, data.num_classes, meta={"dataset": data.name}))
        last = result.history[-1]
        metrics = {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "epochs": len(result.history),
                   "train_accuracy": last["train_accuracy"], "val_accuracy": last["val_accuracy"],
                   "params": count_params(model)}
        atomic.write_json(paths.BASELINE_METRICS, metrics)
        atomic.write_csv(paths.BASELINE_HISTORY, result.history, HISTORY_COLUMNS)
        tracking.log_metrics(metrics)
        tracking.log_artifacts([paths.BASELINE_METRICS, paths.BASELINE_HISTORY])
        tracking.log_model(model, "baseline", scaled(data.test.images[:2]).numpy())
        print(f"train_baseline: test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")


if __name__ == "__main__":
    stage.run(main)
