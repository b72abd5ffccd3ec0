"""Trained quantization (Han et al. 2016, section 3.3): fine-tune the shared values, nothing else.

Each quantized layer's weight becomes a function of its codebook, ``table[codes]`` at the
mask's places and 0 elsewhere, so the gradient that reaches a shared value is the sum of the
gradients of the weights that share it, which is Han et al.'s centroid update. The codes
(which weight shares which value) and the masks stay as they are; every other parameter is
frozen. Training is ``train.fit`` with the finetune section's optimiser and batches, early
stopping on validation loss included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunelab.config import FinetuneConfig
from prunelab.export.codec import Shared


class SharedWeight(nn.Module):
    """A weight computed from its codebook: the codebook is the parameter trained."""

    def __init__(self, shared: Shared, device: torch.device):
        super().__init__()
        self.table = nn.Parameter(shared.table.clone().to(device))
        index = torch.zeros(shared.mask.shape, dtype=torch.long)
        index[shared.mask] = shared.codes.long()
        self.register_buffer("index", index.to(device))
        self.register_buffer("mask", shared.mask.to(device))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return self.table[self.index] * self.mask


def finetune_centroids(
    model: nn.Module,
    shared: Mapping[str, Shared],
    data,
    cfg: FinetuneConfig,
    *,
    epochs: int,
    lr: float,
    seed: int,
    device: torch.device,
) -> dict[str, Shared]:
    """k-means codebooks of ``shared`` fine-tuned on ``data`` (``model``'s weights set to them, in place).
    Only kmeans codebooks are trained (config.CompressConfig refuses epochs with linear)."""
    from prunelab.train.fit import fit

    if any(s.scheme != "kmeans" for s in shared.values()):
        raise ValueError("trained quantization fine-tunes k-means codebooks only")
    model.to(device)
    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in frozen:
        p.requires_grad_(False)
    layers = {name: model.get_submodule(name) for name in shared}
    for name, layer in layers.items():
        parametrize.register_parametrization(layer, "weight", SharedWeight(shared[name], device), unsafe=True)
    try:
        fit(
            model,
            data,
            dataclasses.replace(cfg, epochs=epochs, lr=lr),
            seed=seed,
            device=device,
            desc="trained quantization",
            leave=False,
        )
        tables = {name: layer.parametrizations.weight[0].table.detach().cpu().float() for name, layer in layers.items()}
    finally:
        for layer in layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        for p, flag in frozen.items():
            p.requires_grad_(flag)
    return {name: dataclasses.replace(s, table=tables[name]) for name, s in shared.items()}
