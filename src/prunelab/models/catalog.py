"""The model registry; building a registered model for a dataset, checked against its input size.

Families register their builders in ``MODELS`` (one module per family, imported by the
package's ``__init__``); ``model_config`` checks a model section against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from prunelab.config import ModelConfig, check_choice, section
from prunelab.models.common import Standardize
from prunelab.registry import Registry

MODELS: Registry = Registry("model")


def model_config(params: Mapping[str, Any]) -> ModelConfig:
    """The model section of ``params``, validated, its name checked against the registered models."""
    cfg = section(params, ModelConfig)
    check_choice(cfg.key("name"), cfg.name, MODELS.names())
    return cfg


def check_input_size(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Raise ConfigError if ``cfg.name`` cannot process ``input_shape``: a dry run on PyTorch's
    meta device (shapes only: no memory, no arithmetic, no weights downloaded)."""
    import dataclasses

    import torch

    from prunelab.errors import ConfigError

    def runs(shape) -> bool:
        with torch.device("meta"):
            probe = MODELS.get(cfg.name)(dataclasses.replace(cfg, pretrained=False), shape, num_classes).eval()
            try:
                probe(torch.empty(1, *shape))
            except (RuntimeError, ValueError):  # "output size is too small" and the like
                return False
        return True

    if not runs(input_shape):
        size = next(s for s in (2**i for i in range(3, 12)) if runs((input_shape[0], s, s)))
        raise ConfigError(
            "data.image_size",
            input_shape[1],
            f"an input of at least {size}x{size} pixels for model {cfg.name!r} "
            f"(the dataset gives {input_shape[1]}x{input_shape[2]})",
        )


def build_for(cfg: ModelConfig, spec) -> nn.Module:
    """Build ``cfg.name`` shaped for the dataset ``spec``, with its normalisation statistics set."""
    check_input_size(cfg, spec.input_shape, spec.num_classes)
    model = MODELS.get(cfg.name)(cfg, spec.input_shape, spec.num_classes)
    mean, std = spec.normalisation()
    for module in model.modules():
        if isinstance(module, Standardize):
            module.set_statistics(mean, std)
    return model
