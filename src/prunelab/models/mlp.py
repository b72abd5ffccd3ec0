"""mlp: R1's fully connected network, 784 → 1000 → 1000 → 500 → 200 → 10, ReLU, no biases.

Widths, bias and the input/output sizes come from params and the dataset, so the same
family serves any image dataset. Layers are named fc1..fcN; fcN is the classifier.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

from torch import nn

from prunelab.models.catalog import MODELS
from prunelab.models.common import Standardize


@MODELS.register("mlp")
def build(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    widths = [math.prod(input_shape), *cfg.hidden, num_classes]
    layers: OrderedDict[str, nn.Module] = OrderedDict(standardize=Standardize(input_shape[0]), flatten=nn.Flatten())
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, n_out, bias=cfg.bias)
        if i < len(widths) - 1:
            layers[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(layers)
