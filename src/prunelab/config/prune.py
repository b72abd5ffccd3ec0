"""The prune section: what every method shares, the schedules, rewinding; a method's own options.

Each pruning method owns its options as a ``MethodOptions`` subclass beside its code, as
open_lth's strategies own theirs; ``pruning.prune_config`` builds the section with them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from prunelab.config.section import Section
from prunelab.errors import ConfigError
from prunelab.validate import check_bool, check_choice, check_float, check_int, check_name, check_sparsity

SCHEDULES = ("oneshot", "polynomial", "iterative")  # iterative: IMP (pruning/imp.py)
REWIND_FORMS = "'init', 'epoch:N' (N >= 0 epochs of the baseline's training) or 'none'"


@dataclass(frozen=True)
class Rewind:
    """prune.rewind, parsed: where IMP's surviving weights restart each level."""

    epoch: int | None  # epochs of baseline training to rewind to (0 = init); None: do not rewind

    @property
    def label(self) -> str:
        return "none" if self.epoch is None else "init" if self.epoch == 0 else f"epoch:{self.epoch}"


def parse_rewind(key: str, value: object) -> Rewind:
    if value == "init":
        return Rewind(0)
    if value == "none":
        return Rewind(None)
    match = re.fullmatch(r"epoch:(\d+)", value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(key, value, REWIND_FORMS)
    return Rewind(int(match.group(1)))


@dataclass(frozen=True)
class MethodOptions(Section):
    """A pruning method's own prune.* keys: each method subclasses it beside its code (none by default)."""

    SECTION: ClassVar[str] = "prune"


@dataclass(frozen=True)
class PruneConfig(Section):
    """The prune section: what every method shares, plus ``options``, the chosen method's own keys.

    Build it with ``pruning.prune_config`` (or ``pruning.configure``), which picks the
    method's options class and cross-checks the method against the rest.
    """

    SECTION: ClassVar[str] = "prune"
    method: str = "weight"  # R1's weight (magnitude) pruning
    sparsity: float | None = 0.8  # R1: where weight pruning still holds; try -S prune.sparsity=0.9 next
    threshold: float | None = None  # instead of a fraction, a norm under which structures go (filter; R2: 0.5)
    include_classifier: bool = False  # the final layer stays dense (docs/pruning.md)
    schedule: str = "oneshot"  # R1 prunes once; 'polynomial' gradually during fine-tuning (R2); 'iterative': IMP
    initial_sparsity: float = 0.0  # polynomial: the sparsity fine-tuning starts from (R2: 0)
    ramp: float = 0.5  # polynomial: fraction of fine-tuning over which sparsity rises; the rest recovers
    steps: int = 10  # polynomial: how often masks are recomputed during the ramp
    power: float = 3.0  # polynomial: Zhu & Gupta's cubic, also TF Model Optimization's default
    rewind: str = "init"  # iterative: where survivors restart each level (Frankle & Carbin 2019: init)
    # not params keys: the replicate's seed (sweep.seeds, or seed), which a random method draws from;
    # the method's own options; and every method's options as params.yaml gives them (a sweep point
    # of another method takes its own from there)
    seed: int = dataclasses.field(default=0, metadata={"param": False})
    options: MethodOptions = dataclasses.field(default_factory=MethodOptions, metadata={"param": False})
    given: Mapping[str, Any] = dataclasses.field(default_factory=dict, metadata={"param": False}, compare=False)

    def __post_init__(self) -> None:
        check_name(self.key("method"), self.method)  # which names exist: pruning.prune_config asks the registry
        if self.threshold is not None:
            if self.sparsity is not None:
                raise ConfigError(
                    self.key("threshold"),
                    self.threshold,
                    f"null while prune.sparsity is set ({self.sparsity}): set one of them to null",
                )
            self._set("threshold", check_float(self.key("threshold"), self.threshold))
        else:
            if self.sparsity is None:
                raise ConfigError(self.key("sparsity"), None, "a fraction k with 0 <= k < 1, or prune.threshold set")
            self._set("sparsity", check_sparsity(self.key("sparsity"), self.sparsity))
        check_bool(self.key("include_classifier"), self.include_classifier)
        check_choice(self.key("schedule"), self.schedule, SCHEDULES)
        self._set("initial_sparsity", check_sparsity(self.key("initial_sparsity"), self.initial_sparsity))
        self._set("ramp", check_float(self.key("ramp"), self.ramp))
        if self.ramp > 1:
            raise ConfigError(self.key("ramp"), self.ramp, "a fraction of fine-tuning with 0 < ramp <= 1")
        check_int(self.key("steps"), self.steps)
        self._set("power", check_float(self.key("power"), self.power))
        parse_rewind(self.key("rewind"), self.rewind)
        if self.schedule != "iterative" and self.rewind != "init":
            raise ConfigError(
                self.key("rewind"),
                self.rewind,
                f"'init' unless prune.schedule is 'iterative' (it is {self.schedule!r}: "
                "only iterative pruning rewinds)",
            )
        check_int(self.key("seed"), self.seed, minimum=0)
        if self.schedule == "polynomial" and self.sparsity is not None and self.initial_sparsity > self.sparsity:
            raise ConfigError(
                self.key("initial_sparsity"),
                self.initial_sparsity,
                f"at most prune.sparsity ({self.sparsity}): the schedule only adds zeros",
            )

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | self.options.as_dict()

    @property
    def start(self) -> PruneConfig:
        """Where pruning starts: this config, or for a gradual one, one-shot at its initial sparsity.

        An iterative config starts as one-shot at its target: what its first level prunes
        from the dense model is drawn as the one-shot point.
        """
        if self.schedule != "polynomial":
            return self
        return dataclasses.replace(self, schedule="oneshot", sparsity=self.initial_sparsity)

    @property
    def iterative(self) -> bool:
        return self.schedule == "iterative"

    @property
    def label(self) -> str:
        """How the amount is written in run names: 0.8, threshold 0.5, 0→0.5 polynomial, 0.8 IMP rewind init."""
        if self.threshold is not None:
            return f"threshold {self.threshold:g}"
        if self.schedule == "polynomial":
            return f"{self.initial_sparsity:g}→{self.sparsity:g} polynomial"
        if self.iterative:
            return f"{self.sparsity:g} IMP rewind {self.rewind}"
        return f"{self.sparsity:g}"
