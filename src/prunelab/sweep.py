"""The sparsity sweep: prune the baseline at each k, evaluate one-shot, fine-tune, evaluate again.

Every point starts from the same baseline weights, so points are independent and their
order does not matter. Results are plain dicts, one per (method, sparsity).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from prunelab.data.spec import DataSpec
from prunelab.measure import sparsity_report
from prunelab.pruning import METHODS, STRUCTURAL, prunable_layers
from prunelab.pruning.gradual import GradualPruner
from prunelab.pruning.schedule import Polynomial
from prunelab.pruning.structured import remove_units
from prunelab.pruning.masks import apply_masks, dense_masks, make_permanent
from prunelab.training import FitResult, evaluate, fit

POINT_COLUMNS = [
    "method", "sparsity", "sparsity_prunable", "sparsity_all", "params", "nonzero_params",
    "compression_ratio", "oneshot_test_accuracy", "oneshot_test_loss",
    "finetuned_test_accuracy", "finetuned_test_loss", "finetune_epochs_run", "finetune_best_epoch",
    "param_reduction", "filters_removed_fraction", "units_removed_fraction",
]
STRUCTURE_COLUMNS = ("param_reduction", "filters_removed_fraction", "units_removed_fraction")


def prune_point(model: torch.nn.Module, method: str, sparsity: float | None, include_classifier: bool, *,
                input_shape: tuple[int, ...] | None = None, threshold: float | None = None,
                norm: str = "l2", physical: bool = False,
                ) -> tuple[dict[str, torch.nn.Module], dict[str, torch.Tensor], dict[str, Any]]:
    """Prune ``model`` in place from dense; return its prunable layers, masks and a structural report.

    Mask methods attach masks (``sparsity``) and report nothing structural. Structural
    methods (``STRUCTURAL``, and ``unit`` with ``physical``) change the architecture
    (``sparsity`` or ``threshold``), return no masks, and report parameters and
    filters or units before and after.
    """
    if method in STRUCTURAL or (method == "unit" and physical):
        if input_shape is None:
            raise ValueError("structural pruning needs the input shape")
        if method == "unit":
            result = remove_units(model, input_shape, sparsity=sparsity)
        else:
            result = METHODS.get(method)(model, input_shape, sparsity=sparsity, threshold=threshold, norm=norm)
        return prunable_layers(model, include_classifier), {}, result.report() | {"kept_one": result.kept_one}
    layers = prunable_layers(model, include_classifier)
    masks = METHODS.get(method)(layers, sparsity, dense_masks(layers))
    apply_masks(layers, masks)
    return layers, masks, {}


def run_point(baseline: torch.nn.Module, data: DataSpec, method: str, sparsity: float, *,
              include_classifier: bool, finetune_cfg, finetune_epochs: int, seed: int,
              device: torch.device, augment: bool = False, norm: str = "l2", physical: bool = False,
              schedule: Polynomial | None = None) -> tuple[dict[str, Any], FitResult | None]:
    """One sweep point. One-shot: prune to ``sparsity``, evaluate, fine-tune, evaluate.

    With ``schedule`` (its ``final`` is replaced by ``sparsity``) the one-shot numbers are
    still measured, but fine-tuning restarts from the baseline pruned to the schedule's
    initial sparsity and reaches ``sparsity`` gradually.
    """
    model = copy.deepcopy(baseline).to(device)
    layers, _, structure = prune_point(model, method, sparsity, include_classifier,
                                       input_shape=tuple(data.input_shape), norm=norm, physical=physical)
    point: dict[str, Any] = {"method": method, "sparsity": sparsity}
    point.update((k, v) for k, v in structure.items() if k in STRUCTURE_COLUMNS)
    oneshot = evaluate(model, data.test, device)
    point.update(oneshot_test_accuracy=oneshot["accuracy"], oneshot_test_loss=oneshot["loss"])
    result = None
    if finetune_epochs > 0:
        pruner = None
        if schedule is not None:
            plan = dataclasses.replace(schedule, initial=min(schedule.initial, sparsity), final=sparsity)
            model = copy.deepcopy(baseline).to(device)
            layers, _, _ = prune_point(model, method, plan.initial, include_classifier)
            pruner = GradualPruner(method, layers, plan)
        result = fit(model, data, finetune_cfg, seed=seed, device=device, epochs=finetune_epochs,
                     patience=finetune_cfg.patience, min_delta=finetune_cfg.min_delta,
                     desc=f"{method} k={sparsity:g} fine-tune", leave=False, augment=augment, pruner=pruner)
        tuned = evaluate(model, data.test, device)
        point.update(finetuned_test_accuracy=tuned["accuracy"], finetuned_test_loss=tuned["loss"],
                     finetune_epochs_run=len(result.history), finetune_best_epoch=result.best_epoch)
    make_permanent(model)
    point.update(sparsity_report(model, layers))
    return point, result


def run_sweep(baseline: torch.nn.Module, data: DataSpec, method: str, sparsities: Sequence[float],
              on_point: Callable[[dict[str, Any], FitResult | None], None] | None = None,
              **kwargs: Any) -> list[dict[str, Any]]:
    points = []
    for k in tqdm(sparsities, desc=f"sweep {method}", unit="point", dynamic_ncols=True):
        point, result = run_point(baseline, data, method, k, **kwargs)
        if on_point is not None:
            on_point(point, result)
        points.append(point)
    return points


def holds_until(points: list[dict[str, Any]], key: str, reference: float, tolerance: float) -> float | None:
    """The largest sparsity up to which every point keeps ``key`` within ``tolerance`` of ``reference``."""
    best = None
    for p in sorted(points, key=lambda p: p["sparsity"]):
        if p.get(key) is None or p[key] < reference - tolerance:
            break
        best = p["sparsity"]
    return best
