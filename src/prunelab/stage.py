"""What every stage script shares: clean failure and one place to read params.

``run(main)`` turns a PrunelabError (bad params, missing input) into one clear line on
stderr and exit code 2, with no traceback; SIGTERM (``dvc queue kill``) becomes an
exception so an open MLflow run is marked FAILED instead of left RUNNING.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from prunelab.errors import PrunelabError


def _terminate(signum, frame):  # noqa: ARG001
    raise SystemExit(128 + signum)


def after_epoch(record: dict) -> None:
    """The per-epoch callback of a training stage: log the epoch to the active MLflow run."""
    from prunelab import tracking

    tracking.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))


def run(main: Callable[[], None]) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except PrunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
