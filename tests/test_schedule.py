"""Gradual pruning: the polynomial schedule (pure) and pruning during fine-tuning (mechanics)."""

import dataclasses
import itertools

import pytest
import torch

from prunelab.config import FinetuneConfig, TrainConfig
from prunelab.errors import ConfigError
from prunelab.pipeline.sweep_points import Sweep, run_point
from prunelab.pruning import METHODS, MaskMethod
from prunelab.pruning.gradual import GradualPruner
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure, point_config
from prunelab.pruning.point import prune
from prunelab.pruning.schedule import Polynomial, event_steps, gradual, polynomial_sparsity
from prunelab.train.fit import fit

MASK_METHODS = [m.name for m in METHODS.values() if isinstance(m, MaskMethod)]


def dense_layers(model, method="weight"):
    return prune(model, configure(method=method, sparsity=0.0), (1, 8, 8)).layers


def test_polynomial_starts_ends_and_is_cubic():
    assert polynomial_sparsity(0, 100, 0.1, 0.5) == pytest.approx(0.1)
    assert polynomial_sparsity(100, 100, 0.1, 0.5) == 0.5
    assert polynomial_sparsity(250, 100, 0.1, 0.5) == 0.5  # after the ramp it holds
    assert polynomial_sparsity(50, 100, 0.0, 0.8) == pytest.approx(0.8 - 0.8 / 8)  # (1 - 1/2)^3
    values = [polynomial_sparsity(t, 100, 0.0, 0.9) for t in range(101)]
    assert values == sorted(values)
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert steps == sorted(steps, reverse=True)  # fast first, slow at the end


@pytest.mark.parametrize(("ramp", "events"), [(100, 10), (7, 10), (1, 3), (1000, 1)])
def test_event_steps_end_on_the_ramp(ramp, events):
    steps = event_steps(ramp, events)
    assert steps[-1] == ramp and steps[0] >= 1
    assert steps == sorted(set(steps)) and len(steps) == min(ramp, events)


def test_plan_reaches_its_target_at_the_ramp_end():
    plan = Polynomial(initial=0.2, final=0.6, ramp=0.5, steps=4)
    events = plan.events(total_steps=80)
    assert [t for t, _ in events] == [10, 20, 30, 40]
    assert events[-1][1] == 0.6 and all(0.2 < k <= 0.6 for _, k in events)


@pytest.mark.parametrize("method", MASK_METHODS)
def test_masks_only_grow_and_end_exactly_at_target(tiny_model, tiny_data, method):
    layers = dense_layers(tiny_model, method)
    plan = Polynomial(initial=0.0, final=0.75, ramp=0.5, steps=5)
    pruner = GradualPruner(METHODS.get(method), layers, plan)
    seen = []
    apply = pruner.apply

    def spy(k):
        apply(k)
        seen.append((k, {n: m.clone() for n, m in pruner.masks.items()}))

    pruner.apply = spy
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05)  # no early stopping: every event happens
    result = fit(tiny_model, tiny_data, cfg, seed=0, device=torch.device("cpu"), leave=False, pruner=pruner)
    assert pruner.done and [k for k, _ in seen] == [k for _, k in plan.events(4 * 8)]
    for (_, before), (_, after) in itertools.pairwise(seen):
        for name in before:
            assert torch.all(after[name] <= before[name]), f"{name}: a pruned weight came back"
    assert [r["sparsity"] for r in result.history][-1] == 0.75
    make_permanent(tiny_model)
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    total = sum(m.weight.numel() for m in layers.values())
    # the method's own mask at 0.75 from the dense weights has the same zeros per layer
    reference = METHODS.get(method).masks(layers, 0.75, {})
    assert zeros == sum(int((m == 0).sum()) for m in reference.values())
    assert zeros / total == pytest.approx(0.75, abs=0.02)


def test_early_stopping_waits_for_the_target(tiny_model, tiny_data):
    layers = dense_layers(tiny_model)
    plan = Polynomial(initial=0.0, final=0.9, ramp=1.0, steps=3)
    pruner = GradualPruner(METHODS.get("weight"), layers, plan)
    # patience 1 with a tiny min_delta gap would stop after epoch 2 on a plain run
    cfg = FinetuneConfig(epochs=3, batch_size=32, lr=0.05, patience=1, min_delta=10.0)
    result = fit(tiny_model, tiny_data, cfg, seed=0, device=torch.device("cpu"), leave=False, pruner=pruner)
    assert len(result.history) == 3 and result.best_epoch == 3
    assert [r["sparsity"] for r in result.history] == sorted(r["sparsity"] for r in result.history)
    assert result.history[-1]["sparsity"] == 0.9


def test_structural_methods_cannot_be_gradual():
    with pytest.raises(TypeError, match="physically"):
        GradualPruner(METHODS.get("filter"), {}, Polynomial(0.0, 0.5))
    with pytest.raises(ConfigError, match=r"prune\.schedule.*prune\.physical: true.*masks of random, unit, weight"):
        configure(method="unit", physical=True, schedule="polynomial", sparsity=0.5)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"method": "filter"}, "prune.schedule"),
        ({"initial_sparsity": 0.9}, "prune.initial_sparsity"),
        ({"ramp": 0.0}, "prune.ramp"),
        ({"ramp": 1.5}, "prune.ramp"),
        ({"steps": 0}, "prune.steps"),
        ({"power": -1}, "prune.power"),
    ],
)
def test_bad_schedule_params_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        configure(**{"schedule": "polynomial", "sparsity": 0.5, **changes})


def test_config_builds_the_plan():
    cfg = configure(schedule="polynomial", sparsity=0.5, initial_sparsity=0.1, ramp=0.25, steps=3)
    assert dataclasses.asdict(gradual(cfg)) == {"initial": 0.1, "final": 0.5, "ramp": 0.25, "steps": 3, "power": 3.0}
    assert gradual(configure()) is None
    assert cfg.label == "0.1→0.5 polynomial"


def test_sweep_point_reports_one_shot_and_reaches_k_gradually(tiny_model, tiny_data):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cfg = FinetuneConfig(epochs=2, batch_size=32, lr=0.01, patience=1)
    study = configure(schedule="polynomial", sparsity=0.5, ramp=0.5, steps=4)  # the sweep sets k per point
    cpu = torch.device("cpu")
    gradual, result = run_point(Sweep(tiny_model, tiny_data, cfg, 0, cpu), point_config(study, "weight", 0.8))
    oneshot, _ = run_point(Sweep(tiny_model, tiny_data, None, 0, cpu), point_config(configure(), "weight", 0.8))
    assert gradual["sparsity_prunable"] == pytest.approx(0.8, abs=1e-3)
    assert gradual["oneshot_test_accuracy"] == oneshot["oneshot_test_accuracy"]  # one-shot is still measured at k
    assert [r["sparsity"] for r in result.history][-1] == 0.8
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())  # the baseline is untouched
