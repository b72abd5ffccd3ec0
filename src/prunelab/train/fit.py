"""Train and fine-tune loops on in-memory tensor datasets (evaluation: ``prunelab.train.evaluate``).

Batches are sliced from tensors already on the device; there is no per-sample Python
work. Images are scaled from uint8 to [0, 1] once per fit when the float copy is small
(``PRESCALE_BYTES``), otherwise per batch, which gives the same values either way.
``fit`` records per-epoch train and validation loss and accuracy and, with
``patience``, stops early on validation loss and restores the best epoch's weights.

Under torchrun (``train.nproc`` > 1) every rank calls ``fit`` alike: the model trains
wrapped in DistributedDataParallel, each rank on its part of every global batch
(``parallel.ddp``), validation is split over the ranks and summed, so every rank sees the
same numbers and stops at the same epoch; only rank 0 shows progress.
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
from prunelab.errors import ConfigError
from prunelab.parallel import ONE_PROCESS, World, current, ddp
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
    """train.device as a device; under torchrun each rank gets its own GPU (cuda:LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", name, "'cpu' or 'auto' (no CUDA device is available here)")
    world = current()
    return torch.device("cuda", world.local_rank) if name == "cuda" and world.distributed else torch.device(name)


def training_tensors(split: Split, device: torch.device, copies: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The split on ``device``, as float in [0, 1] if that copy is small, else as uint8.

    ``copies``: how many processes on this machine make the float copy (the ranks on a
    node): the budget is for all of them together, so memory does not grow with ranks.
    """
    images, labels = to_device(split, device)
    return (scaled(images) if images.numel() * 4 * copies <= PRESCALE_BYTES else images), labels


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
    world: World = ONE_PROCESS,
) -> dict[str, float]:
    """One pass over the data. With ``augment`` (its random generator), batches are cropped and flipped.

    With ranks (``world``), ``model`` is the DDP-wrapped one and this rank trains on its
    part of each global batch of ``order``; loss and accuracy are summed over the ranks.

    Besides loss and accuracy it reports ``data_time`` (slicing, scaling, augmenting
    batches) and ``step_time`` (forward, backward, optimiser) in seconds. On CUDA these
    are host-side times of asynchronous work, so only their sum is exact.
    """
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    data_time = step_time = 0.0
    stream = batches(images, labels, batch_size, order) if not world.distributed else None
    parts = ddp.rank_batches(order, batch_size, world) if world.distributed else None
    while True:
        start = time.perf_counter()
        if parts is None:
            batch, global_batch = next(stream, None), 0
        else:
            part = next(parts, None)
            batch, global_batch = (None, 0) if part is None else ((scaled(images[part[0]]), labels[part[0]]), part[1])
        if batch is None:
            break
        x, y = batch
        if augment is not None:
            x = crop_and_flip(x, augment)
        ready = time.perf_counter()
        logits = model(x)
        if global_batch:  # this part's share of the global batch's mean: DDP averages the ranks' gradients
            summed = F.cross_entropy(logits, y, reduction="sum")
            loss = summed * (world.size / global_batch)
            batch_loss = summed.detach().double()
        else:
            loss = F.cross_entropy(logits, y)
            batch_loss = loss.detach().double() * y.shape[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += batch_loss
        correct += (logits.detach().argmax(dim=1) == y).sum()
        data_time += ready - start
        step_time += time.perf_counter() - ready
        if on_batch is not None:
            on_batch()
    n = labels.shape[0]
    if world.distributed:
        loss_sum, correct = ddp.all_sum(loss_sum, correct)
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
    with ddp.sync_batchnorm(model, device):
        return _fit(model, data, cfg, seed, device, desc, on_epoch, leave, augment, pruner)


def _fit(
    model: nn.Module,
    data: DataSpec,
    cfg: OptimConfig,
    seed: int,
    device: torch.device,
    desc: str,
    on_epoch: Callable[[dict[str, float]], None] | None,
    leave: bool,
    augment: bool,
    pruner,
) -> FitResult:
    world = current()
    epochs = cfg.epochs
    patience, min_delta = cfg.early_stopping or (None, 0.0)
    model.to(device)
    stepped = model
    if world.distributed:
        if cfg.batch_size % world.size:
            raise ConfigError(
                cfg.key("batch_size"), cfg.batch_size, f"a multiple of train.nproc ({world.size}), the number of ranks"
            )
        ddp.check_identical(model, f"{desc}: before training", weights=True)
        stepped = ddp.wrap(model, device)
        ddp.seed_rank(seed)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    images, labels = training_tensors(data.train, device, world.local_size)
    rng = generator(seed)
    augment_seed = seed + AUGMENT_SEED_OFFSET + (ddp.RANK_SEED_STRIDE * world.rank if world.distributed else 0)
    augment_rng = generator(augment_seed) if augment else None
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
    # ranks other than 0 stay silent: one bar, one line per epoch, whatever the world size
    quiet = True if not world.writer else None
    with tqdm(total=epochs * n_batches, desc=desc, unit="batch", leave=leave, dynamic_ncols=True, disable=quiet) as bar:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = torch.randperm(labels.shape[0], generator=rng).to(device)
            record = {
                "epoch": epoch,
                **train_epoch(
                    stepped,
                    optimizer,
                    images,
                    labels,
                    cfg.batch_size,
                    order,
                    on_batch=after_batch,
                    augment=augment_rng,
                    world=world,
                ),
            }
            if world.distributed:
                ddp.average_batchnorm_stats(model)
            val = evaluate(model, data.val, device, world=world)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], epoch_time=time.perf_counter() - start)
            if pruner is not None:
                record["sparsity"] = round(pruner.sparsity, 6)
            result.history.append(record)
            bar.set_postfix(epoch=epoch, val_loss=f"{val['loss']:.4f}", val_acc=f"{val['accuracy']:.4f}")
            if bar.disable and world.writer:
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
    if world.distributed:
        ddp.check_identical(model, f"{desc}: after training", weights=False)
    if patience is None:
        result.best_epoch = len(result.history)
    elif best_state is not None:
        model.load_state_dict(best_state)
    return result
