"""Stage sweep@<method>-<seed>: the seed's baseline pruned at every k, one-shot and fine-tuned.

The points themselves are ``sweep_points``; this module reads the params, loads the
baseline and the data, logs one nested MLflow run per point (and per IMP level), and
writes the points (exact) and their timings (measured, results/speed/) apart.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from prunelab import atomic, config, parallel, paths
from prunelab.data import load_prepared
from prunelab.pipeline.compress import compress_model
from prunelab.pipeline.exports import SweepMeasure
from prunelab.pipeline.sweep_points import Sweep, check_schedule, run_sweep
from prunelab.pruning import METHODS
from prunelab.pruning.imp import Level, Plan, plan
from prunelab.pruning.options import point_config, prune_config, sweep_config
from prunelab.seeding import seed_everything
from prunelab.train import checkpoint
from prunelab.train.fit import FitResult, resolve_device


def sweep(method: str, seed: int) -> None:
    """The sweep stage: every k of sweep.sparsities with ``method`` on the baseline of ``seed``."""
    params = config.load_params()
    sweep_cfg, tune_cfg = sweep_config(params), config.section(params, config.FinetuneConfig)
    seed, augment = config.check_int("--seed", seed, minimum=0), config.section(params, config.DataConfig).augment
    prune_cfg = prune_config(params, seed=seed)
    device = resolve_device(config.section(params, config.TrainConfig).device)
    first = point_config(prune_cfg, method, sweep_cfg.sparsities[0])  # the method's options, checked
    check_schedule(first, sweep_cfg.finetune_epochs)
    seed_everything(seed)
    base, data = checkpoint.load(paths.baseline_model(seed)), load_prepared(paths.PREPARED_DATA)
    METHODS.get(method).check_model(base.model, base.model_cfg.name, first, key="sweep.methods")
    tune = dataclasses.replace(tune_cfg, epochs=sweep_cfg.finetune_epochs) if sweep_cfg.finetune_epochs else None
    iterative = (
        plan(base.model, base.rewind, paths.baseline_model(seed), prune_cfg, tune, data, device)
        if prune_cfg.iterative
        else None
    )
    compress_cfg = config.section(params, config.CompressConfig)
    compress = None
    if compress_cfg.sweep:
        compress = functools.partial(
            _compress_point,
            cfg=compress_cfg,
            input_shape=base.input_shape,
            dense_bytes=paths.baseline_export(seed).stat().st_size,
            test=data.test,
            device=device,
            data=data,
            finetune=tune_cfg,
            seed=seed,
        )
    measured = SweepMeasure(base, seed, device, data.test, compress=compress)
    from prunelab import track  # mlflow's import is slow: bad params and inputs are reported before it

    log = SweepLog(
        method, seed, data.name, base.model_cfg.name, tune_cfg.lr, sweep_cfg.finetune_epochs, iterative, measured
    )
    run_params = {
        "sweep": {**sweep_cfg.as_dict(), "methods": method, "seeds": seed},
        "finetune": tune_cfg.as_dict(),
        "prune.include_classifier": prune_cfg.include_classifier,
        "prune.schedule": prune_cfg.schedule,
        "prune.rewind": prune_cfg.rewind,
        "data.augment": augment,
        "seed": seed,
        "compress": compress_cfg.as_dict(),
    } | {f"prune.{k}": v for k, v in first.options.as_dict().items()}
    writer = parallel.is_writer()
    with track.start_run(f"sweep {method} seed {seed}", params=run_params, dataset=log.dataset, tags=log.tags()):
        points = run_sweep(
            # every rank prunes and fine-tunes each point; rank 0 alone measures, writes and logs
            Sweep(base.model, data, tune, seed, device, augment, iterative, measured if writer else None),
            prune_cfg,
            method,
            sweep_cfg.sparsities,
            on_point=log.point if writer else None,
            on_level=log.level if writer else None,
        )
        if not writer:
            return
        out, timed = paths.sweep_result(method, seed), paths.sweep_speed(method, seed)
        atomic.write_json(
            out,
            {
                "method": method,
                "seed": seed,
                "dataset": data.name,
                "points": points,
                "schedule": prune_cfg.schedule,
                "rewind": iterative and iterative.rewind.label,
            },
        )
        track.log_metrics(measured.write(timed, data, tune, method=method, seed=seed))
        track.log_artifacts([out, timed])


def _compress_point(model: Any, stem: Any, **how: Any) -> dict[str, Any]:
    """A point's model compressed (the "compressed" regime): the file's size and its accuracy as loaded."""
    return compress_model(model, stem=stem, **how)[1]


@dataclass(frozen=True)
class SweepLog:
    """One nested MLflow run per sweep point, and one per IMP level."""

    method: str
    seed: int
    dataset_name: str
    model: str
    lr: float
    finetune_epochs: int
    iterative: Plan | None
    measured: SweepMeasure

    @property
    def dataset(self) -> tuple[Any, str, str]:
        return paths.PREPARED_DATA, self.dataset_name, "training"

    def tags(self, **extra: Any) -> dict[str, str]:
        from prunelab import track

        return track.run_tags(
            "sweep", dataset=self.dataset_name, model=self.model, method=self.method, seed=self.seed, **extra
        )

    def point(self, point: dict[str, Any], result: FitResult | None) -> None:
        from prunelab import track

        track.log_child(
            f"sweep {self.method} seed {self.seed} {point['sparsity']:g}",
            tags=self.tags(sparsity=point["sparsity"]),
            values=point | self.measured.timings[-1],
            params={
                "method": self.method,
                "sparsity": point["sparsity"],
                "seed": self.seed,
                "finetune_epochs": self.finetune_epochs,
                "finetune.lr": self.lr,
            },
            history=result.history if result else None,
            dataset=self.dataset,
        )

    def level(self, level: Level, values: dict[str, Any]) -> None:
        from prunelab import track

        assert self.iterative is not None
        track.log_child(
            f"sweep {self.method} seed {self.seed} IMP k={level.sparsity:g}",
            values=values,
            params={
                "sparsity": level.sparsity,
                "rewind": self.iterative.rewind.label,
                "epochs": self.iterative.train.epochs,
                "lr": self.iterative.train.lr,
            },
            tags=self.tags(sparsity=level.sparsity, regime="iterative"),
            dataset=self.dataset,
            history=level.result.history if level.result else None,
        )
