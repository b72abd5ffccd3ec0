"""What every stage script shares: ``prunelab.cli``'s clean failure, plus two things of the pipeline.

A value that ``dvc exp run -S`` wrote and a stage refused is put back
(``params.restore_rejected``), and a training stage logs each epoch to its MLflow run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prunelab import cli, parallel
from prunelab.errors import ConfigError, PrunelabError
from prunelab.track import startup


def after_epoch(record: dict) -> None:
    """The per-epoch callback of a training stage: log the epoch to the active MLflow run."""
    from prunelab import track

    track.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))


def _restore(exc: PrunelabError) -> str | None:
    """After a refused input: the outputs DVC removed come back, and a rejected `-S` value is put back."""
    _restore_outputs()
    if not isinstance(exc, ConfigError):
        return None
    from prunelab.pipeline.params import restore_rejected

    return restore_rejected(exc)


def _restore_outputs() -> None:
    from prunelab.pipeline.outputs import restore_outputs

    restore_outputs()


@dataclass(frozen=True)
class Training:
    """What a training stage tells the runner: the batches it splits over ranks, and when it trains at all."""

    batches: tuple[str, ...]  # "section.batch_size" keys of params.yaml
    when: Callable[[Mapping[str, Any]], bool] = lambda params: True


def _section(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = params.get(name)
    return value if isinstance(value, Mapping) else {}


# The stages that train, by script name; any other stage is one process whatever train.nproc says.
TRAINING = {
    "train_baseline": Training(("train.batch_size",)),
    "finetune": Training(("finetune.batch_size",)),
    "prune": Training(  # IMP levels train (with the baseline's or finetune's batches)
        ("train.batch_size", "finetune.batch_size"),
        lambda params: _section(params, "prune").get("schedule") == "iterative",
    ),
    "sweep": Training(("finetune.batch_size", "train.batch_size")),
}


def run(main: Callable[[], None], stage: str | None = None) -> None:
    """Run a stage's ``main``; a training ``stage`` runs as train.nproc ranks (``prunelab.parallel``).

    The garbage collector is off while ``main`` imports, until the stage's run starts
    (``track.startup``: a stage starts and exits about 1.4 s sooner, bench/stage_startup.py).
    """
    world = parallel.current()
    startup.hold()
    try:
        if stage not in TRAINING:
            cli.run(main, on_error=_restore, on_stop=_restore_outputs)
            return
        cli.run(
            lambda: _ranks(main, TRAINING[stage]),
            on_error=_restore if world.writer else None,  # one rank puts a rejected value back
            on_stop=_restore_outputs if not world.distributed else None,  # ranks: their launcher does it
            quiet_errors=not world.writer,
            quiet_signals=world.distributed and parallel.LAUNCHED_ENV in os.environ,
        )
    finally:
        startup.release()


def _ranks(main: Callable[[], None], training: Training) -> None:
    """``main`` in this process, or as train.nproc ranks started from here, or as one of those ranks."""
    from prunelab import config

    params = config.load_params()
    train = config.section(params, config.TrainConfig)
    world = parallel.current()
    if not world.distributed:
        if train.nproc == 1 or not training.when(params):
            main()
            return
        from prunelab.parallel import launch

        launch.check_batches(train.nproc, {k: _batch(params, k) for k in training.batches})
        startup.release()  # this process only waits for its ranks, maybe for hours: it collects again
        code = launch.relaunch(train.nproc, train.device, [sys.argv[0], *sys.argv[1:]])
        if code == launch.EXIT_RANK_FAILED:
            _reap_quietly()
        if code:
            _restore_outputs()  # a rank failed: the outputs DVC removed come back, as after any failure
            sys.exit(code)
        return
    if world.size != train.nproc:
        raise ConfigError("train.nproc", train.nproc, f"the world size torchrun started ({world.size})")
    import torch

    from prunelab.parallel import ddp

    ddp.init(train.device)
    try:
        main()
    except (torch.distributed.DistError, RuntimeError) as exc:
        if not _lost_peer(exc):
            raise
        # another rank is gone: its failure is the news, this rank's broken collective is not.
        # The run has already ended (FAILED) on the way here; the launcher's SIGTERM may come
        # while Python shuts down, where raising would print a traceback: let it just end us.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if parallel.LAUNCHED_ENV in os.environ:
            raise SystemExit(1) from None  # the launcher reports which rank failed, in one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrunelabError(f"rank {world.rank}: lost contact with the other ranks ({first})") from None
    finally:
        ddp.shutdown()


def _reap_quietly() -> None:
    """After a failed rank: a rank 0 that was killed outright (SIGKILL, OOM) could not end its
    run, so mark KILLED the runs of this host's dead processes now, not at the next stage."""
    import contextlib
    import io

    from prunelab import track

    with contextlib.suppress(Exception), contextlib.redirect_stderr(io.StringIO()):
        track.reap_dead_runs(track.init_store())


# How a collective fails when a peer dies: DDP's reducer raises a plain RuntimeError from gloo or NCCL.
_PEER_GONE = ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe")


def _lost_peer(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.distributed.DistError) or any(s in str(exc) for s in _PEER_GONE)


def _batch(params: Mapping[str, Any], key: str) -> int:
    from prunelab import config

    section = {"train": config.TrainConfig, "finetune": config.FinetuneConfig}[key.split(".")[0]]
    return config.section(params, section).batch_size
