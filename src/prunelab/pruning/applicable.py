"""Which methods a model can be pruned with: refuse, by name, a method that would prune nothing."""

from __future__ import annotations

from torch import nn

from prunelab.errors import ConfigError
from prunelab.pruning import STRUCTURAL, prunable_layers
from prunelab.pruning.structured import conv_layers


def check_applicable(method: str, model: nn.Module, model_name: str, include_classifier: bool,
                     key: str = "prune.method") -> None:
    if method in STRUCTURAL and not conv_layers(model):
        raise ConfigError(key, method, f"weight, weight_global or unit: model {model_name!r} has no "
                                       "convolution layers to remove filters from")
    if method == "unit" and not any(isinstance(m, nn.Linear) for m in prunable_layers(model, include_classifier).values()):
        raise ConfigError(key, method, f"weight, weight_global or filter: model {model_name!r} has no fully "
                                       "connected layer besides the classifier, so unit pruning would remove nothing")
