"""Training augmentation on whole batches of tensors: random crop (after zero padding) and flip.

No per-image Python work and no image decoding: a batch (B, C, H, W) is padded once and
every sample's crop window and flip are applied in one gather, on whatever device the
batch is on. The random draws come from their own seeded generator, so switching
augmentation on or off never changes the shuffling order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padding_for(height: int) -> int:
    """Crop padding: 4 pixels at CIFAR's 32 (the usual recipe), scaled with the image."""
    return max(1, round(height / 8))


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, pad: int | None = None) -> torch.Tensor:
    """Each sample shifted by up to ``pad`` pixels (zeros fill in) and mirrored left-right with p = 0.5."""
    b, c, h, w = x.shape
    pad = padding_for(h) if pad is None else pad
    padded = F.pad(x, (pad, pad, pad, pad))
    # Offsets are drawn on the CPU generator (reproducible on every device), then moved.
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator).to(x.device)
    flip = (torch.rand(b, 1, generator=generator) < 0.5).to(x.device)
    rows = dy + torch.arange(h, device=x.device)  # (B, H)
    cols = dx + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip, cols.flip(1), cols)  # reading columns backwards mirrors the image
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
