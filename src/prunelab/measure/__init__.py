"""Measurements of a model (definitions from ShrinkBench, Blalock et al. 2020).

One registered ``Metric`` per measurement (see ``metric.py``); register a new one with
one import line below. Every number is counted from the model, never assumed from the
requested k.
"""

from prunelab.measure.metric import METRICS, Column, Metric, Subject

from prunelab.measure import parameters as _parameters  # noqa: F401  (registers parameters)
from prunelab.measure import structure as _structure  # noqa: F401  (registers structure)
from prunelab.measure import accuracy as _accuracy  # noqa: F401  (registers test, finetune)
from prunelab.measure import efficiency as _efficiency  # noqa: F401  (registers cost, speed)

__all__ = ["METRICS", "Column", "Metric", "Subject"]
