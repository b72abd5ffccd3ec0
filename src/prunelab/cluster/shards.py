"""A study cut into shards: which DVC stages each host runs (pure; no git, no DVC).

The pipeline's training work is already one DVC stage per seed (``train_baseline@S``) and
per method and seed (``sweep@M-S``), each cached by its own deps and params only, so a
stage that one host ran is the very stage that every other clone of the same commit and
params would run: DVC's run-cache restores it there instead of training. A shard is a list
of such stages; the gathering clone runs the whole study, and only the stages no shard ran
(``plot``, ``efficiency``: the figures over all shards) do any work.

- ``by="seed"``: each host takes some seeds: their baselines and every method's sweep.
- ``by="method"``: each host takes some methods for every seed; the baselines they share are
  trained first, once, by a ``baselines`` shard that the others wait for.
The single-model path (``prune`` → ``finetune`` → ``compress`` → ``evaluate``) goes with
the shard that has the baseline of ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prunelab.errors import ConfigError, PrunelabError

BY = ("seed", "method")
SINGLE_MODEL = ("prune", "finetune", "compress", "evaluate")
GATHER_ONLY = ("plot", "efficiency")  # run where the study is gathered: they read every shard's results


@dataclass(frozen=True)
class Shard:
    name: str  # "seed-0+2", "method-weight", "baselines": part of the experiment's and job's names
    targets: tuple[str, ...]  # DVC stages, as `dvc exp run` takes them
    first: bool = False  # the others need its results: it runs, and pushes, before them


def _deal(items: Sequence[Any], hosts: int) -> list[list[Any]]:
    """``items`` dealt round-robin onto at most ``hosts`` piles, none empty."""
    piles = [list(items[i::hosts]) for i in range(min(hosts, len(items)))]
    return [p for p in piles if p]


def _label(kind: str, values: Sequence[Any]) -> str:
    return f"{kind}-{'+'.join(str(v) for v in values)}"


def plan(params: Mapping[str, Any], hosts: int, by: str = "seed") -> list[Shard]:
    """The shards of the study that ``params`` (params.yaml's values) describes, for ``hosts`` hosts."""
    if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1:
        raise PrunelabError(f"--hosts {hosts!r} is invalid; allowed: an integer >= 1")
    if by not in BY:
        raise PrunelabError(f"--by {by!r} is invalid; allowed: {', '.join(BY)}")
    sweep = params.get("sweep") or {}
    methods, seeds, seed = list(sweep.get("methods") or []), list(sweep.get("seeds") or []), params.get("seed")
    if not methods:
        raise ConfigError("sweep.methods", methods, "at least one method to shard the study by")
    if not seeds:
        raise ConfigError("sweep.seeds", seeds, "at least one seed to shard the study by")
    if seed not in seeds:
        raise ConfigError("seed", seed, f"one of sweep.seeds {seeds} (the single-model path prunes its baseline)")
    if by == "seed":
        shards = []
        for pile in _deal(seeds, hosts):
            targets = [f"train_baseline@{s}" for s in pile] + [f"sweep@{m}-{s}" for s in pile for m in methods]
            if seed in pile:
                targets += SINGLE_MODEL
            shards.append(Shard(_label("seed", pile), tuple(targets)))
        return shards
    piles = _deal(methods, hosts)
    baselines = tuple(f"train_baseline@{s}" for s in seeds)
    shards = [
        Shard(
            _label("method", pile),
            tuple(f"sweep@{m}-{s}" for m in pile for s in seeds) + (SINGLE_MODEL if i == 0 else ()),
        )
        for i, pile in enumerate(piles)
    ]
    if len(shards) == 1:  # one host: nothing to share, no waiting
        return [Shard(shards[0].name, baselines + shards[0].targets)]
    return [Shard("baselines", baselines, first=True), *shards]
