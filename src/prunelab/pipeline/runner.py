"""What every stage script shares: ``prunelab.cli``'s clean failure, plus two things of the pipeline.

A value that ``dvc exp run -S`` wrote and a stage refused is put back
(``params.restore_rejected``), and a training stage logs each epoch to its MLflow run.
"""

from __future__ import annotations

from collections.abc import Callable

from prunelab import cli
from prunelab.errors import ConfigError, PrunelabError


def after_epoch(record: dict) -> None:
    """The per-epoch callback of a training stage: log the epoch to the active MLflow run."""
    from prunelab import track

    track.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))


def _restore(exc: PrunelabError) -> str | None:
    if not isinstance(exc, ConfigError):
        return None
    from prunelab.pipeline.params import restore_rejected

    return restore_rejected(exc)


def run(main: Callable[[], None]) -> None:
    cli.run(main, on_error=_restore)
