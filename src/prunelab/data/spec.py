"""DataSpec: a whole dataset held in memory as tensors, and its file format.

Images are kept as uint8 (N, C, H, W) — 4x smaller than float on disk and in memory —
and normalised per batch on the fly with the training split's mean and std. The file is
a plain dict of tensors and built-in types so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from prunelab import atomic
from prunelab.errors import PrunelabError

FORMAT_VERSION = 1
NORMALISATION_CHUNK = 1024  # images counted at a time: a bounded working set (51 MB at 224 px) however large the split


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be (N,) matching images")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataSpec:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training split, in [0, 1] units.

        uint8 images are counted per value in chunks, and mean and std computed exactly
        from the counts: no float64 copy of the split (16x its size: 16 GiB for a 1 GiB
        image set, per rank), and the same float32 values as the float64 reduction gives.
        """
        images = self.train.images
        if images.dtype != torch.uint8:
            x = images.to(torch.float64) / 255.0
            mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-6)
            return mean.to(torch.float32), std.to(torch.float32)
        counts = torch.zeros(images.shape[1], 256, dtype=torch.int64)
        for start in range(0, images.shape[0], NORMALISATION_CHUNK):
            chunk = images[start : start + NORMALISATION_CHUNK]
            for channel in range(images.shape[1]):
                counts[channel] += torch.bincount(chunk[:, channel].reshape(-1), minlength=256)
        means, stds = [], []
        for row in counts.tolist():
            n = sum(row)
            total = sum(v * c for v, c in enumerate(row))
            squares = sum(v * v * c for v, c in enumerate(row))
            mean = Fraction(total, n * 255)
            var = Fraction(squares * n - total * total, n * max(n - 1, 1) * 255 * 255)
            means.append(float(mean))
            stds.append(max(math.sqrt(var), 1e-6))
        return torch.tensor(means, dtype=torch.float32), torch.tensor(stds, dtype=torch.float32)

    def summary(self) -> dict[str, object]:
        return {
            "dataset": self.name,
            "classes": len(self.classes),
            "input_shape": list(self.input_shape),
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
        }


def save_prepared(spec: DataSpec, path: str | Path) -> Path:
    blob = {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "classes": list(spec.classes),
        **{
            f"{part}_{kind}": getattr(getattr(spec, part), kind)
            for part in ("train", "val", "test")
            for kind in ("images", "labels")
        },
    }
    return atomic.write_torch(path, blob)


def load_prepared(path: str | Path) -> DataSpec:
    path = Path(path)
    if not path.exists():
        raise PrunelabError(f"prepared dataset {path} is missing: run the fetch_data stage (dvc repro fetch_data)")
    splits = [f"{part}_{kind}" for part in ("train", "val", "test") for kind in ("images", "labels")]
    # memory-mapped: the ranks of a multi-process stage share one copy of the images
    blob = atomic.read_torch(path, "a prepared dataset", ("format_version", "name", "classes", *splits), mmap=True)
    if blob.get("format_version") != FORMAT_VERSION:
        raise PrunelabError(f"{path} was written by another prunelab version: rerun fetch_data")
    parts = {part: Split(blob[f"{part}_images"], blob[f"{part}_labels"]) for part in ("train", "val", "test")}
    if not all(isinstance(t, torch.Tensor) for s in parts.values() for t in (s.images, s.labels)):
        raise PrunelabError(f"{path}: not a prepared dataset (its splits are not tensors); rerun fetch_data")
    return DataSpec(name=blob["name"], classes=tuple(blob["classes"]), **parts)
