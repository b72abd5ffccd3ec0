"""Small CNNs from R2: ``mnist_cnn`` (digits) and ``cifar_cnn`` (CIFAR-10 photos).

Both take any input size and channel count the dataset has (an adaptive pool fixes the
classifier's input grid) and any class count. Layers are named conv1, conv2, fc1, ...;
the last Linear is the classifier.

mnist_cnn — the 2-layer CNN of R2's polynomial-decay study:
    conv1 5×5, 32, same → ReLU → max-pool 2 → BatchNorm → conv2 5×5, 64, same → ReLU
    → max-pool 2 → (adaptive 7×7) → fc1 3136→1024 → ReLU → dropout 0.4 → fc2 1024→classes
    (3,274,698 parameters with biases for 28×28×1 and 10 classes, 3,273,568 without).

cifar_cnn — R2's CIFAR-10 network, 767,936 parameters for 32×32×3 and 10 classes with
``model.bias: false`` (the count R2 reports; 768,522 with biases):
    conv1 5×5, 3→64, same → ReLU → max-pool 2 → conv2 5×5, 64→128, same → ReLU
    → max-pool 2 → adaptive avg-pool 4×4 → fc1 2048→256 → ReLU → fc2 256→128 → ReLU
    → fc3 128→classes
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from prunelab.models.catalog import MODELS
from prunelab.models.common import Standardize


@MODELS.register("mnist_cnn")
def build_mnist_cnn(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels = input_shape[0]
    return nn.Sequential(
        OrderedDict(
            standardize=Standardize(channels),
            conv1=nn.Conv2d(channels, 32, 5, padding=2, bias=cfg.bias),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            bn1=nn.BatchNorm2d(32),
            conv2=nn.Conv2d(32, 64, 5, padding=2, bias=cfg.bias),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            grid=nn.AdaptiveMaxPool2d(7),
            flatten=nn.Flatten(),
            fc1=nn.Linear(64 * 7 * 7, 1024, bias=cfg.bias),
            relu3=nn.ReLU(),
            dropout=nn.Dropout(0.4),
            fc2=nn.Linear(1024, num_classes, bias=cfg.bias),
        )
    )


@MODELS.register("cifar_cnn")
def build_cifar_cnn(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels = input_shape[0]
    return nn.Sequential(
        OrderedDict(
            standardize=Standardize(channels),
            conv1=nn.Conv2d(channels, 64, 5, padding=2, bias=cfg.bias),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(64, 128, 5, padding=2, bias=cfg.bias),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            grid=nn.AdaptiveAvgPool2d(4),
            flatten=nn.Flatten(),
            fc1=nn.Linear(128 * 4 * 4, 256, bias=cfg.bias),
            relu3=nn.ReLU(),
            fc2=nn.Linear(256, 128, bias=cfg.bias),
            relu4=nn.ReLU(),
            fc3=nn.Linear(128, num_classes, bias=cfg.bias),
        )
    )
