"""Train and fine-tune loops on in-memory tensor datasets (evaluation: ``prunelab.train.evaluate``).

Batches are sliced from tensors already on the device; there is no per-sample Python
work. Images are scaled from uint8 to [0, 1] once per fit when the float copy is small
(``PRESCALE_BYTES``), otherwise per batch, which gives the same values either way.
``fit`` records per-epoch train and validation loss and accuracy and, with
``patience``, stops early on validation loss and restores the best epoch's weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prunelab.config import OptimConfig
from prunelab.data.spec import DataSpec, Split
from prunelab.seeding import generator
from prunelab.train.augment import crop_and_flip
from prunelab.train.evaluate import batches, evaluate, scaled, to_device

# The per-epoch history as DVC files record it: the timings (epoch_time, data_time,
# step_time) are left to MLflow because they differ from run to run and would break
# byte-identical reruns.
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
TIMING_COLUMNS = ["epoch_time", "data_time", "step_time"]
AUGMENT_SEED_OFFSET = 1_000_003  # augmentation draws its own stream: on or off, the shuffling is the same
PRESCALE_BYTES = 512 * 2**20  # below this, hold the training images as float: no per-batch conversion


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from prunelab.errors import ConfigError

        raise ConfigError("train.device", name, "'cpu' or 'auto' (no CUDA device is available here)")
    return torch.device(name)


def training_tensors(split: Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The split on ``device``, as float in [0, 1] if that copy is small, else as uint8."""
    images, labels = to_device(split, device)
    return (scaled(images) if images.numel() * 4 <= PRESCALE_BYTES else images), labels


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one record per epoch run
    best_epoch: int = 0  # 1-based epoch whose weights the model holds at the end
    stopped_early: bool = False


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    order: torch.Tensor,
    on_batch: Callable[[], None] | None = None,
    augment: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over the data. With ``augment`` (its random generator), batches are cropped and flipped.

    Besides loss and accuracy it reports ``data_time`` (slicing, scaling, augmenting
    batches) and ``step_time`` (forward, backward, optimiser) in seconds. On CUDA these
    are host-side times of asynchronous work, so only their sum is exact.
    """
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    data_time = step_time = 0.0
    stream = batches(images, labels, batch_size, order)
    while True:
        start = time.perf_counter()
        batch = next(stream, None)
        if batch is None:
            break
        x, y = batch
        if augment is not None:
            x = crop_and_flip(x, augment)
        ready = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * y.shape[0]
        correct += (logits.detach().argmax(dim=1) == y).sum()
        data_time += ready - start
        step_time += time.perf_counter() - ready
        if on_batch is not None:
            on_batch()
    n = labels.shape[0]
    return {
        "train_loss": float(loss_sum) / n,
        "train_accuracy": float(correct) / n,
        "data_time": data_time,
        "step_time": step_time,
    }


def fit(
    model: nn.Module,
    data: DataSpec,
    cfg: OptimConfig,
    *,
    seed: int,
    device: torch.device,
    desc: str = "train",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    leave: bool = True,
    augment: bool = False,
    pruner=None,
) -> FitResult:
    """Train ``model`` on ``data.train`` for ``cfg.epochs``.

    Each history record holds epoch, train/val loss and accuracy, and epoch_time,
    data_time and step_time (seconds). ``augment`` crops and flips training batches
    (``prunelab.train.augment``) with draws from their own seeded generator. When the config
    has ``early_stopping`` (patience, min_delta) the run stops after ``patience`` epochs
    without a validation loss lower than the best by more than ``min_delta``, and the
    best epoch's weights are restored.

    ``pruner`` (``pruning.gradual.GradualPruner``) prunes gradually: it is stepped after
    every optimiser step and each record gets the ``sparsity`` in force. Until its last
    event, epochs neither count towards patience nor can be the best epoch, so early
    stopping never ends a run below its target sparsity.
    """
    epochs = cfg.epochs
    patience, min_delta = cfg.early_stopping or (None, 0.0)
    model.to(device)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    images, labels = training_tensors(data.train, device)
    rng = generator(seed)
    augment_rng = generator(seed + AUGMENT_SEED_OFFSET) if augment else None
    n_batches = -(-labels.shape[0] // cfg.batch_size)
    result = FitResult()
    best_loss, best_state, stale = float("inf"), None, 0
    if pruner is not None:
        pruner.begin(epochs * n_batches)

    def after_batch() -> None:
        bar.update(1)
        if pruner is not None:
            pruner.after_step()

    # not on a terminal (CI, logs, `dvc queue logs`): no bar redraws, one line per epoch instead
    with tqdm(total=epochs * n_batches, desc=desc, unit="batch", leave=leave, dynamic_ncols=True, disable=None) as bar:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = torch.randperm(labels.shape[0], generator=rng).to(device)
            record = {
                "epoch": epoch,
                **train_epoch(
                    model, optimizer, images, labels, cfg.batch_size, order, on_batch=after_batch, augment=augment_rng
                ),
            }
            val = evaluate(model, data.val, device)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], epoch_time=time.perf_counter() - start)
            if pruner is not None:
                record["sparsity"] = round(pruner.sparsity, 6)
            result.history.append(record)
            bar.set_postfix(epoch=epoch, val_loss=f"{val['loss']:.4f}", val_acc=f"{val['accuracy']:.4f}")
            if bar.disable:
                print(
                    f"{desc}: epoch {epoch}/{epochs} train_loss {record['train_loss']:.4f} "
                    f"val_loss {val['loss']:.4f} val_accuracy {val['accuracy']:.4f}"
                    + (f" sparsity {record['sparsity']:g}" if "sparsity" in record else ""),
                    flush=True,
                )
            if on_epoch is not None:
                on_epoch(record)
            if pruner is not None and not pruner.done:
                continue  # still ramping: no epoch here is a candidate, and patience waits
            if val["loss"] < best_loss - min_delta:
                best_loss, stale, result.best_epoch = val["loss"], 0, epoch
                if patience is not None:
                    best_state = copy.deepcopy(model.state_dict())
            elif patience is not None:
                stale += 1
                if stale >= patience:
                    result.stopped_early = True
                    break
    if pruner is not None:
        pruner.finish()  # only if a ramp longer than the run was asked for; keeps the target honest
    if patience is None:
        result.best_epoch = len(result.history)
    elif best_state is not None:
        model.load_state_dict(best_state)
    return result
