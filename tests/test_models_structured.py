"""Every registered model, every applicable method: shapes, parameter counts, filter removal, save/load.

Inputs are kept small (32 px, batch 2). VGG16, VGG16-BN and ResNet-101 are pruned as thin
stand-ins: prunelab's own builder makes the full-size network on PyTorch's meta device (no
memory, no arithmetic), and ``thinned`` gives its exact module tree (names, kinds, kernels,
strides, paddings, biases) with every width divided by 8, on the CPU. The pruning code sees
the same layers and couplings in the same places at 1/64 of the parameters; that the
stand-ins are the real networks narrowed, and what the full-size ones are, is checked below.
"""

import copy
import functools

import pytest
import torch
from torch import nn

from prunelab.config import ModelConfig
from prunelab.errors import ConfigError
from prunelab.measure.parameters import count_params
from prunelab.models import MODELS, check_input_size
from prunelab.models.common import Standardize
from prunelab.pruning import METHODS, STRUCTURAL
from prunelab.pruning.layers import classifier_name
from prunelab.pruning.masks import make_permanent
from prunelab.pruning.options import configure
from prunelab.pruning.point import prune
from prunelab.pruning.structured import conv_layers, hidden_linear_layers, remove_filters
from prunelab.train import checkpoint

SHAPES = {"mlp": (1, 28, 28), "mnist_cnn": (1, 28, 28)}  # the rest: CIFAR-sized
CLASSES = 7
THINNED = ("vgg16", "vgg16_bn", "resnet101")  # tens of millions of parameters at full size
# Every channel and hidden width of VGG and ResNet is a multiple of 64, so dividing by 8
# keeps them whole and every join (a residual sum, the classifier's flattened input) consistent.
DIVISOR = 8


def narrow(width: int) -> int:
    """A thin stand-in's width: the input's channels (1, 3) and the class count (7) stay."""
    return width // DIVISOR if width >= 64 else width


def full_size(name: str, shape=None, classes: int = CLASSES) -> nn.Module:
    """prunelab's real network ``name``, built by its registered builder on the meta device."""
    with torch.device("meta"):
        return MODELS.get(name)(
            ModelConfig(name=name, hidden=(64, 32)), shape or SHAPES.get(name, (3, 32, 32)), classes
        )


def thinned(full: nn.Module) -> nn.Module:
    """``full``'s module tree with each Conv2d, BatchNorm2d and Linear narrowed, initialised on the CPU."""
    thin = copy.deepcopy(full)
    for name, m in list(thin.named_modules()):
        if isinstance(m, nn.Conv2d):
            assert m.groups == 1  # VGG and ResNet-101: plain convolutions
            new = nn.Conv2d(
                narrow(m.in_channels), narrow(m.out_channels), m.kernel_size, m.stride, m.padding, m.dilation,
                bias=m.bias is not None,
            )  # fmt: skip
        elif isinstance(m, nn.BatchNorm2d):
            new = nn.BatchNorm2d(narrow(m.num_features), m.eps, m.momentum, m.affine, m.track_running_stats)
        elif isinstance(m, nn.Linear):
            new = nn.Linear(narrow(m.in_features), narrow(m.out_features), bias=m.bias is not None)
        elif isinstance(m, Standardize):
            new = Standardize(m.mean.shape[0])
        else:
            continue
        thin.set_submodule(name, new)
    assert not any(t.is_meta for t in [*thin.parameters(), *thin.buffers()])
    return thin


