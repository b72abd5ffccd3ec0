"""Iterative magnitude pruning (IMP) with rewinding: lottery tickets and Han et al.'s retraining.

Levels go up through the sparsities in order. At each level the surviving weights are
pruned to the level's k by the mask method (magnitude for ``weight``: the smallest
surviving |w| of the network as the previous level trained it), the survivors are
rewound (``pruning.rewind``), and the network trains again with its masks fixed.
Masks only grow from level to level.

How a level trains: rewound to ``init`` or ``epoch:N``, it redoes the baseline's
training from there (the baseline's train section, epochs minus N: Frankle & Carbin
train each ticket as the dense network was trained). With ``none`` it goes on from the
trained weights and fine-tunes (the caller's fine-tuning config, early stopping included).

Rewind points are recorded while the baseline trains (``RewindPoints``): the weights at
initialisation, torch's RNG state when training began, and a digest of the weights after
every epoch. ``epoch:N`` replays the first N epochs from the initial weights and checks
the digest, so the rewound weights are exactly those the baseline had, or it says why not.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab.config import FinetuneConfig, OptimConfig, TrainConfig
from prunelab.data.spec import DataSpec
from prunelab.errors import PrunelabError
from prunelab.pruning.layers import prunable_layers
from prunelab.pruning.masks import Masks, apply_masks, dense_masks
from prunelab.pruning.method import MaskMethod, Pruned
from prunelab.pruning.rewind import Rewind, rewind, state_digest
from prunelab.train.fit import FitResult, fit

BLOB_KEYS = ("init", "rng_state", "epoch_digests", "train", "seed", "augment")


@dataclass
class RewindPoints:
    """Where a baseline's training started, and a fingerprint of every epoch after it."""

    init: dict[str, torch.Tensor]  # the weights at initialisation
    rng_state: torch.Tensor  # torch's global RNG state when training began (dropout draws from it)
    train: dict[str, Any]  # the train section the baseline was trained with
    seed: int
    augment: bool
    epoch_digests: list[str] = field(default_factory=list)  # state_digest after epoch 1, 2, ...

    @classmethod
    def record(cls, model: nn.Module, train: TrainConfig, seed: int, augment: bool) -> RewindPoints:
        """Call just before the baseline's ``fit``; pass ``after_epoch`` on as its epoch callback."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        # one process (nproc 1) is left out: such checkpoints stay byte for byte what they were
        recorded = {k: v for k, v in train.as_dict().items() if not (k == "nproc" and v == 1)}
        return cls(state, torch.get_rng_state(), recorded, seed, augment)

    def after_epoch(self, model: nn.Module) -> None:
        self.epoch_digests.append(state_digest(model.state_dict()))

    def as_blob(self) -> dict[str, Any]:
        return {
            "init": self.init,
            "rng_state": self.rng_state,
            "epoch_digests": list(self.epoch_digests),
            "train": self.train,
            "seed": self.seed,
            "augment": self.augment,
        }

    @classmethod
    def from_blob(cls, blob: Mapping[str, Any], path: str | Path) -> RewindPoints:
        if missing := [k for k in BLOB_KEYS if k not in blob]:
            raise PrunelabError(
                f"{path} holds no rewind points ({', '.join(missing)} missing): it was trained "
                f"before prunelab recorded them; retrain it (`dvc repro -f` its train_baseline stage)"
            )
        return cls(
            dict(blob["init"]),
            blob["rng_state"],
            dict(blob["train"]),
            int(blob["seed"]),
            bool(blob["augment"]),
            list(blob["epoch_digests"]),
        )

    @property
    def epochs(self) -> int:
        return len(self.epoch_digests)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)


def rewind_state(
    trained: nn.Module, points: RewindPoints, to: Rewind, data: DataSpec, device: torch.device
) -> dict[str, torch.Tensor] | None:
    """The weights survivors are rewound to (None: ``none``, they keep training from where they are)."""
    if to.epoch is None:
        return None
    if to.epoch == 0:
        return points.init
    model = copy.deepcopy(trained).cpu()
    model.load_state_dict(points.init)
    saved = torch.get_rng_state()
    torch.set_rng_state(points.rng_state)
    try:
        cfg = dataclasses.replace(points.train_config(), epochs=to.epoch)
        fit(
            model,
            data,
            cfg,
            seed=points.seed,
            device=device,
            desc=f"replay baseline to epoch {to.epoch}",
            leave=False,
            augment=points.augment,
        )
    finally:
        torch.set_rng_state(saved)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if state_digest(state) != points.epoch_digests[to.epoch - 1]:
        raise PrunelabError(
            f"prune.rewind epoch:{to.epoch}: replaying the baseline's first {to.epoch} epochs on "
            f"{device} gave other weights than the baseline had after epoch {to.epoch} (training "
            "is not bit-reproducible here, e.g. another device or torch version); "
            "use prune.rewind: init, or retrain the baseline on this machine"
        )
    return state


def level_config(points: RewindPoints, to: Rewind, finetune: FinetuneConfig | None) -> OptimConfig:
    """How each level trains: the baseline's training from the rewind point, or fine-tuning (``none``)."""
    if to.epoch is None:
        assert finetune is not None  # plan() refuses 'none' without fine-tuning
        return finetune
    return dataclasses.replace(points.train_config(), epochs=points.epochs - to.epoch)


