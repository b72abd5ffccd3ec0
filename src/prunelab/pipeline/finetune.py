"""Stage finetune: retrain the pruned model, early-stopping on val loss.

Masks stay fixed, or, when the prune stage recorded a polynomial schedule, grow on it
until the target sparsity (early stopping waits for the target).
"""

from __future__ import annotations

from prunelab import atomic, config, parallel, paths
from prunelab.data import load_prepared
from prunelab.pipeline import exports, runner
from prunelab.pruning import METHODS, prunable_layers
from prunelab.pruning.gradual import GradualPruner
from prunelab.pruning.masks import apply_masks, make_permanent
from prunelab.pruning.schedule import Polynomial
from prunelab.seeding import seed_everything
from prunelab.train import checkpoint
from prunelab.train.evaluate import scaled
from prunelab.train.fit import HISTORY_COLUMNS, fit, resolve_device


def finetune() -> None:
    params = config.load_params()
    cfg, seed = config.section(params, config.FinetuneConfig), config.seed(params)
    augment = config.section(params, config.DataConfig).augment
    device = resolve_device(config.section(params, config.TrainConfig).device)
    seed_everything(seed)
    pruned = checkpoint.load(paths.PRUNED_MODEL)
    data = load_prepared(paths.PREPARED_DATA)
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    meta = pruned.meta
    tags = track.run_tags(
        "finetune",
        dataset=data.name,
        model=pruned.model_cfg.name,
        method=meta.get("method"),
        sparsity=meta.get("sparsity"),
    )
    run_params = {"finetune": cfg.as_dict(), "data.augment": augment, "seed": seed}
    with track.start_run(
        "finetune", params=run_params, tags=tags, dataset=(paths.PREPARED_DATA, data.name, "training")
    ):
        model = pruned.model
        layers = prunable_layers(model, meta.get("include_classifier", False))
        if pruned.masks:  # structurally pruned models have no masks: the removed filters are gone
            apply_masks(layers, pruned.masks)
        pruner = None
        if meta.get("schedule"):
            pruner = GradualPruner(
                METHODS.get(meta["method"]), layers, Polynomial(**meta["schedule"]), meta.get("seed", seed)
            )
        result = fit(
            model,
            data,
            cfg,
            seed=seed,
            device=device,
            desc="fine-tune",
            on_epoch=runner.after_epoch,
            augment=augment,
            pruner=pruner,
        )
        if not parallel.is_writer():
            return  # every rank fine-tuned; rank 0 alone writes and logs
        make_permanent(model)
        model.cpu()
        meta = {**meta, "finetune_epochs_run": len(result.history), "finetune_best_epoch": result.best_epoch}
        checkpoint.save(
            paths.FINETUNED_MODEL,
            checkpoint.Checkpoint(
                model,
                pruned.model_cfg,
                pruned.input_shape,
                pruned.num_classes,
                pruner.masks if pruner else pruned.masks,
                meta,
            ),
        )
        exports.write_export(model, pruned.input_shape, paths.FINETUNED_EXPORT / paths.EXPORT_STEM, timing="none")
        atomic.write_csv(paths.FINETUNE_HISTORY, result.history, HISTORY_COLUMNS + (["sparsity"] if pruner else []))
        track.log_metrics({"best_epoch": result.best_epoch, "stopped_early": int(result.stopped_early)})
        track.log_artifacts([paths.FINETUNE_HISTORY])
        track.log_model(model, "finetuned", scaled(data.test.images[:2]).numpy())
        print(
            f"finetune: {len(result.history)} epochs, best epoch {result.best_epoch}"
            f"{' (stopped early)' if result.stopped_early else ''}"
            + (f"; pruned gradually to sparsity {pruner.sparsity:g}" if pruner else "")
        )
