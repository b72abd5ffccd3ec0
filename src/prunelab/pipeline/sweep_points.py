"""The sparsity sweep's work: prune the baseline at each k, evaluate one-shot, fine-tune, evaluate again.

Every point starts from the same baseline weights, so points are independent and their
order does not matter. A point is a ``PruneConfig`` (``pruning.point_config``); its
results are a plain dict whose keys the report's schema declares (``report.columns``).

On the iterative schedule a third regime follows: iterative magnitude pruning goes up
through the same sparsities as levels (``pruning.imp``), and each level's test numbers join
the point at its k, so the three curves compare on one plot.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from prunelab.config import FinetuneConfig, PruneConfig
from prunelab.data.spec import DataSpec
from prunelab.measure import METRICS, Subject
from prunelab.pruning import METHODS, prunable_layers
from prunelab.pruning.gradual import GradualPruner
from prunelab.pruning.imp import Level, Plan, iterate, levels
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import point_config
from prunelab.pruning.point import prune
from prunelab.pruning.schedule import gradual
from prunelab.report.sweep import point_values
from prunelab.train.fit import FitResult, fit


@dataclass(frozen=True)
class Sweep:
    """What every point of a sweep shares."""

    baseline: torch.nn.Module  # never modified: each point prunes a copy
    data: DataSpec
    finetune: FinetuneConfig | None  # its epochs are sweep.finetune_epochs; None: one-shot only
    seed: int  # the replicate's: fine-tuning's shuffling, a random method's draws
    device: torch.device
    augment: bool = False
    iterative: Plan | None = None  # prune.schedule iterative: how IMP levels rewind and train
    # (model, masks, fine-tuning, point) -> counted values for the point: each point's final
    # model measured (exporting.SweepMeasure: cost into the point, timings kept apart)
    measure: (
        Callable[[torch.nn.Module, dict[str, torch.Tensor], FitResult | None, dict[str, Any]], dict[str, Any]] | None
    ) = None


def check_schedule(first: PruneConfig, finetune_epochs: int) -> None:
    """A gradual schedule prunes during fine-tuning: the sweep must fine-tune."""
    from prunelab.errors import ConfigError

    if gradual(first) and finetune_epochs == 0:
        raise ConfigError(
            "sweep.finetune_epochs",
            0,
            f"at least 1 with prune.schedule {first.schedule!r} (the schedule prunes during fine-tuning)",
        )


def run_point(sweep: Sweep, cfg: PruneConfig) -> tuple[dict[str, Any], FitResult | None]:
    """One point: prune a copy of the baseline to ``cfg.sparsity``, evaluate, fine-tune, evaluate.

    On a gradual schedule the one-shot numbers are still measured at k, but fine-tuning
    restarts from the baseline pruned to the schedule's start and reaches k gradually.
    """
    shape = tuple(sweep.data.input_shape)
    cfg = dataclasses.replace(cfg, seed=sweep.seed)
    model = copy.deepcopy(sweep.baseline).to(sweep.device)
    pruned = METHODS.get(cfg.method).prune(model, cfg, shape)  # one-shot at k, whatever the schedule
    subject = Subject(model, pruned.layers, pruned.structure, sweep.data.test, sweep.device)
    point: dict[str, Any] = {"method": cfg.method, "seed": sweep.seed, "sparsity": cfg.sparsity}
    point.update(point_values(METRICS.get("structure")(subject)))
    point.update(METRICS.get("test")(subject, "oneshot_"))
    result, pruner = None, None
    if sweep.finetune is not None:
        if gradual(cfg) is not None:
            model = copy.deepcopy(sweep.baseline).to(sweep.device)
            pruned = prune(model, cfg, shape)
            pruner = GradualPruner(METHODS.get(cfg.method), pruned.layers, gradual(cfg), sweep.seed)
        result = fit(
            model,
            sweep.data,
            sweep.finetune,
            seed=sweep.seed,
            device=sweep.device,
            desc=f"{cfg.method} k={cfg.sparsity:g} fine-tune",
            leave=False,
            augment=sweep.augment,
            pruner=pruner,
        )
        subject = Subject(model, pruned.layers, pruned.structure, sweep.data.test, sweep.device, result)
        point.update(METRICS.get("test")(subject, "finetuned_"))
        point.update(METRICS.get("finetune")(subject))
    make_permanent(model)
    point.update(METRICS.get("parameters")(subject))
    if sweep.measure is not None:
        point.update(point_values(sweep.measure(model, pruner.masks if pruner else pruned.masks, result, point)))
    return point, result


def run_iterative(
    sweep: Sweep,
    cfg: PruneConfig,
    sparsities: Sequence[float],
    on_level: Callable[[Level, dict[str, Any]], None] | None = None,
) -> dict[float, dict[str, Any]]:
    """IMP up through ``sparsities`` from the baseline: each level's test numbers, by k."""
    assert sweep.iterative is not None
    plan, model, out = sweep.iterative, copy.deepcopy(sweep.baseline), {}
    ks = levels(sparsities)
    for i, level in enumerate(
        iterate(
            model,
            METHODS.get(cfg.method),
            cfg.include_classifier,
            ks,
            plan.state,
            sweep.data,
            plan.train,
            seed=sweep.seed,
            device=sweep.device,
            desc=f"{cfg.method} IMP",
            augment=plan.augment,
        ),
        1,
    ):
        subject = Subject(
            model, prunable_layers(model, cfg.include_classifier), {}, sweep.data.test, sweep.device, level.result
        )
        out[level.sparsity] = METRICS.get("test")(subject, "iterative_")
        if on_level is not None:
            on_level(level, out[level.sparsity])
        print(
            f"sweep {cfg.method}: {plan.label} level {i}/{len(ks)} k={level.sparsity:g} "
            f"{out[level.sparsity]['iterative_test_accuracy']:.4f}",
            flush=True,
        )
    return out


def run_sweep(
    sweep: Sweep,
    cfg: PruneConfig,
    method: str,
    sparsities: Sequence[float],
    on_point: Callable[[dict[str, Any], FitResult | None], None] | None = None,
    on_level: Callable[[Level, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every k of ``sparsities`` with ``method``, the other options from ``cfg`` (the prune section)."""
    configs = [point_config(cfg, method, k) for k in sparsities]  # every point checked before any work
    points = []
    bar = tqdm(configs, desc=f"sweep {method}", unit="point", dynamic_ncols=True, disable=None)
    for i, point_cfg in enumerate(bar, 1):
        point, result = run_point(sweep, point_cfg)
        if on_point is not None:
            on_point(point, result)
        points.append(point)
        if bar.disable:  # not on a terminal: one line per point instead of a bar
            tuned = point.get("finetuned_test_accuracy")
            print(
                f"sweep {method}: point {i}/{len(configs)} k={point['sparsity']:g} one-shot "
                f"{point['oneshot_test_accuracy']:.4f}" + (f" fine-tuned {tuned:.4f}" if tuned is not None else ""),
                flush=True,
            )
    if sweep.iterative is not None:
        by_k = run_iterative(sweep, configs[0], sparsities, on_level)
        for point in points:
            point.update(by_k[point["sparsity"]])
    return points
