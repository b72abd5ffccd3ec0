"""The reference studies (docs/reference-studies.md) as params overrides.

Each study is one ``dvc exp run`` command; ``command(name)`` renders it exactly as
docs/reference-studies.md shows it (tests/test_studies.py checks that, and that every
override is valid).
bench/study_times.py times each study's training from the same overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Study:
    title: str
    overrides: dict[str, Any]


STUDIES: dict[str, Study] = {
    "r1": Study(
        "MNIST MLP, weight vs unit pruning, one-shot; three seeds and the random control",
        {
            "data.name": "mnist",
            "sweep.methods": ["weight", "unit", "random"],
            "sweep.seeds": [0, 1, 2],
        },
    ),
    "r2-mnist": Study(
        "MNIST CNN pruned during fine-tuning on a polynomial schedule to 50 %",
        {
            "data.name": "mnist",
            "model.name": "mnist_cnn",
            "train.epochs": 10,
            "train.batch_size": 128,
            "prune.method": "weight",
            "prune.sparsity": 0.5,
            "prune.schedule": "polynomial",
            "finetune.epochs": 10,
            "finetune.batch_size": 128,
            "sweep.methods": ["weight"],
            "sweep.sparsities": [0.0, 0.25, 0.5, 0.75, 0.9],
            "sweep.finetune_epochs": 4,
            "sweep.seeds": [0, 1, 2],
        },
    ),
    "r2-cifar": Study(
        "CIFAR-10 CNN, L2 filter pruning to about half the parameters, 5 epochs fine-tuning",
        {
            "data.name": "cifar10",
            "model.name": "cifar_cnn",
            "model.bias": False,
            "prune.method": "filter",
            "prune.norm": "l2",
            "prune.sparsity": 0.5,
            "finetune.epochs": 5,
            "sweep.methods": ["filter", "weight"],
            "sweep.sparsities": [0.0, 0.25, 0.5, 0.75],
        },
    ),
    "r3": Study(
        "VGG16 on RealWaste, weight and filter pruning, both fine-tuned",
        {
            "data.name": "realwaste",
            "data.image_size": 224,
            "data.augment": True,
            "model.name": "vgg16",
            "model.pretrained": True,
            "train.epochs": 10,
            "train.batch_size": 32,
            "train.lr": 0.0001,
            "train.device": "auto",
            "prune.method": "filter",
            "prune.norm": "l1",
            "prune.sparsity": 0.5,
            "finetune.epochs": 10,
            "finetune.batch_size": 32,
            "finetune.lr": 0.0001,
            "sweep.methods": ["weight", "filter"],
            "sweep.sparsities": [0.0, 0.25, 0.5, 0.75],
        },
    ),
    "r4": Study(
        "ResNet-101, 20 % magnitude pruning, fine-tuning with early stopping",
        {
            "data.name": "mnist",
            "model.name": "resnet101",
            "train.epochs": 20,
            "train.device": "auto",
            "prune.method": "weight",
            "prune.sparsity": 0.2,
            "finetune.epochs": 15,
            "finetune.patience": 3,
            "sweep.methods": ["weight"],
            "sweep.sparsities": [0.0, 0.2, 0.5, 0.8],
        },
    ),
}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v)


def command(name: str) -> str:
    """The command docs/reference-studies.md gives for ``name``: a ``-S key=value`` per override, lines by section."""
    lines: dict[str, list[str]] = {}
    for k, v in STUDIES[name].overrides.items():
        lines.setdefault(k.split(".")[0], []).append(
            f"-S '{k}={_value(v)}'" if isinstance(v, list) else f"-S {k}={_value(v)}"
        )
    return " \\\n    ".join([f"uv run dvc exp run -n {name}", *(" ".join(s) for s in lines.values())])


def settings(name: str) -> list[str]:
    """The study's overrides as ``key=value`` strings, as ``dvc exp run -S`` takes them."""
    return [f"{k}={_value(v)}" for k, v in STUDIES[name].overrides.items()]


def apply(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``params`` (params.yaml as loaded) with dotted ``overrides`` set, as ``dvc exp run -S`` does."""
    import copy

    out = copy.deepcopy(params)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
