"""structure: what removing filters or units did to the architecture.

Reported by structural pruning (``pruning.structured.StructuredResult``) at the moment it
removes them; a masked model reports nothing here. The sweep keeps the fractions and
the parameter reduction; the prune stage writes all of it.
"""

from __future__ import annotations

from prunelab.measure.metric import METRICS, Column, Metric

PARAM_REDUCTION = Column("param_reduction", "1 - params / the dense model's params (structures removed)")

METRICS.add(
    Metric(
        "structure",
        "parameters and filters or units before and after structural pruning",
        (
            Column("params_before", "parameters before removal", table=False, point=False),
            Column("params_after", "parameters after removal", table=False, point=False),
            PARAM_REDUCTION,
            Column("filters_before", "conv filters before removal (classifier excluded)", table=False, point=False),
            Column("filters_after", "conv filters after removal", table=False, point=False),
            Column("filters_removed_fraction", "1 - filters_after / filters_before"),
            Column("units_before", "hidden Linear units before removal", table=False, point=False),
            Column("units_after", "hidden Linear units after removal", table=False, point=False),
            Column("units_removed_fraction", "1 - units_after / units_before"),
        ),
        lambda s: s.structure,
    )
)
