"""The prune and sweep sections, checked against the registered methods.

``prune_config`` reads the prune section as params.yaml writes it (flat keys): the keys
every method shares go to ``config.PruneConfig``, the chosen method's own keys to its
options class (``Method.options``, open_lth's ``get_pruning_hparams``), and the method
cross-checks the rest. A sweep point of another method (``point_config``) takes that
method's own keys from the same section, so no option is reset by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prunelab.config import PruneConfig, SweepConfig, check_choice, section
from prunelab.errors import ConfigError
from prunelab.pruning.method import METHODS, Method, literal

SHARED = tuple(f.name for f in dataclasses.fields(PruneConfig) if f.metadata.get("param", True))


def _option_keys() -> dict[str, list[Method]]:
    """Each method-owned key and the methods that own it."""
    owners: dict[str, list[Method]] = {}
    for method in METHODS.values():
        for key in method.option_keys():
            owners.setdefault(key, []).append(method)
    return owners


def _build(method: Method, shared: Mapping[str, Any], given: Mapping[str, Any], seed: int) -> PruneConfig:
    options = method.options(**{k: v for k, v in given.items() if k in method.option_keys()})
    cfg = PruneConfig(**shared, seed=seed, options=options, given=dict(given))
    method.check_config(cfg)
    return cfg


def prune_config(params: Mapping[str, Any], *, seed: int = 0) -> PruneConfig:
    """The prune section of ``params``, validated; ``seed`` is the replicate a random method draws from."""
    raw = params.get("prune") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("prune", raw, "a mapping of keys")
    owners = _option_keys()
    for key in raw:
        if key not in SHARED and key not in owners:
            raise ConfigError(f"prune.{key}", raw[key], f"a known key of prune: {', '.join([*SHARED, *owners])}")
    name = raw.get("method", PruneConfig.method)
    check_choice("prune.method", name, METHODS.names())
    method, given = METHODS.get(name), {k: v for k, v in raw.items() if k in owners}
    for key, value in given.items():  # another method's key that makes no sense with this one
        exclusive = [m for m in owners[key] if key in m.exclusive and m is not method]
        if exclusive and method not in owners[key]:
            default = next(f.default for f in dataclasses.fields(exclusive[0].options) if f.name == key)
            if value != default:
                raise ConfigError(
                    f"prune.{key}",
                    value,
                    f"{literal(default)} unless prune.method is one of {', '.join(sorted(m.name for m in exclusive))}",
                )
    return _build(method, {k: v for k, v in raw.items() if k in SHARED}, given, seed)


def configure(*, seed: int = 0, **keys: Any) -> PruneConfig:
    """``prune_config`` of a prune section given as keywords: ``configure(method="unit", physical=True)``."""
    return prune_config({"prune": keys}, seed=seed)


def point_config(cfg: PruneConfig, method: str, sparsity: float) -> PruneConfig:
    """The sweep's config for ``method`` at ``sparsity``: the study's shared keys, the method's own options.

    The sweep prunes by ratio, so a threshold gives way to k, and a schedule starts no
    higher than k. An invalid combination (a structural method on a gradual schedule) is
    reported as in the prune stage, with the sweep named.
    """
    check_choice("sweep.methods", method, METHODS.names())
    shared = {f: getattr(cfg, f) for f in SHARED} | {
        "method": method,
        "sparsity": sparsity,
        "threshold": None,
        "initial_sparsity": min(cfg.initial_sparsity, sparsity),
    }
    try:
        return _build(METHODS.get(method), shared, cfg.given, cfg.seed)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.value, f"{exc.allowed} (sweep.methods includes {method!r})") from None


def sweep_config(params: Mapping[str, Any]) -> SweepConfig:
    """The sweep section of ``params``, its methods checked against the registry."""
    cfg = section(params, SweepConfig)
    for i, name in enumerate(cfg.methods):
        check_choice(f"sweep.methods[{i}]", name, METHODS.names())
    return cfg
