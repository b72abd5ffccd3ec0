"""Epoch time: how long one training epoch takes, and the peak memory of training.

Importing this module imports no torch.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import TYPE_CHECKING, Any

from prunelab.measure.memory import PeakMemory
from prunelab.measure.timing import device_of, synchronizer

if TYPE_CHECKING:
    from torch import nn

TRAIN_PROBE_STEPS = 3  # steps whose peak memory stands for a whole epoch's (every later step repeats them)


def train_epoch_cost(model: nn.Module, split: Any, cfg: Any, *, device: Any = "cpu", seed: int = 0) -> dict[str, Any]:
    """Time of one training epoch and its peak memory, on a copy of ``model``.

    The copy trains on ``split`` with ``cfg``'s batch size and optimiser
    (``training.train_epoch``, as ``fit`` does, without validation). Memory: the first
    ``TRAIN_PROBE_STEPS`` steps with a fresh optimiser (activations, gradients and the
    optimiser's state all exist by the second step; later steps repeat them). Time: the
    whole epoch that follows them, warm.
    """
    import torch

    from prunelab.seeding import generator
    from prunelab.train.fit import make_optimizer, train_epoch, training_tensors

    dev = device_of(device)
    trained = copy.deepcopy(model).to(dev)
    images, labels = training_tensors(split, dev)
    order = torch.randperm(labels.shape[0], generator=generator(seed)).to(dev)
    probe = order[: TRAIN_PROBE_STEPS * cfg.batch_size]
    probe_images, probe_labels = images[probe], labels[probe]
    optimizer = make_optimizer([p for p in trained.parameters() if p.requires_grad], cfg)
    sync = synchronizer(dev)
    with PeakMemory(dev) as peak:
        train_epoch(
            trained, optimizer, probe_images, probe_labels, cfg.batch_size, torch.arange(probe.shape[0], device=dev)
        )
        sync()
    start = time.perf_counter()
    train_epoch(trained, optimizer, images, labels, cfg.batch_size, order)
    sync()
    return {"train_epoch_s": time.perf_counter() - start, "peak_train_bytes": peak.bytes, "memory": peak.what}


def fit_epoch_s(fit: Any) -> float | None:
    """Median seconds of the training pass (no validation) over the epochs of a fine-tuning."""
    times = [
        r["data_time"] + r["step_time"]
        for r in getattr(fit, "history", None) or []
        if "data_time" in r and "step_time" in r
    ]
    return statistics.median(times) if times else None
