"""Evaluation on in-memory tensor splits, and the batching that training shares with it.

Batches are sliced from tensors already on the device and scaled from uint8 to [0, 1]
per batch; there is no per-sample Python work. ``evaluate`` is what the ``test`` metric
measures and what ``fit`` reads validation loss from.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.data.spec import Split

EVAL_BATCH = 1024  # evaluation needs no gradients: bigger batches are simply faster


def scaled(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1]; float images are already scaled."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def to_device(split: Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return split.images.to(device), split.labels.to(device)


def batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, order: torch.Tensor | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = labels.shape[0]
    for start in range(0, n, batch_size):
        idx = slice(start, start + batch_size) if order is None else order[start : start + batch_size]
        yield scaled(images[idx]), labels[idx]


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, device: torch.device | str = "cpu", batch_size: int = EVAL_BATCH
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy over ``split``."""
    was_training = model.training
    model.eval()
    images, labels = to_device(split, torch.device(device))
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for x, y in batches(images, labels, batch_size):
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = max(len(split), 1)
    return {"loss": float(loss_sum) / n, "accuracy": float(correct) / n}
