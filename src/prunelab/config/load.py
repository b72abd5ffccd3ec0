"""Reading params.yaml and building a section from it; the replicate seed of the single-model path."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from prunelab import paths
from prunelab.config.section import Section
from prunelab.config.sections import SweepConfig
from prunelab.errors import ConfigError
from prunelab.validate import check_int

S = TypeVar("S", bound=Section)


# -- loading ------------------------------------------------------------------------------


def load_params(path: str | Path = paths.PARAMS) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("params file", str(path), "an existing params.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigError("params file", str(path), f"valid YAML ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("params file", str(path), "a YAML mapping of sections")
    return raw


def section(params: Mapping[str, Any], cls: type[S]) -> S:
    """Build and validate one section; unknown keys are errors (they are usually typos)."""
    name = cls.SECTION
    raw = params.get(name) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(name, raw, "a mapping of keys")
    known = [f.name for f in dataclasses.fields(cls) if f.metadata.get("param", True)]  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}", raw[key], f"a known key of {name}: {', '.join(known)}")
    return cls(**raw)


def seed(params: Mapping[str, Any]) -> int:
    """The data split's seed, and the replicate the single-model path (prune → finetune → evaluate) uses.

    It must be one of ``sweep.seeds``: that path prunes the baseline trained with it.
    """
    value = check_int("seed", params.get("seed", 0), minimum=0)
    seeds = section(params, SweepConfig).seeds
    if value not in seeds:
        raise ConfigError(
            "seed",
            value,
            f"one of sweep.seeds {list(seeds)}: the single-model path prunes the "
            f"baseline trained with `seed`, and a baseline is trained for each of sweep.seeds "
            f"(add {value} to sweep.seeds, or pick one of them)",
        )
    return value
