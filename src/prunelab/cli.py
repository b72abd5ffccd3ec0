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


def run(main: Callable[[], None], on_error: Callable[[PrunelabError], str | None] | None = None) -> None:
    """Run ``main``; ``on_error`` may undo something after a refused input and say what (one line)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except PrunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if on_error is not None and (undone := on_error(exc)):
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
