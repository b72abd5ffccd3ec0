"""Invariants of every registered pruning method, and the exact semantics of each."""

import pytest
import torch
from torch import nn

from prunelab.measure.parameters import sparsity_report
from prunelab.pruning import METHODS, MaskMethod, prunable_layers
from prunelab.pruning.layers import classifier_name
from prunelab.pruning.masks import apply_masks, dense_masks, make_permanent

SPARSITIES = [0.0, 0.25, 0.5, 0.9, 0.99]

# every method whose result is a mask (structural ones: tests/test_models_structured.py)
MASK_METHODS = [m.name for m in METHODS.values() if isinstance(m, MaskMethod)]


def masks_for(model, method, k, include_classifier=False):
    layers = prunable_layers(model, include_classifier)
    return layers, METHODS.get(method).masks(layers, k, dense_masks(layers))


@pytest.mark.parametrize("method", MASK_METHODS)
@pytest.mark.parametrize("k", SPARSITIES)
def test_every_method_is_pure_and_returns_binary_masks(tiny_model, method, k):
    before = {n: t.clone() for n, t in tiny_model.state_dict().items()}
    layers, masks = masks_for(tiny_model, method, k)
    assert set(masks) == set(layers)
    for name, mask in masks.items():
        assert mask.shape == layers[name].weight.shape
        assert torch.all((mask == 0) | (mask == 1))
    for name, t in tiny_model.state_dict().items():
        assert torch.equal(t, before[name]), f"{method} modified {name}"


@pytest.mark.parametrize("method", MASK_METHODS)
def test_masks_only_shrink_as_sparsity_grows(tiny_model, method):
    layers = prunable_layers(tiny_model)
    masks = dense_masks(layers)
    for k in SPARSITIES:
        new = METHODS.get(method).masks(layers, k, masks)
        for name in masks:
            assert torch.all(new[name] <= masks[name]), f"{method} revived a pruned weight at k={k}"
        masks = new


@pytest.mark.parametrize("method", MASK_METHODS)
def test_sparsity_zero_changes_nothing(tiny_model, method):
    _, masks = masks_for(tiny_model, method, 0.0)
    assert all(bool(m.all()) for m in masks.values())


@pytest.mark.parametrize("k", SPARSITIES)
def test_weight_achieves_exact_per_layer_sparsity(tiny_model, k):
    _, masks = masks_for(tiny_model, "weight", k)
    for name, mask in masks.items():
        n = mask.numel()
        assert int((mask == 0).sum()) == round(k * n), name


@pytest.mark.parametrize("k", [0.25, 0.5, 0.9])
def test_weight_threshold_separates_kept_from_pruned(tiny_model, k):
    layers, masks = masks_for(tiny_model, "weight", k)
    for name, mask in masks.items():
        w = layers[name].weight.detach().abs()
        assert w[mask == 0].max() <= w[mask == 1].min(), name


@pytest.mark.parametrize("k", SPARSITIES)
def test_unit_zeros_exactly_k_whole_rows_and_nothing_else(tiny_model, k):
    _, masks = masks_for(tiny_model, "unit", k)
    for name, mask in masks.items():
        row_alive = mask.sum(dim=1)
        assert set(row_alive.unique().tolist()) <= {0.0, float(mask.shape[1])}, "a row is partly pruned"
        assert int((row_alive == 0).sum()) == round(k * mask.shape[0]), name


@pytest.mark.parametrize("k", [0.25, 0.5, 0.9])
def test_unit_removes_the_rows_with_smallest_l2_norm(tiny_model, k):
    layers, masks = masks_for(tiny_model, "unit", k)
    for name, mask in masks.items():
        norms = layers[name].weight.detach().norm(dim=1)
        pruned = mask.sum(dim=1) == 0
        if pruned.any():
            assert norms[pruned].max() <= norms[~pruned].min(), name


def test_classifier_stays_dense_unless_asked(tiny_model):
    assert classifier_name(tiny_model) == "fc3"
    assert "fc3" not in prunable_layers(tiny_model)
    assert "fc3" in prunable_layers(tiny_model, include_classifier=True)
    _, masks = masks_for(tiny_model, "weight", 0.5, include_classifier=True)
    assert int((masks["fc3"] == 0).sum()) == round(0.5 * masks["fc3"].numel())


@pytest.mark.parametrize("method", MASK_METHODS)
def test_achieved_sparsity_is_counted_over_prunable_and_all_params(tiny_model, method):
    k = 0.5
    layers, masks = masks_for(tiny_model, method, k)
    apply_masks(layers, masks)
    attached = sparsity_report(tiny_model, layers)
    make_permanent(tiny_model)
    report = sparsity_report(tiny_model, layers)
    assert report == attached, "counting must not depend on whether masks are attached"
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    prunable = sum(m.numel() for m in masks.values())
    total = sum(p.numel() for p in tiny_model.parameters())
    assert report["sparsity_prunable"] == zeros / prunable
    assert report["params"] == total and report["nonzero_params"] == total - zeros
    assert report["sparsity_all"] == pytest.approx(zeros / total)
    assert report["sparsity_all"] < report["sparsity_prunable"], "the dense classifier dilutes it"


def test_unit_leaves_conv_layers_alone():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.Linear(8, 2))
    layers = prunable_layers(model)
    masks = METHODS.get("unit").masks(layers, 0.5, dense_masks(layers))
    assert bool(masks["0"].all())
    assert int((masks["2"].sum(dim=1) == 0).sum()) == 4
