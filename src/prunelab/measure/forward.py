"""How every measurement runs a model: in eval mode, on a seeded random input.

Importing this module imports no torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


@contextlib.contextmanager
def eval_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Each of ``modules`` in eval mode for the block, then back in the mode it was in."""
    # a module torch.export loaded refuses .eval(): it was traced in eval mode, so it needs none
    switched = []
    for m in modules:
        with contextlib.suppress(NotImplementedError):
            if m.training:
                m.eval()
                switched.append(m)
    try:
        yield
    finally:
        for m in switched:
            m.train()


def random_input(input_shape: Sequence[int], batch: int, device: torch.device) -> torch.Tensor:
    """``batch`` images of ``input_shape`` in [0, 1), the same for the same batch size (seeded by it)."""
    import torch

    return torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(batch)).to(device)
