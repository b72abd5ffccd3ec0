"""Model checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and built-in types only: the model's config (so the
architecture is rebuilt from the registry, not unpickled), its state dict with pruning
made permanent, the masks as bool tensors, and a small ``meta`` dict.
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


@dataclass
class Checkpoint:
    model: nn.Module
    model_cfg: ModelConfig
    input_shape: tuple[int, int, int]
    num_classes: int
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # float 0/1, by layer name
    meta: dict[str, Any] = field(default_factory=dict)


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
    }
    return atomic.write_torch(path, blob)


def load(path: str | Path) -> Checkpoint:
    from prunelab.models import MODELS

    path = Path(path)
    if not path.exists():
        raise PrunelabError(f"checkpoint {path} is missing: run the stage that writes it (dvc repro)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format_version") != FORMAT_VERSION:
        raise PrunelabError(f"{path} was written by another prunelab version: rerun its stage")
    cfg = ModelConfig(**blob["model_cfg"])
    shape, classes = tuple(blob["input_shape"]), int(blob["num_classes"])
    model = MODELS.get(cfg.name)(cfg, shape, classes)
    model.load_state_dict(blob["state_dict"])
    masks = {k: v.float() for k, v in blob["masks"].items()}
    return Checkpoint(model, cfg, shape, classes, masks, dict(blob["meta"]))