@functools.cache
def _pristine(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in THINNED:
        return thinned(full_size(name)).eval()
    return MODELS.get(name)(ModelConfig(name=name, hidden=(64, 32)), SHAPES.get(name, (3, 32, 32)), CLASSES).eval()


def build(name: str) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """A fresh copy of the model (built once per name); VGG and ResNet as their thin stand-ins."""
    return copy.deepcopy(_pristine(name)), SHAPES.get(name, (3, 32, 32))


def applicable(name: str) -> list[str]:
    """The methods that would prune something in this model (asked of each method)."""
    model, _ = build(name)
    return [m.name for m in METHODS.values() if m.why_not(model, configure(method=m.name)) is None]


def prune_point(model, method, k, shape, physical=False):
    pruned = prune(model, configure(method=method, sparsity=k, physical=physical), shape)
    return pruned.layers, pruned.masks, pruned.structure


CASES = [(model, method) for model in MODELS.names() for method in applicable(model)]


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_shape(name):
    model, shape = build(name)
    assert model(torch.rand(2, *shape)).shape == (2, CLASSES)
    if name in THINNED:  # and the full-size network, shapes only
        assert full_size(name)(torch.empty(2, *shape, device="meta")).shape == (2, CLASSES)


def layout(model: nn.Module, width=lambda w: w) -> list[tuple]:
    """Each module's name, kind and geometry, its widths mapped through ``width``."""
    out = []
    for name, m in model.named_modules():
        geometry = ()
        if isinstance(m, nn.Conv2d):
            geometry = (width(m.in_channels), width(m.out_channels), m.kernel_size, m.stride, m.padding, m.dilation)
        elif isinstance(m, nn.BatchNorm2d):
            geometry = (width(m.num_features), m.eps, m.momentum, m.affine)
        elif isinstance(m, nn.Linear):
            geometry = (width(m.in_features), width(m.out_features))
        elif isinstance(m, nn.MaxPool2d | nn.AdaptiveAvgPool2d | nn.Dropout):
            geometry = (repr(m),)
        bias = getattr(m, "bias", None) is not None if isinstance(m, nn.Conv2d | nn.Linear) else None
        out.append((name, type(m), geometry, bias))
    return out


@pytest.mark.parametrize("name", THINNED)
def test_the_thin_stand_ins_are_the_real_networks_narrowed(name):
    """What the other tests prune is prunelab's network with only its widths changed, and that
    network at 224 px and 1000 classes is torchvision's exact one (its published parameter count)."""
    model, _ = build(name)
    assert layout(model) == layout(full_size(name), narrow)
    assert all(m.training is False for m in model.modules())  # like the real one in .eval()
    published = {"vgg16": 138_357_544, "vgg16_bn": 138_365_992, "resnet101": 44_549_160}
    assert count_params(full_size(name, (3, 224, 224), 1000)) == published[name]


@pytest.mark.parametrize("name, method", CASES)
def test_method_prunes_and_model_still_runs_with_classifier_intact(name, method):
    model, shape = build(name)
    x = torch.rand(2, *shape)
    classifier = classifier_name(model)
    before = count_params(model)
    layers, _, structure = prune_point(model, method, 0.5, shape)
    make_permanent(model)
    assert model(x).shape == (2, CLASSES)
    assert model.get_submodule(classifier).out_features == CLASSES
    if METHODS.get(method).kind(configure(method=method)) == STRUCTURAL:
        assert count_params(model) < before and structure["params_after"] == count_params(model)
        assert structure["filters_removed_fraction"] == pytest.approx(0.5, abs=0.02)
        assert structure["param_reduction"] == pytest.approx(1 - count_params(model) / before)
    else:
        # unit prunes neurons of Linear layers only; weight and weight_global every prunable layer
        scope = [m for m in layers.values() if method != "unit" or isinstance(m, torch.nn.Linear)]
        zeros = sum(int((m.weight == 0).sum()) for m in scope)
        assert zeros / sum(m.weight.numel() for m in scope) == pytest.approx(0.5, abs=0.02)
        assert count_params(model) == before  # masks zero weights, they do not remove them


@pytest.mark.parametrize("name, method", CASES)
def test_sparsity_zero_changes_nothing(name, method):
    model, shape = build(name)
    x = torch.rand(2, *shape)
    expected = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prune_point(model, method, 0.0, shape)
    make_permanent(model)
    after = model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(v, after[k]) for k, v in state.items())
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if "filter" in applicable(n)])
def test_filter_pruned_model_saves_and_reloads_with_its_new_shapes(name, tmp_path):
    model, shape = build(name)
    remove_filters(model, shape, sparsity=0.3)
    x = torch.rand(2, *shape)
    expected = model(x)
    cfg = ModelConfig(name=name, hidden=(64, 32))
    checkpoint.save(tmp_path / "m.pt", checkpoint.Checkpoint(model, cfg, shape, CLASSES))
    torch.load(tmp_path / "m.pt", weights_only=True)  # plain tensors and built-ins only
    back = checkpoint.load(tmp_path / "m.pt").model.eval()
    assert torch.equal(back(x), expected)
    assert count_params(back) == count_params(model)


def test_threshold_removes_exactly_the_filters_under_it():
    model, shape = build("cifar_cnn")
    norms = {n: c.weight.detach().flatten(1).norm(dim=1) for n, c in conv_layers(model).items()}
    threshold = float(torch.cat(list(norms.values())).median())
    kept = {n: norms[n][norms[n] >= threshold] for n in norms}
    remove_filters(model, shape, threshold=threshold, norm="l2")
    after = conv_layers(model)
    assert {n: c.out_channels for n, c in after.items()} == {n: len(k) for n, k in kept.items()}
    # conv1's inputs are untouched, so its survivors are exactly the filters at or above the threshold
    # (conv2's survivors lost the input channels of conv1's removed filters, so their norms changed)
    assert torch.allclose(after["conv1"].weight.detach().flatten(1).norm(dim=1), kept["conv1"])


def test_l1_and_l2_rank_differently_but_both_remove_the_fraction():
    for norm in ("l1", "l2"):
        model, shape = build("cifar_cnn")
        result = remove_filters(model, shape, sparsity=0.25, norm=norm)
        assert [c.out_channels for c in conv_layers(model).values()] == [48, 96]
        assert result.report()["filters_removed_fraction"] == 0.25


def test_threshold_that_would_empty_a_layer_keeps_its_strongest_filter():
    model, shape = build("cifar_cnn")
    result = remove_filters(model, shape, threshold=1e9)
    assert [c.out_channels for c in conv_layers(model).values()] == [1, 1]
    assert sorted(result.kept_one) == ["conv1", "conv2"]
    assert model(torch.rand(2, *shape)).shape == (2, CLASSES)


