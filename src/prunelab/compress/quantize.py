"""Quantizing a pruned model's weights (Deep Compression's second step): pure functions.

- ``kmeans``: per-layer weight sharing (Han et al. 2016, section 3). The layer's nonzero
  weights are clustered into 2**bits shared values by one-dimensional k-means, the
  centroids initialised linearly between the smallest and the largest weight (the
  initialisation Han et al. found best: it keeps the few large weights, which matter most,
  represented). Each weight is then replaced by its centroid.
- ``linear``: symmetric linear quantization per output channel: q = round(w / s) with
  s = max |w| of the channel / (2**(bits-1) - 1), so int8 at 8 bits.

Zeros stay zeros: only the weights the mask keeps are quantized, and the mask is part of
the result (a kept weight that linear rounds to 0 is stored as the code for 0, its place
kept). Nothing here changes the model it is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from prunelab.export.codec import BITS, Shared, offset

KMEANS_ITERATIONS = 100  # Lloyd's iterations at most (each O(k log n) on sorted data); layers settle in fewer


def kmeans(weight: torch.Tensor, bits: int, mask: torch.Tensor | None = None) -> Shared:
    """The kept weights of ``weight`` shared among 2**bits values by k-means (linear initialisation)."""
    mask = (weight != 0) if mask is None else mask.bool()
    values = weight.detach().cpu().float()[mask.cpu()]
    k = 2**bits
    if values.numel() == 0:
        return Shared("kmeans", bits, torch.zeros(k), torch.zeros(0, dtype=torch.uint8), mask.cpu())
    data, _ = values.double().sort()
    prefix = torch.cat([data.new_zeros(1), data.cumsum(0)])  # a cluster's sum in O(1): one-dimensional data
    centroids = torch.linspace(float(data[0]), float(data[-1]), k, dtype=torch.float64)
    edges = None
    for _ in range(KMEANS_ITERATIONS):
        # Lloyd's step on sorted data: centroids stay sorted (each is the mean of an interval),
        # so cluster j holds the values between the midpoints on either side of it
        bounds = torch.searchsorted(data, (centroids[1:] + centroids[:-1]) / 2, right=True)
        new_edges = torch.cat([bounds.new_zeros(1), bounds, bounds.new_tensor([data.numel()])])
        if edges is not None and torch.equal(new_edges, edges):
            break
        edges = new_edges
        counts = torch.diff(edges)
        sums = prefix[edges[1:]] - prefix[edges[:-1]]
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)  # an empty one stays put
    # each weight's code: the same rule as the intervals (a value on a midpoint goes to the lower one)
    codes = torch.bucketize(values.double(), (centroids[1:] + centroids[:-1]) / 2)
    return Shared("kmeans", bits, centroids.float(), codes.to(torch.uint8), mask.cpu())


def linear(weight: torch.Tensor, bits: int, mask: torch.Tensor | None = None) -> Shared:
    """The kept weights of ``weight`` as signed ``bits``-bit integers, one scale per output channel."""
    mask = (weight != 0) if mask is None else mask.bool()
    w = weight.detach().cpu().float().reshape(weight.shape[0], -1) * mask.cpu().reshape(weight.shape[0], -1)
    qmax = offset(bits)
    scale = w.abs().amax(dim=1) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel: any scale will do
    q = torch.round(w / scale[:, None]).clamp(-qmax, qmax)
    codes = (q[mask.cpu().reshape(w.shape)] + qmax).to(torch.uint8)
    return Shared("linear", bits, scale, codes, mask.cpu())


SCHEMES = {"kmeans": kmeans, "linear": linear}


def check(scheme: str, bits: int) -> None:
    """ValueError naming what is allowed (config.CompressConfig reports it as a params error)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    if not BITS[0] <= bits <= BITS[1]:
        raise ValueError(f"bits {bits}: expected an integer from {BITS[0]} to {BITS[1]}")


def quantize(model: nn.Module, scheme: str, bits: int) -> dict[str, Shared]:
    """Each quantizable layer's weight shared by ``scheme`` at ``bits``; the model is not changed.
    A model's pruning masks must be permanent (``pruning.masks.make_permanent``): zeros are the mask."""
    check(scheme, bits)
    from prunelab.pruning.layers import weighted_layers

    layers = weighted_layers(model)  # every Linear and Conv, the classifier too: Han et al. quantize all
    if not layers:
        raise ValueError(f"the model has no Linear or Conv layer for {scheme} quantization to apply to")
    return {name: SCHEMES[scheme](m.weight, bits) for name, m in layers.items()}


@torch.no_grad()
def apply(model: nn.Module, shared: Mapping[str, Shared]) -> nn.Module:
    """Put each layer's shared weights into ``model`` (in place), as the compressed file holds them."""
    layers = dict(model.named_modules())
    for name, s in shared.items():
        weight = layers[name].weight
        weight.copy_(s.dense().reshape(weight.shape).to(weight.device, weight.dtype))
    return model
