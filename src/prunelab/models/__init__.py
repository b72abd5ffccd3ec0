"""Model families. A builder is ``build(cfg: ModelConfig, input_shape, num_classes) -> nn.Module``.

Every model takes float images in [0, 1] shaped (N, C, H, W) and standardises them
itself (``Standardize``), so a checkpoint is usable without knowing the dataset's
statistics. Register a new family with one import line below.
"""

from __future__ import annotations

from torch import nn

from prunelab.models.common import Standardize
from prunelab.registry import Registry

MODELS: Registry = Registry("model")

from prunelab.models import mlp as _mlp  # noqa: E402,F401  (registers mlp)
from prunelab.models import cnn as _cnn  # noqa: E402,F401  (registers mnist_cnn, cifar_cnn)


def build_for(cfg, spec) -> nn.Module:
    """Build ``cfg.name`` shaped for the dataset ``spec``, with its normalisation statistics set."""
    model = MODELS.get(cfg.name)(cfg, spec.input_shape, spec.num_classes)
    mean, std = spec.normalisation()
    for module in model.modules():
        if isinstance(module, Standardize):
            module.set_statistics(mean, std)
    return model


__all__ = ["MODELS", "build_for"]