def test_resnet101_residual_couplings_shrink_together():
    model, shape = build("resnet101")
    remove_filters(model, shape, sparsity=0.5)
    net = model.net
    block = net.layer1[0]
    # the residual sum couples conv3 of every block in a stage with the downsample branch
    assert block.conv3.out_channels == block.downsample[0].out_channels == net.layer1[1].conv3.out_channels
    assert block.bn3.num_features == block.conv3.out_channels
    assert net.fc.in_features == net.layer4[-1].conv3.out_channels and net.fc.out_features == CLASSES
    assert model(torch.rand(2, *shape)).shape == (2, CLASSES)


def test_cifar_cnn_has_r2_parameter_count_and_half_filters_halve_it():
    model, shape = build("cifar_cnn")
    assert count_params(MODELS.get("cifar_cnn")(ModelConfig(name="cifar_cnn"), (3, 32, 32), 10)) == 767_936
    result = remove_filters(model, shape, sparsity=0.5).report()
    assert 0.45 <= result["param_reduction"] <= 0.6  # R2: 767,936 → 380,528 (about half)


def test_r2_literal_threshold_is_scale_dependent():
    """Why the README's R2 command removes half by ratio: PyTorch starts every filter at an L2
    norm near sqrt(1/3) = 0.577 whatever its size, so R2's absolute 0.5 (a Keras number) removes none."""
    model, shape = build("cifar_cnn")
    norms = torch.cat([c.weight.detach().flatten(1).norm(dim=1) for c in conv_layers(model).values()])
    assert 0.5 < float(norms.min()) and abs(float(norms.mean()) - 3**-0.5) < 0.02
    assert remove_filters(model, shape, threshold=0.5).report()["param_reduction"] == 0.0


def test_input_too_small_for_the_network_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.image_size = 16.*at least 32x32.*vgg16"):
        check_input_size(ModelConfig(name="vgg16"), (3, 16, 16), 10)
    check_input_size(ModelConfig(name="vgg16"), (3, 32, 32), 10)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if "unit" in applicable(n)])
def test_physical_unit_pruning_shrinks_every_hidden_linear_layer(name, tmp_path):
    model, shape = build(name)
    widths = {n: m.out_features for n, m in hidden_linear_layers(model).items()}
    before = count_params(model)
    _, masks, structure = prune_point(model, "unit", 0.5, shape, physical=True)
    assert masks == {}  # nothing left to mask: the units are gone
    assert {n: m.out_features for n, m in hidden_linear_layers(model).items()} == {
        n: w - round(0.5 * w) for n, w in widths.items()
    }
    assert structure["params_after"] == count_params(model) < before
    assert structure["units_removed_fraction"] == pytest.approx(0.5, abs=0.01)
    untouched, _ = build(name)
    assert prune_point(untouched, "unit", 0.0, shape, physical=True)[2]["param_reduction"] == 0
    x = torch.rand(2, *shape)
    assert model(x).shape == (2, CLASSES)
    cfg = ModelConfig(name=name, hidden=(64, 32))
    checkpoint.save(tmp_path / "m.pt", checkpoint.Checkpoint(model, cfg, shape, CLASSES))
    assert torch.equal(checkpoint.load(tmp_path / "m.pt").model.eval()(x), model(x))


def test_physical_unit_pruning_computes_what_the_masks_compute():
    """Without biases a zeroed neuron outputs relu(0) = 0, so removing it changes nothing."""
    masked, shape = build("mlp")
    removed = copy.deepcopy(masked)
    prune_point(masked, "unit", 0.6, shape)
    make_permanent(masked)
    prune_point(removed, "unit", 0.6, shape, physical=True)
    x = torch.rand(16, *shape)
    assert count_params(removed) < count_params(masked)
    torch.testing.assert_close(removed(x), masked(x), rtol=1e-5, atol=1e-6)
    # the survivors are exactly the rows the mask kept
    for name, layer in hidden_linear_layers(masked).items():
        rows = layer.weight.detach().abs().sum(1) != 0
        assert rows.sum() == hidden_linear_layers(removed)[name].out_features


@pytest.mark.parametrize(
    ("name", "method", "physical", "reason"),
    [
        ("mlp", "filter", False, "no convolution layers"),
        ("resnet101", "unit", False, "no fully connected layer besides the classifier"),
        ("resnet101", "unit", True, "no fully connected layer besides the classifier"),
    ],
)
def test_a_method_that_would_prune_nothing_is_refused_by_name(name, method, physical, reason):
    model, shape = build(name)
    cfg = configure(method=method, physical=physical)
    with pytest.raises(ConfigError, match=rf"prune\.method = '{method}'.*{reason}"):
        METHODS.get(method).check_model(model, name, cfg)
    with pytest.raises(ConfigError, match=reason):  # and pruning it directly too, by the same check
        prune(model, cfg, shape)


def test_refusal_lists_the_methods_that_do_apply():
    model, _ = build("mlp")
    with pytest.raises(
        ConfigError, match=r"allowed: random, unit, weight or weight_global: model 'mlp' has no convolution"
    ):
        METHODS.get("filter").check_model(model, "mlp", configure(method="filter"))
