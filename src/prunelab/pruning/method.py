"""What a pruning method is: one registered object that knows everything about itself.

A method knows its kind for a given config (``MASKS``: weights are zeroed and stay in
place; ``STRUCTURAL``: filters or units are removed and the network gets smaller),
which models it applies to and why not, whether it can follow a gradual schedule (only
masks can: structures are removed once), its own ``prune.*`` options (a
``config.MethodOptions`` subclass: ``cfg.options``), whether it prunes by a threshold,
and how to prune. Everything outside this package asks the method; nothing compares its name.

``cfg`` is always the prune section, a ``config.PruneConfig`` built by ``options.prune_config``.

Importing this module, and so the ``METHODS`` registry, imports no torch: config
validation and the plot stage look methods up by name, and only pruning needs torch.
Method modules therefore import torch inside the functions that compute.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from prunelab.config import MethodOptions, PruneConfig
from prunelab.errors import ConfigError
from prunelab.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn


MASKS, STRUCTURAL = "masks", "structural"

METHODS: Registry[Method] = Registry("pruning method")


@dataclass
class Pruned:
    """What pruning one model did (the model itself was changed in place)."""

    layers: dict[str, nn.Module]  # the prunable layers after pruning
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # attached masks; empty when structures went
    structure: dict[str, float] = field(default_factory=dict)  # params and filters/units before and after
    kept_one: list[str] = field(default_factory=list)  # layers where every filter or unit would have gone


def literal(value: object) -> str:
    """A params value as it is written in params.yaml (null, false, 0.5, 'l2')."""
    return repr(value) if isinstance(value, str) else json.dumps(value)


class Method:
    """A pruning method. Subclasses set ``name`` and implement ``prune``."""

    name: ClassVar[str]
    # this method's own prune.* keys, with their defaults and checks (cfg.options is one)
    options: ClassVar[type[MethodOptions]] = MethodOptions
    # of those, the keys that make no sense with any other prune.method (an error there);
    # the others (norm) may stay set for the sweep's sake whatever prune.method is
    exclusive: ClassVar[tuple[str, ...]] = ()
    by_threshold: ClassVar[bool] = False  # prune.threshold (a norm under which structures go) instead of k

    @classmethod
    def option_keys(cls) -> tuple[str, ...]:
        """This method's own prune.* keys."""
        return tuple(f.name for f in dataclasses.fields(cls.options))

    def mine(self, cfg: PruneConfig) -> PruneConfig:
        """``cfg`` as this method would read it: its own options, from the keys the section gives."""
        if cfg.method == self.name:
            return cfg
        own = {k: v for k, v in cfg.given.items() if k in self.option_keys()}
        return dataclasses.replace(cfg, method=self.name, options=self.options(**own))

    def kind(self, cfg) -> str:
        return MASKS

    def describe(self, cfg) -> str:
        """How the config names this method in messages."""
        return f"method {self.name!r}"

    def why_not(self, model: nn.Module, cfg) -> str | None:
        """Why this method would prune nothing in ``model`` (None: it applies)."""
        from prunelab.pruning.layers import prunable_layers

        return None if prunable_layers(model, cfg.include_classifier) else "has no prunable layers"

    def check_model(self, model: nn.Module, model_name: str, cfg, key: str = "prune.method") -> None:
        """Refuse, by name, a method that would prune nothing, listing the methods that would not."""
        reason = self.why_not(model, cfg)
        if reason is None:
            return
        others = [m.name for m in METHODS.values() if m.name != self.name and m.why_not(model, m.mine(cfg)) is None]
        allowed = (", ".join(others[:-1]) + " or " + others[-1]) if len(others) > 1 else "".join(others) or "none"
        raise ConfigError(key, self.name, f"{allowed}: model {model_name!r} {reason}")

    def check_config(self, cfg: PruneConfig) -> None:
        """Cross-checks of the prune section against this method: the amount and the schedule."""
        if cfg.threshold is not None and not self.by_threshold:
            owners = sorted(m.name for m in METHODS.values() if m.by_threshold)
            raise ConfigError(
                "prune.threshold", cfg.threshold, f"null unless prune.method is one of {', '.join(owners)}"
            )
        if cfg.schedule != "oneshot" and self.kind(cfg) == STRUCTURAL:
            gradual = sorted(m.name for m in METHODS.values() if isinstance(m, MaskMethod))
            raise ConfigError(
                "prune.schedule",
                cfg.schedule,
                f"'oneshot' with {self.describe(cfg)} (it removes structures once, physically); "
                f"{cfg.schedule} works with the masks of {', '.join(gradual)}",
            )

    def prune(self, model: nn.Module, cfg, input_shape: tuple[int, ...]) -> Pruned:
        """Prune ``model`` in place, from dense, to ``cfg.sparsity`` (or ``cfg.threshold``)."""
        raise NotImplementedError

    def require(self, model: nn.Module, cfg) -> None:
        reason = self.why_not(model, cfg)
        if reason is not None:
            raise ConfigError("prune.method", self.name, f"a method that applies: this model {reason}")


class MaskMethod(Method):
    """A method whose result is a mask per layer; ``masks`` is a pure function.

    ``masks(layers, sparsity, current)`` reads the layers' effective weights and the
    current masks and returns new masks without touching the model; already-pruned
    weights rank first, so masks only shrink. Applying them is a separate step.
    A method that draws at random sets ``seeded`` and takes ``masks(..., seed=)``.
    Callers go through ``masks_at``, which passes the seed only to such methods.
    """

    seeded: ClassVar[bool] = False  # masks depend on a seed (the replicate's): masks(..., seed=)

    def masks(
        self, layers: Mapping[str, nn.Module], sparsity: float, current: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def masks_at(
        self, layers: Mapping[str, nn.Module], sparsity: float, current: Mapping[str, torch.Tensor], seed: int = 0
    ) -> dict[str, torch.Tensor]:
        """``masks``, with ``seed`` for a method that draws (``seeded``)."""
        if self.seeded:
            return self.masks(layers, sparsity, current, seed=seed)  # type: ignore[call-arg]
        return self.masks(layers, sparsity, current)

    def prune(self, model: nn.Module, cfg, input_shape: tuple[int, ...]) -> Pruned:
        from prunelab.pruning.layers import prunable_layers
        from prunelab.pruning.masks import apply_masks, dense_masks

        self.require(model, cfg)
        layers = prunable_layers(model, cfg.include_classifier)
        masks = self.masks_at(layers, cfg.sparsity, dense_masks(layers), getattr(cfg, "seed", 0))
        apply_masks(layers, masks)
        return Pruned(layers, masks)


def structural(model: nn.Module, cfg, result: Any) -> Pruned:
    """The ``Pruned`` of a structural removal (``structured.StructuredResult``)."""
    from prunelab.pruning.layers import prunable_layers

    return Pruned(prunable_layers(model, cfg.include_classifier), {}, result.report(), list(result.kept_one))
