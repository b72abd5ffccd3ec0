"""One seed for everything random, and deterministic kernels."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Raises on ops without a deterministic implementation instead of drifting silently.
    torch.use_deterministic_algorithms(True, warn_only=False)


def generator(seed: int) -> torch.Generator:
    """A private RNG (e.g. for shuffling) so other random draws cannot shift it."""
    return torch.Generator().manual_seed(seed)
