"""mnist and fashion-mnist: the four standard IDX files, official train / test split.

Sources: ``data.root`` holding the four files in any genuine form: the published
``*-ubyte.gz``, the same data recompressed at any level, or extracted (``*-ubyte``, or
``*.idx3-ubyte`` as some distributions name them), directly or in torchvision's
``<Name>/raw`` layout; otherwise the public mirrors (the ones torchvision uses). What is
verified is the content: the MD5 of the decompressed IDX data, which is published too
(a byte-identical published .gz is accepted by its own MD5 without decompressing).
Validation is carved out of the official training split, stratified with the seed; the
official test split is the test set (``data.test_fraction`` is not used).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from prunelab.data.catalog import DATASETS
from prunelab.data.idx import read_idx
from prunelab.data.sources import RemoteFile, Source, download_all, local_file, local_root
from prunelab.data.spec import DataSpec, Split
from prunelab.data.split import stratified_split
from prunelab.errors import PrunelabError

KEYS = ("train_images", "train_labels", "test_images", "test_labels")
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _source(mirrors: list[str], md5s: list[str], content_md5s: list[str]) -> Source:
    files = {
        k: RemoteFile(f"{stem}.gz", md5, content, (stem, stem.replace("-idx", ".idx")))
        for k, stem, md5, content in zip(KEYS, STEMS, md5s, content_md5s)
    }
    return Source(files, tuple(mirrors))


# MD5s of the published .gz files, then of the IDX data inside them (as torchvision and
# the datasets' own READMEs list them)
MNIST = _source(
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    [
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ],
    [
        "6bbc9ace898e44ae57da46a324031adb",
        "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea",
        "27ae3e4e09519cfbb04c329615203637",
    ],
)
FASHION_MNIST = _source(
    ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    [
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ],
    [
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ],
)
DIGITS = tuple(str(d) for d in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_split(images_path: Path, labels_path: Path, classes: int) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise PrunelabError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise PrunelabError(f"{labels_path}: expected {len(images)} labels, got shape {labels.shape}")
    if labels.size and labels.max() >= classes:
        raise PrunelabError(f"{labels_path}: label {labels.max()} is outside 0..{classes - 1}")
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def from_files(files: dict[str, Path], cfg, seed: int, name: str, classes: tuple[str, ...]) -> DataSpec:
    full_train = read_split(files["train_images"], files["train_labels"], len(classes))
    test = read_split(files["test_images"], files["test_labels"], len(classes))
    train_idx, val_idx = stratified_split(full_train.labels.numpy(), [cfg.val_fraction], seed)
    pick = lambda idx: Split(full_train.images[idx], full_train.labels[idx])  # noqa: E731
    return DataSpec(
        name=name,
        classes=classes,
        train=pick(torch.from_numpy(train_idx)),
        val=pick(torch.from_numpy(val_idx)),
        test=test,
    )


def load(
    cfg,
    seed: int,
    *,
    name: str,
    source: Source,
    classes: tuple[str, ...],
    subdirs: tuple[str, ...],
    cache: Path | None = None,
) -> DataSpec:
    if cfg.root is not None:
        root = local_root(cfg.root)
        files = {key: local_file(root, f, subdirs) for key, f in source.files.items()}
    else:
        files = download_all(source, name, cache)
    return from_files(files, cfg, seed, name, classes)


DATASETS.register("mnist")(partial(load, name="mnist", source=MNIST, classes=DIGITS, subdirs=("", "raw", "MNIST/raw")))
DATASETS.register("fashion-mnist")(
    partial(load, name="fashion-mnist", source=FASHION_MNIST, classes=FASHION, subdirs=("", "raw", "FashionMNIST/raw"))
)
