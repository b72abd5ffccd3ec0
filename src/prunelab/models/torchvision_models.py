"""vgg16, vgg16_bn and resnet101 from torchvision, adapted to the dataset.

- Input channels: the first convolution takes the dataset's channel count (a grey
  dataset gets a 1-channel first layer; with pretrained weights its kernel is the sum of
  the RGB kernels, which is what a grey image replicated to RGB would see).
- Classes: the last Linear layer has the dataset's class count (newly initialised).
- Input size: VGG's adaptive pooling grid is (size // 32) squared, at most 7 (so 224 px is
  torchvision's exact network, and 32 px gets a 512-wide classifier input instead of
  25,088 copies of one pixel). ResNet's global average pool takes any size.
- ``model.pretrained: true`` loads torchvision's ImageNet weights (a download: needs the
  internet once, then torch's cache). Layers whose shape changed start fresh.
The network sits behind prunelab's Standardize layer like every model here.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.models.catalog import MODELS
from prunelab.models.common import Standardize


def _weights(name: str, pretrained: bool):
    if not pretrained:
        return None
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def _torchvision(name: str, pretrained: bool) -> nn.Module:
    from torchvision import models  # slow to import: only these models need it

    try:
        return models.get_model(name, weights=_weights(name, pretrained))
    except (OSError, RuntimeError) as exc:  # urllib errors are OSErrors; a bad file is a RuntimeError
        raise PrunelabError(
            f"model.pretrained: could not load torchvision's {name} weights ({exc}); "
            "they are downloaded once and need the internet: set model.pretrained: false "
            "to train from scratch"
        ) from exc


def _first_conv(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    if conv.in_channels == channels:
        return conv
    new = nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True).expand_as(new.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _vgg(name: str, cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    net = _torchvision(name, cfg.pretrained)
    channels, size = input_shape[0], min(input_shape[1:])
    net.features[0] = _first_conv(net.features[0], channels)
    grid = max(1, min(7, size // 32))
    if grid != 7:
        net.avgpool = nn.AdaptiveAvgPool2d(grid)
        net.classifier[0] = nn.Linear(512 * grid * grid, net.classifier[0].out_features)
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return nn.Sequential(OrderedDict(standardize=Standardize(channels), net=net))


@MODELS.register("vgg16")
def build_vgg16(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return _vgg("vgg16", cfg, input_shape, num_classes)


@MODELS.register("vgg16_bn")
def build_vgg16_bn(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return _vgg("vgg16_bn", cfg, input_shape, num_classes)


@MODELS.register("resnet101")
def build_resnet101(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    net = _torchvision("resnet101", cfg.pretrained)
    net.conv1 = _first_conv(net.conv1, input_shape[0])
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return nn.Sequential(OrderedDict(standardize=Standardize(input_shape[0]), net=net))
