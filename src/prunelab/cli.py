"""How every command-line entry point fails: one line, an exit code, no traceback.

``run(main)`` turns a PrunelabError (bad params, missing or unreadable input, a tracking
store that cannot be used) into one clear line on stderr and exit code 2. Ctrl-C prints
"interrupted" and exits 130, SIGTERM (``dvc queue kill``) "terminated" and exits 143;
either way an open MLflow run is marked KILLED and every output keeps its previous
content (outputs are written atomically). Stages add their own handling on top
(``pipeline.runner``); the compare table and the offline plots page use it as it is.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from prunelab.errors import PrunelabError

EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 128 + signal.SIGINT, 128 + signal.SIGTERM


def _terminate(signum, frame):
    raise SystemExit(EXIT_TERMINATED)  # unwinds like Ctrl-C: tracking marks the run KILLED


def run(
    main: Callable[[], None],
    on_error: Callable[[PrunelabError], str | None] | None = None,
    *,
    quiet_errors: bool = False,
    quiet_signals: bool = False,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Run ``main``; ``on_error`` may undo something after a refused input and say what (one line).

    ``on_stop`` runs after Ctrl-C or SIGTERM (a stage puts back the outputs DVC removed).
    A rank of a multi-process stage says less: ranks other than 0 print no refused input
    (``quiet_errors``: rank 0 reads the same input and says it once), and ranks whose
    launcher reports for them print nothing when stopped (``quiet_signals``).
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except PrunelabError as exc:
        if not quiet_errors:
            print(f"error: {exc}", file=sys.stderr)
            if on_error is not None and (undone := on_error(exc)):
                print(undone, file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        if on_stop is not None:
            on_stop()
        if not quiet_signals:
            print("\ninterrupted: the run is marked KILLED; outputs keep their previous content", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:
        if exc.code == EXIT_TERMINATED and on_stop is not None:
            on_stop()
        if exc.code == EXIT_TERMINATED and not quiet_signals:
            print(
                "\nterminated (SIGTERM): the run is marked KILLED; outputs keep their previous content", file=sys.stderr
            )
        raise
