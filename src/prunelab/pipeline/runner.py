"""What every stage script shares: clean failure and one place to read params.

``run(main)`` turns a PrunelabError (bad params, missing or unreadable input, a tracking
store that cannot be used) into one clear line on stderr and exit code 2, with no
traceback; a value that ``dvc exp run -S`` wrote and a stage refused is put back
(``params.restore_rejected``). Ctrl-C prints "interrupted" and exits 130, SIGTERM (``dvc queue kill``)
"terminated" and exits 143; either way the open MLflow run is marked KILLED and every
output keeps its previous content (outputs are written atomically).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from prunelab.errors import ConfigError, PrunelabError

EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 128 + signal.SIGINT, 128 + signal.SIGTERM


def _terminate(signum, frame):
    raise SystemExit(EXIT_TERMINATED)  # unwinds like Ctrl-C: tracking marks the run KILLED


def after_epoch(record: dict) -> None:
    """The per-epoch callback of a training stage: log the epoch to the active MLflow run."""
    from prunelab import track

    track.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))


def run(main: Callable[[], None]) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except PrunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, ConfigError):
            from prunelab.pipeline.params import restore_rejected

            if undone := restore_rejected(exc):
                print(undone, file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("\ninterrupted: the run is marked KILLED; outputs keep their previous content", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:
        if exc.code == EXIT_TERMINATED:
            print(
                "\nterminated (SIGTERM): the run is marked KILLED; outputs keep their previous content", file=sys.stderr
            )
        raise
