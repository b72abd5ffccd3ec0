"""Checks of single params values: each returns the value (normalised) or raises ConfigError.

The message names the key, the value and what is allowed (see errors.ConfigError).
"""

from __future__ import annotations

from collections.abc import Sequence

from prunelab.errors import ConfigError


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(key: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, value, f"an integer >= {minimum}")
    return value


def check_float(key: str, value: object, minimum: float = 0.0, strict: bool = True) -> float:
    ok = _is_number(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ConfigError(key, value, f"a number {'>' if strict else '>='} {minimum}")
    return float(value)  # type: ignore[arg-type]


def check_sparsity(key: str, value: object) -> float:
    if not _is_number(value) or not 0.0 <= value < 1.0:  # type: ignore[operator]
        raise ConfigError(key, value, "a fraction k with 0 <= k < 1 (e.g. 0.9 for 90 %)")
    return float(value)  # type: ignore[arg-type]


def check_fraction_open(key: str, value: object) -> float:
    if not _is_number(value) or not 0.0 < value < 1.0:  # type: ignore[operator]
        raise ConfigError(key, value, "a fraction strictly between 0 and 1")
    return float(value)  # type: ignore[arg-type]


def check_bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")
    return value


def check_choice(key: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(map(repr, choices)))
    return value


def check_name(key: str, value: object) -> str:
    """A plug-in's name, before its registry is asked whether it exists."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "a name (a non-empty string)")
    return value


def check_unique_list(key: str, value: object, item_check) -> tuple:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(key, value, "a non-empty list")
    items = tuple(item_check(f"{key}[{i}]", v) for i, v in enumerate(value))
    seen: set = set()
    for v in items:
        if v in seen:
            raise ConfigError(key, list(value), f"a list without duplicates ({v!r} repeats)")
        seen.add(v)
    return items
