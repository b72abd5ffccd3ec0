"""mnist: the full MNIST (60,000 train / 10,000 test) from its public mirrors.

The four IDX files are downloaded with their published MD5 checksums (the mirrors and
checksums torchvision uses) into ``data/downloads/mnist``. Validation is carved out of the
official training split, stratified with the seed; the official test split is the test
set (``data.test_fraction`` is not used).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prunelab import paths
from prunelab.data import DATASETS
from prunelab.data.download import fetch
from prunelab.data.idx import read_idx
from prunelab.data.spec import DataSpec, Split
from prunelab.data.split import stratified_split
from prunelab.errors import PrunelabError

MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
CLASSES = tuple(str(d) for d in range(10))


def read_split(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise PrunelabError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise PrunelabError(f"{labels_path}: expected {len(images)} labels, got shape {labels.shape}")
    if labels.size and labels.max() >= len(CLASSES):
        raise PrunelabError(f"{labels_path}: label {labels.max()} is outside 0..9")
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def from_files(files: dict[str, Path], cfg, seed: int, name: str = "mnist") -> DataSpec:
    full_train = read_split(files["train_images"], files["train_labels"])
    test = read_split(files["test_images"], files["test_labels"])
    train_idx, val_idx = stratified_split(full_train.labels.numpy(), [cfg.val_fraction], seed)
    pick = lambda idx: Split(full_train.images[idx], full_train.labels[idx])  # noqa: E731
    return DataSpec(name=name, classes=CLASSES, train=pick(torch.from_numpy(train_idx)),
                    val=pick(torch.from_numpy(val_idx)), test=test)


@DATASETS.register("mnist")
def load(cfg, seed: int, mirrors: list[str] | None = None, cache_dir: Path | None = None) -> DataSpec:
    cache_dir = cache_dir or paths.DOWNLOAD_CACHE / "mnist"
    files = {key: fetch(fname, md5, mirrors or MIRRORS, cache_dir) for key, (fname, md5) in FILES.items()}
    return from_files(files, cfg, seed)
