"""The random control, iterative magnitude pruning (IMP) and rewinding, on a tiny model."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from prunelab.config import FinetuneConfig, TrainConfig
from prunelab.errors import ConfigError, PrunelabError
from prunelab.pipeline.sweep_points import Sweep, run_sweep
from prunelab.pruning import METHODS, prunable_layers
from prunelab.pruning.imp import RewindPoints, iterate, levels, plan, rewind_state
from prunelab.pruning.masks import dense_masks
from prunelab.pruning.options import configure
from prunelab.pruning.rewind import parse_rewind, state_digest
from prunelab.train.fit import fit

CPU = torch.device("cpu")
TRAIN = TrainConfig(epochs=3, batch_size=64)


def random_masks(model, k, seed, current=None):
    layers = prunable_layers(model, False)
    return METHODS.get("random").masks_at(layers, k, current or dense_masks(layers), seed)


@pytest.mark.parametrize("k", [0.0, 0.3, 0.9])
def test_random_masks_have_exactly_k_per_layer_and_repeat_per_seed(tiny_model, k):
    masks = random_masks(tiny_model, k, seed=3)
    for name, layer in prunable_layers(tiny_model, False).items():
        assert int((masks[name] == 0).sum()) == round(k * layer.weight.numel())
    again = random_masks(tiny_model, k, seed=3)
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    if k:
        other = random_masks(tiny_model, k, seed=4)
        assert any(not torch.equal(masks[n], other[n]) for n in masks)


def test_random_ignores_magnitude_and_masks_only_shrink(tiny_model):
    low = random_masks(tiny_model, 0.5, seed=0)
    with torch.no_grad():  # the draw depends on the seed, not on the weights
        for layer in prunable_layers(tiny_model, False).values():
            layer.weight.mul_(-7.0)
    assert all(torch.equal(low[n], m) for n, m in random_masks(tiny_model, 0.5, seed=0).items())
    high = random_masks(tiny_model, 0.8, seed=0, current=low)
    assert all(bool((high[n] <= low[n]).all()) for n in low)


@pytest.fixture
def trained(tiny_model, tiny_data):
    """The tiny model trained like a baseline, with its rewind points recorded."""
    torch.manual_seed(0)
    points = RewindPoints.record(tiny_model, TRAIN, 0, False)
    fit(tiny_model, tiny_data, TRAIN, seed=0, device=CPU, on_epoch=lambda _: points.after_epoch(tiny_model))
    return tiny_model, points


def test_imp_masks_only_grow_and_reach_each_level_exactly(trained, tiny_data):
    model, points = trained
    ks = levels([0.9, 0.0, 0.5, 0.75])
    assert ks == [0.0, 0.5, 0.75, 0.9] and levels([0.0, 0.5, 0.9], 0.6) == [0.0, 0.5, 0.6]
    previous = None
    seen = []
    for level in iterate(
        model,
        METHODS.get("weight"),
        False,
        ks,
        points.init,
        tiny_data,
        dataclasses.replace(TRAIN, epochs=1),
        seed=0,
        device=CPU,
    ):
        seen.append(level.sparsity)
        for name, layer in prunable_layers(model, False).items():
            mask = level.masks[name]
            assert int((mask == 0).sum()) == round(level.sparsity * mask.numel())
            assert bool((layer.weight[mask == 0] == 0).all())  # pruned stay zero through training
            if previous is not None:
                assert bool((mask <= previous[name]).all()), "a weight pruned at a lower level came back"
        previous = {n: m.clone() for n, m in level.masks.items()}
        assert (level.result is None) == (level.sparsity == 0.0)  # the trained dense network is level 0
    assert seen == ks


def test_rewinding_restores_the_saved_weights_on_the_surviving_positions(trained, tiny_data):
    model, points = trained
    layers = prunable_layers(model, False)
    from prunelab.pruning.rewind import rewind

    masks = METHODS.get("weight").masks_at(layers, 0.6, dense_masks(layers))
    rewind(model, layers, points.init, masks)
    for name, layer in layers.items():
        saved = points.init[f"{name}.weight"]
        keep = masks[name].bool()
        assert torch.equal(layer.weight[keep], saved[keep]) and bool((layer.weight[~keep] == 0).all())
    others = {k: v for k, v in points.init.items() if not any(k == f"{n}.weight" for n in layers)}
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in others.items())  # everything else rewound whole


def test_epoch_n_replays_the_baseline_exactly_or_refuses(trained, tiny_data):
    model, points = trained
    assert points.epochs == 3
    state = rewind_state(model, points, parse_rewind("r", "epoch:2"), tiny_data, CPU)
    assert state_digest(state) == points.epoch_digests[1]  # the weights the baseline had after epoch 2
    assert rewind_state(model, points, parse_rewind("r", "init"), tiny_data, CPU) is points.init
    assert rewind_state(model, points, parse_rewind("r", "none"), tiny_data, CPU) is None
    tampered = dataclasses.replace(points, epoch_digests=["0" * 64] * 3)
    with pytest.raises(PrunelabError, match=r"epoch:1: replaying the baseline's first 1 epochs .* other weights"):
        rewind_state(model, tampered, parse_rewind("r", "epoch:1"), tiny_data, CPU)


def test_plan_refuses_an_unreachable_rewind_and_none_without_finetuning(trained, tiny_data):
    model, points = trained
    iterative = configure(schedule="iterative", rewind="epoch:3")
    with pytest.raises(ConfigError, match=r"prune\.rewind = 'epoch:3'.*N < 3, the epochs the baseline trained"):
        plan(model, points.as_blob(), "b.pt", iterative, FinetuneConfig(epochs=1), tiny_data, CPU)
    with pytest.raises(ConfigError, match=r"prune\.rewind = 'none'.*sweep.finetune_epochs is 0"):
        plan(model, points.as_blob(), "b.pt", dataclasses.replace(iterative, rewind="none"), None, tiny_data, CPU)
    with pytest.raises(PrunelabError, match=r"b\.pt holds no rewind points"):
        plan(model, {}, "b.pt", dataclasses.replace(iterative, rewind="init"), None, tiny_data, CPU)
    how = plan(model, points.as_blob(), "b.pt", dataclasses.replace(iterative, rewind="epoch:1"), None, tiny_data, CPU)
    assert how.train.epochs == 2 and how.train.lr == TRAIN.lr  # the baseline's training from epoch 1 on
    how = plan(
        model,
        points.as_blob(),
        "b.pt",
        dataclasses.replace(iterative, rewind="none"),
        FinetuneConfig(epochs=1),
        tiny_data,
        CPU,
    )
    assert how.state is None and how.train == FinetuneConfig(epochs=1)


def test_an_iterative_sweep_adds_an_imp_regime_at_every_point(trained, tiny_data):
    model, points = trained
    cfg = configure(schedule="iterative", rewind="init")
    how = plan(model, points.as_blob(), "b.pt", cfg, None, tiny_data, CPU)
    how = dataclasses.replace(how, train=dataclasses.replace(how.train, epochs=1))
    sweep = Sweep(copy.deepcopy(model), tiny_data, FinetuneConfig(epochs=1), 0, CPU, iterative=how)
    result = run_sweep(sweep, cfg, "weight", [0.0, 0.5, 0.8])
    assert [p["sparsity"] for p in result] == [0.0, 0.5, 0.8] and {p["seed"] for p in result} == {0}
    assert all(0.0 <= p["iterative_test_accuracy"] <= 1.0 and p["finetuned_test_accuracy"] is not None for p in result)
    assert result[0]["iterative_test_accuracy"] == result[0]["oneshot_test_accuracy"]  # level 0: the baseline
