"""Model checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and built-in types only: the model's config (so the
architecture is rebuilt from the registry, not unpickled), its state dict with pruning
made permanent, the masks as bool tensors, and a small ``meta`` dict.

A structurally pruned model (filters removed) has smaller layers than its config builds.
No architecture is stored for it: on load, every Conv, Linear and BatchNorm layer whose
saved weight has another shape is rebuilt at the saved shape (``resize_to``), then the
weights are loaded strictly. The shapes are read from the tensors themselves, so a
checkpoint can never name code to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab import atomic
from prunelab.config import ModelConfig
from prunelab.errors import PrunelabError

FORMAT_VERSION = 1
KEYS = ("format_version", "model_cfg", "input_shape", "num_classes", "state_dict", "masks", "meta")


@dataclass
class Checkpoint:
    model: nn.Module
    model_cfg: ModelConfig
    input_shape: tuple[int, int, int]
    num_classes: int
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # float 0/1, by layer name
    meta: dict[str, Any] = field(default_factory=dict)
    # a baseline's rewind points for iterative pruning (lottery.RewindPoints.as_blob); empty otherwise
    rewind: dict[str, Any] = field(default_factory=dict)


def save(path: str | Path, ckpt: Checkpoint) -> Path:
    if any(hasattr(m, "weight_mask") for m in ckpt.model.modules()):
        raise ValueError("make pruning permanent (masks.make_permanent) before saving")
    blob = {
        "format_version": FORMAT_VERSION,
        "model_cfg": ckpt.model_cfg.as_dict(),
        "input_shape": list(ckpt.input_shape),
        "num_classes": ckpt.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
        "masks": {k: v.detach().cpu().bool() for k, v in ckpt.masks.items()},
        "meta": ckpt.meta,
        "rewind": ckpt.rewind,
    }
    return atomic.write_torch(path, blob)


def load(path: str | Path) -> Checkpoint:
    from prunelab.models import MODELS

    path = Path(path)
    if not path.exists():
        raise PrunelabError(f"checkpoint {path} is missing: run the stage that writes it (dvc repro)")
    blob = atomic.read_torch(path, "a model checkpoint", KEYS)
    if blob.get("format_version") != FORMAT_VERSION:
        raise PrunelabError(f"{path} was written by another prunelab version: rerun its stage")
    try:
        cfg = ModelConfig(**blob["model_cfg"])
        shape, classes = tuple(int(d) for d in blob["input_shape"]), int(blob["num_classes"])
        model = MODELS.get(cfg.name)(cfg, shape, classes)
        resize_to(model, blob["state_dict"], path)
        model.load_state_dict(blob["state_dict"])
        masks = {k: v.float() for k, v in blob["masks"].items()}
        meta = dict(blob["meta"])
        rewind = dict(blob.get("rewind") or {})
    except PrunelabError as exc:  # a config this prunelab refuses (ConfigError), a layer it cannot rebuild
        raise PrunelabError(
            f"{path}: not a checkpoint this prunelab can load ({exc}); {atomic.rerun_hint(path)}"
        ) from None
    except (TypeError, ValueError, RuntimeError, AttributeError, KeyError) as exc:
        raise PrunelabError(
            f"{path}: its contents do not fit a prunelab model ({atomic.reason(exc)}); {atomic.rerun_hint(path)}"
        ) from None
    return Checkpoint(model, cfg, shape, classes, masks, meta, rewind)


def _resized(module: nn.Module, weight: torch.Tensor) -> nn.Module | None:
    """``module`` rebuilt for a saved weight of another shape (same kind, kernel, stride, bias)."""
    bias = getattr(module, "bias", None) is not None
    if isinstance(module, nn.Conv2d) and module.groups == 1 and weight.dim() == 4:
        return nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            bias=bias,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, nn.Linear) and weight.dim() == 2:
        return nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    if isinstance(module, nn.BatchNorm2d) and weight.dim() == 1:
        return nn.BatchNorm2d(weight.shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
    return None


def resize_to(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> None:
    """Rebuild, in place, every layer whose saved weight differs in shape (structurally pruned layers)."""
    for name, module in list(model.named_modules()):
        weight = state_dict.get(f"{name}.weight" if name else "weight")
        if weight is None or getattr(module, "weight", None) is None or module.weight.shape == weight.shape:
            continue
        new = _resized(module, weight)
        if new is None:
            raise PrunelabError(
                f"{path}: layer {name} ({type(module).__name__}) has weight {tuple(weight.shape)}, "
                f"which this prunelab cannot rebuild from {tuple(module.weight.shape)}"
            )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
