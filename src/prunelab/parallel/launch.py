"""Start a stage again as ``train.nproc`` ranks, under torch's own elastic launcher (torchrun).

The stage's process becomes the launcher (torchrun's agent, in-process): it starts the
ranks, watches them, stops them all when one fails, and reports that failure in one line
instead of torchrun's multi-page error. On one machine the rendezvous is torchrun's
``--standalone``; on several, ``PRUNELAB_TORCHRUN`` carries the usual torchrun arguments
(``--nnodes``, ``--node-rank`` or ``--rdzv-*``), and train.nproc is the total over nodes.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys

from prunelab.errors import ConfigError, PrunelabError
from prunelab.parallel.world import LAUNCHED_ENV, TORCHRUN_ENV

EXIT_RANK_FAILED = 1
EXIT_BAD_INPUT = 2  # a rank refused its input and said so itself (the same params on every rank)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def capacity(device: str) -> tuple[int, str]:
    """How many ranks this machine runs for ``device`` (cpu | cuda | auto): one per GPU, or per core."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.device_count(), "GPUs"
    return cores(), "CPU cores"


def check_batches(nproc: int, batches: dict[str, int]) -> None:
    """Each global batch splits evenly over the ranks: one line naming the first that does not."""
    for key, size in batches.items():
        if size % nproc:
            raise ConfigError(
                "train.nproc", nproc, f"a divisor of {key} ({size}): every rank takes an equal part of each batch"
            )


def torchrun_args(nproc: int, device: str, argv: list[str]):
    """torchrun's parsed arguments for this stage: ``PRUNELAB_TORCHRUN``, then ranks per node, then the command."""
    from torch.distributed import run as torchrun

    extra = os.environ.get(TORCHRUN_ENV, "")
    try:
        args = torchrun.parse_args([*shlex.split(extra), "--nproc-per-node", "1", *argv])
        _, nnodes = torchrun.parse_min_max_nnodes(args.nnodes)
    except (SystemExit, ValueError):
        raise PrunelabError(
            f"{TORCHRUN_ENV}={extra!r}: not torchrun arguments (for example "
            "'--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:29400 --rdzv-id STUDY')"
        ) from None
    if nproc % nnodes:
        raise ConfigError("train.nproc", nproc, f"a multiple of the {nnodes} nodes {TORCHRUN_ENV} asks for")
    per_node = nproc // nnodes
    limit, what = capacity(device)
    if per_node > limit:
        allowed = f"at most {limit * nnodes} ({limit} {what} per node on this machine, {nnodes} node(s))"
        raise ConfigError("train.nproc", nproc, allowed)
    args.nproc_per_node = str(per_node)
    if nnodes == 1 and not args.rdzv_endpoint:
        args.standalone = True
    return args, per_node


def relaunch(nproc: int, device: str, argv: list[str]) -> int:
    """Run ``argv`` (the stage's script and arguments) as ``nproc`` ranks; the exit code to exit with."""
    args, per_node = torchrun_args(nproc, device, argv)
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torchrun would give every rank one thread; the cores are shared out instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // per_node)))
    os.environ[LAUNCHED_ENV] = "1"
    # the agent's chatter (each of its modules sets its own logger's level); failures are reported below
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    print(f"{_stage(argv)}: {nproc} ranks ({per_node} on this node)", flush=True)
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        return _report(_stage(argv), exc.failures)
    except SignalException as exc:
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise SystemExit(128 + int(exc.sigval)) from None
    return 0


def _stage(argv: list[str]) -> str:
    return " ".join([os.path.splitext(os.path.basename(argv[0]))[0], *argv[1:]])


def _report(stage: str, failures: dict) -> int:
    """One line for the failure that caused the others: a rank killed by a signal first, then the earliest."""
    if any(f.exitcode == EXIT_BAD_INPUT for f in failures.values()):
        return EXIT_BAD_INPUT  # rank 0 printed the reason; the parameters are the same everywhere
    killed = [(r, f) for r, f in failures.items() if f.exitcode < 0 and f.signal_name() != "SIGTERM"]
    rank, failure = min(killed or failures.items(), key=lambda rf: (rf[1].timestamp, rf[0]))
    how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
    print(
        f"error: {stage}: rank {rank} (pid {failure.pid}) {how}; every rank was stopped, no output was written "
        "and the stage's MLflow run is marked FAILED or KILLED: rerun the stage",
        file=sys.stderr,
    )
    return EXIT_RANK_FAILED
