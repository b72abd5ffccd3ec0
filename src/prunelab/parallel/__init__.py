"""Several processes training as one: torchrun ranks and DistributedDataParallel.

``world`` (which rank this process is, read from torchrun's environment; no torch import),
``launch`` (a stage started with ``train.nproc`` > 1 starts itself again as that many ranks
under torch's elastic launcher, and turns a failed rank into one line), ``ddp`` (the
process group, the wrapped model, each rank's slice of a batch, sums over ranks, and the
check that masks and weights are the same on every rank).

Rank 0 alone writes and logs: ``track`` and ``atomic`` ask ``is_writer``.
"""

from prunelab.parallel.world import LAUNCHED_ENV, ONE_PROCESS, TORCHRUN_ENV, World, current, is_writer

__all__ = ["LAUNCHED_ENV", "ONE_PROCESS", "TORCHRUN_ENV", "World", "current", "is_writer"]
