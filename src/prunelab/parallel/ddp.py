"""DistributedDataParallel as prunelab's training uses it.

One seeded permutation per epoch, the same on every rank; each global batch of
``batch_size`` is cut into ``world.size`` contiguous parts, one per rank (open_lth's scheme,
and what makes the global batch independent of the world size). Each rank's loss is its
part's summed loss times size / (global batch), so DDP's average of the ranks' gradients
is exactly the gradient of the global batch's mean loss, last short batch included.

Buffers are not synchronised at every step (a mask is as large as its weight): masks are
checked identical on every rank instead (``check_identical``), and BatchNorm's running
statistics are averaged over the ranks after each epoch (``average_batchnorm_stats``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.parallel.world import World, current

# How long a rank waits for the others at a collective: rank 0 exports and measures
# between two trainings (a sweep point), so this is long; a rank that dies is noticed at
# once anyway (its connections close, and the launcher stops the others).
TIMEOUT = timedelta(hours=2)
RANK_SEED_STRIDE = 7919  # a rank's dropout and augmentation draws: seed + stride * rank


def init(device: str) -> None:
    """Join the job's process group (once per process) for train.device ``device``; a plain process does nothing."""
    world = current()
    if not world.distributed or dist.is_initialized():
        return
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_batches(order: torch.Tensor, batch_size: int, world: World) -> Iterator[tuple[torch.Tensor, int]]:
    """(this rank's indices, the global batch's size) for each global batch of ``order``."""
    n = order.shape[0]
    for start in range(0, n, batch_size):
        chunk = order[start : start + batch_size]
        yield torch.tensor_split(chunk, world.size)[world.rank], chunk.shape[0]


def rank_slice(n: int, world: World) -> slice:
    """This rank's contiguous part of ``n`` items (evaluation splits the data, then sums)."""
    bounds = torch.tensor_split(torch.arange(n), world.size)[world.rank]
    return slice(int(bounds[0]), int(bounds[-1]) + 1) if bounds.numel() else slice(0, 0)


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """Each value summed over the ranks, as float64 (one collective for all of them)."""
    packed = torch.stack([v.detach().double().reshape(()) for v in values])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return list(packed.unbind())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def _digest(tensors: list[tuple[str, torch.Tensor]]) -> bytes:
    h = hashlib.sha256()
    for name, t in tensors:
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.digest()


def check_identical(model: nn.Module, what: str, *, weights: bool) -> None:
    """Raise unless every rank holds the same masks (and, with ``weights``, the same parameters).

    Checked, not assumed: pruning runs on every rank on its own copy of the model, and a
    rank whose masks differed would silently train another network.
    """
    world = current()
    if not world.distributed:
        return
    tensors = [(n, b) for n, b in model.named_buffers() if n.endswith("_mask")]
    if weights:
        tensors += list(model.named_parameters())
    mine = torch.frombuffer(bytearray(_digest(tensors)), dtype=torch.uint8).to(torch.int64)
    device = next(model.parameters()).device if dist.get_backend() == "nccl" else torch.device("cpu")
    gathered = [torch.empty_like(mine, device=device) for _ in range(world.size)]
    dist.all_gather(gathered, mine.to(device))
    differ = [r for r, g in enumerate(gathered) if not torch.equal(g.cpu(), mine)]
    if differ:
        kind = "masks and weights" if weights else "masks"
        raise PrunelabError(f"{what}: the {kind} on rank {world.rank} differ from those on ranks {differ}")


def average_batchnorm_stats(model: nn.Module) -> None:
    """BatchNorm running mean and variance averaged over the ranks (each saw its own slices)."""
    world = current()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for buf in (module.running_mean, module.running_var):
                if buf is not None:
                    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                    buf.div_(world.size)


@contextlib.contextmanager
def sync_batchnorm(model: nn.Module, device: torch.device) -> Iterator[None]:
    """On CUDA, BatchNorm layers synchronise their batch statistics over the ranks while training.

    SyncBatchNorm shares the original layers' parameters and buffers, and the original
    layers are put back afterwards, so checkpoints and exports see plain BatchNorm.
    PyTorch's SyncBatchNorm runs on GPUs only: on CPU each rank normalises with its own
    part of the batch (see the README).
    """
    originals = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and n}
    if device.type != "cuda" or not current().distributed or not originals:
        yield
        return
    nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the children in place
    try:
        yield
    finally:
        for name, bn in originals.items():
            model.set_submodule(name, bn)


def seed_rank(seed: int) -> None:
    """Dropout draws of their own on each rank (ranks > 1 only; one process keeps its stream)."""
    world = current()
    if world.distributed:
        torch.manual_seed(seed + RANK_SEED_STRIDE * world.rank)
