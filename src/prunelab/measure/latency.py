"""Latency: the forward-pass time of models side by side, on the same input, interleaved.

Each side gets warm-up calls, then rounds in which the sides run in turn (the order
alternating, so drift hits every side alike). Each sample is one untimed call (the caches
hold the other side's weights: a cold call is not a model's speed) and then enough calls
for at least the policy's ``min_sample_s``; the median is reported and the spread as the
interquartile range (``timing.Timing``). How many rounds, and for how long, is a
``timing.TimingPolicy`` preset. PyTorch's thread count is left as it is and recorded
(``Timing.threads``); CUDA is synchronised around each sample.

Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prunelab.measure.forward import eval_mode, random_input
from prunelab.measure.timing import DEFAULT, Timing, TimingPolicy, device_of, interleaved

if TYPE_CHECKING:
    from torch import nn


def compare_latency(
    modules: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    batch: int,
    *,
    device: Any = "cpu",
    policy: TimingPolicy = DEFAULT,
) -> dict[str, Timing]:
    """Forward-pass time of each module (already on ``device``) on the same input, interleaved."""
    import torch

    dev = device_of(device)
    x = random_input(input_shape, batch, dev)
    with torch.inference_mode(), eval_mode(list(modules.values())):
        return interleaved(
            {name: (lambda m=m: m(x)) for name, m in modules.items()},
            device=dev,
            batch=batch,
            **policy.interleaved_args(),
        )