def levels(sparsities: Sequence[float], target: float | None = None) -> list[float]:
    """The levels in order: every sparsity (up to ``target``, which is always the last)."""
    ks = sorted(set(sparsities))
    return ks if target is None else [k for k in ks if k < target] + [target]


@dataclass
class Level:
    sparsity: float
    masks: Masks
    result: FitResult | None  # None at k = 0: the trained dense network is the first level


def iterate(
    model: nn.Module,
    method: MaskMethod,
    include_classifier: bool,
    ks: Sequence[float],
    state: Mapping[str, torch.Tensor] | None,
    data: DataSpec,
    cfg: OptimConfig,
    *,
    seed: int,
    device: torch.device,
    desc: str = "IMP",
    augment: bool = False,
) -> Iterator[Level]:
    """Prune ``model`` (trained, dense; changed in place) level by level; yield after each level trains.

    Between yields the model carries its masks (torch's pruning reparametrisation); the
    caller measures it there.
    """
    if not isinstance(method, MaskMethod):  # the config refuses this first (Method.check_config)
        raise TypeError(f"{method.name!r} removes structures physically: only mask methods prune iteratively")
    model.to(device)
    layers = prunable_layers(model, include_classifier)
    masks = dense_masks(layers)
    apply_masks(layers, masks)
    for i, k in enumerate(ks, 1):
        if k == 0:
            yield Level(k, masks, None)
            continue
        masks = method.masks_at(layers, k, masks, seed)
        if state is None:
            apply_masks(layers, masks)
        else:
            rewind(model, layers, {n: t.to(device) for n, t in state.items()}, masks)
        result = fit(
            model,
            data,
            cfg,
            seed=seed,
            device=device,
            desc=f"{desc} level {i}/{len(ks)} k={k:g}",
            leave=False,
            augment=augment,
        )
        yield Level(k, masks, result)


@dataclass(frozen=True)
class Plan:
    """What every level of one IMP run shares."""

    rewind: Rewind
    state: Mapping[str, torch.Tensor] | None  # the weights survivors restart from (None: ``none``)
    train: OptimConfig  # how each level trains
    augment: bool = False  # as the baseline trained

    @property
    def label(self) -> str:
        return f"IMP, rewind {self.rewind.label}"


def plan(
    trained: nn.Module,
    rewind_blob: Mapping[str, Any],
    path: str | Path,
    cfg,
    finetune: FinetuneConfig | None,
    data: DataSpec,
    device: torch.device,
) -> Plan:
    """The plan for ``cfg`` (the prune section, iterative) from a baseline checkpoint's rewind points.

    ``finetune`` is how levels train with rewind ``none`` (None: no fine-tuning was asked
    for, which ``none`` cannot do without).
    """
    from prunelab.errors import ConfigError
    from prunelab.pruning.rewind import check_reachable, parse_rewind

    to = parse_rewind("prune.rewind", cfg.rewind)
    if to.epoch is None and finetune is None:
        raise ConfigError(
            "prune.rewind",
            cfg.rewind,
            "'init' or 'epoch:N' when there is no fine-tuning "
            "(sweep.finetune_epochs is 0): with 'none' each level fine-tunes",
        )
    points = RewindPoints.from_blob(rewind_blob, path)
    check_reachable("prune.rewind", to, points.epochs)
    return Plan(to, rewind_state(trained, points, to, data, device), level_config(points, to, finetune), points.augment)


def run(
    model: nn.Module,
    method: MaskMethod,
    cfg,
    ks: Sequence[float],
    how: Plan,
    data: DataSpec,
    device: torch.device,
    on_level=None,
) -> Pruned:
    """IMP of ``model`` (trained, dense; changed in place) through ``ks``; the last level's masks stay attached."""
    level = None
    for level in iterate(
        model,
        method,
        cfg.include_classifier,
        ks,
        how.state,
        data,
        how.train,
        seed=cfg.seed,
        device=device,
        desc=f"{method.name} IMP",
        augment=how.augment,
    ):
        if on_level is not None:
            on_level(level)
    assert level is not None, "no levels"
    return Pruned(prunable_layers(model, cfg.include_classifier), level.masks)
