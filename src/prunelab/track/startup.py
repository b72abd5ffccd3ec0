"""A stage process's garbage collector: off while the stage imports, on once its run starts.

A stage imports torch and MLflow (and its SQLAlchemy store): about 400,000 objects,
almost all alive until the process ends. The full collections their allocations trigger
walk all of them again and again: about 0.5 s of a stage's start on the 2-core machine.
And at exit, with nothing frozen, Python's final collections walk them once more: a stage
took 1.1 s to exit where a bare ``import torch`` takes 0.4 s
(bench/stage_startup.py, docs/performance.md).

So ``pipeline.runner`` calls ``hold`` before a stage's ``main`` imports anything heavy, and
the stage's run starting (``runs.start_run``, where its imports are done and its work
begins) calls ``release``: what was imported moves to gc's permanent generation (later
collections skip it) and the collector runs again, as it always did, for the work. At
exit what is alive is frozen too, so Python ends without walking it. Nothing computed
changes: the collector decides when memory is freed, never a value. The launcher of
several ranks releases it before it waits for them; a stage that stops before its run
(a refused input) gets it back when the runner returns.
"""

from __future__ import annotations

import atexit
import gc

_held = False


def hold() -> None:
    """Turn the collector off until ``release``, and freeze what is alive at exit."""
    global _held
    if _held or not gc.isenabled():
        return  # someone turned it off on purpose: theirs to turn on
    gc.disable()
    _held = True
    atexit.register(gc.freeze)


def release() -> None:
    """The imports are done: freeze what they made, and collect again from here on (once held)."""
    global _held
    if not _held:
        return
    _held = False
    gc.freeze()
    gc.enable()
