"""Evaluation on in-memory tensor splits, and the batching that training shares with it.

Batches are sliced from tensors already on the device and scaled from uint8 to [0, 1]
per batch; there is no per-sample Python work. ``evaluate`` is what the ``test`` metric
measures and what ``fit`` reads validation loss from.

The evaluation batch is ``EVAL_BATCH`` unless the model's activations at that batch would
not fit the device (``eval_batch``): VGG16 at 224 px needs about 26 GB for 1,024 images.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.data.spec import Split
from prunelab.parallel import ONE_PROCESS, World

EVAL_BATCH = 1024  # evaluation needs no gradients: bigger batches are simply faster
# The share of the device's memory an evaluation batch's activations may take: half of a
# GPU (nothing else lives there but the model), an eighth of the host's RAM.
EVAL_MEMORY_SHARE = {"cuda": 1 / 2, "cpu": 1 / 8}
_eval_batches: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()


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


def device_memory(device: torch.device) -> int:
    """The device's total memory in bytes (a GPU's, or the host's RAM)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def activation_bytes(model: nn.Module, sample: torch.Tensor) -> int:
    """Peak activation bytes per image of a forward pass without gradients, measured on ``sample``.

    Without gradients a layer's input can be freed once its output exists, so the peak is
    about the largest input + output of one layer; twice that covers skip connections and
    the allocator's slack. Counted from the layers' real inputs and outputs on a batch of 2.
    """
    peak = 0

    def hook(_module, inputs, output):
        nonlocal peak
        tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
        peak = max(peak, sum(t.numel() * t.element_size() for t in tensors))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        out = model(sample)
    finally:
        for h in handles:
            h.remove()
    peak = max(peak, sample.numel() * sample.element_size() + out.numel() * out.element_size())
    return 2 * peak // sample.shape[0]


def eval_batch(model: nn.Module, images: torch.Tensor) -> int:
    """EVAL_BATCH, or fewer images where their activations would pass the device's share (``EVAL_MEMORY_SHARE``).

    Derived from the model and the device, not from free memory: the same on every run of a
    machine, so evaluation numbers stay reproducible. Small models always get EVAL_BATCH.
    """
    if len(images) == 0:
        return EVAL_BATCH
    device = images.device
    key = (tuple(images.shape[1:]), str(device))
    cache = _eval_batches.setdefault(model, {})
    if key not in cache:
        per_image = activation_bytes(model, scaled(images[:2]))
        budget = device_memory(device) * EVAL_MEMORY_SHARE.get(device.type, 1 / 8)
        cache[key] = int(max(1, min(EVAL_BATCH, budget // max(per_image, 1))))
    return cache[key]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: Split,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    world: World = ONE_PROCESS,
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy over ``split``, in batches of ``batch_size`` (None: ``eval_batch``).

    With ranks (``world``, every rank calling), each evaluates its contiguous part and the
    sums are added over the ranks: every rank returns the same numbers.
    """
    was_training = model.training
    model.eval()
    images, labels = to_device(split, torch.device(device))
    if world.distributed:
        from prunelab.parallel import ddp

        part = ddp.rank_slice(labels.shape[0], world)
        images, labels = images[part], labels[part]
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for x, y in batches(images, labels, batch_size or eval_batch(model, images)):
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    if world.distributed:
        loss_sum, correct = ddp.all_sum(loss_sum, correct)
    n = max(len(split), 1)
    return {"loss": float(loss_sum) / n, "accuracy": float(correct) / n}
