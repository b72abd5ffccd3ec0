"""Measurements of a model (definitions from ShrinkBench, Blalock et al. 2020).

One registered ``Metric`` per measurement (see ``metric.py``); register a new one with
one import line below. Every number is counted from the model, never assumed from the
requested k.

Where each part lives: the metrics ``parameters.py``, ``structure.py``, ``accuracy.py``
(test, finetune), ``cost.py`` (FLOPs, bytes: counted), ``compression.py`` (the compressed
file) and ``speed.py`` (timed); what they measure with:
``flops.py``, ``latency.py``, ``memory.py`` (peak memory, /proc),
``epoch.py`` (training epoch time), ``load.py`` (machine load while timing, ``noisy``),
``timing.py`` (interleaved timing and the one timing policy, ``TimingPolicy``) and
``forward.py`` (eval mode, seeded inputs).
"""

from prunelab.measure import accuracy as _accuracy  # noqa: F401  (registers test, finetune)
from prunelab.measure import compression as _compression  # noqa: F401  (registers compression)
from prunelab.measure import cost as _cost  # noqa: F401  (registers cost)
from prunelab.measure import parameters as _parameters  # noqa: F401  (registers parameters)
from prunelab.measure import speed as _speed  # noqa: F401  (registers speed)
from prunelab.measure import structure as _structure  # noqa: F401  (registers structure)
from prunelab.measure.metric import METRICS, Column, Metric, Subject

__all__ = ["METRICS", "Column", "Metric", "Subject"]
