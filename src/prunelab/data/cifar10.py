"""cifar10: the standard python distribution (``cifar-10-python.tar.gz``), official train / test split.

Sources: ``data.root`` holding the tarball, or the extracted ``cifar-10-batches-py/``
folder, either inside ``data.root`` or as ``data.root`` itself; with ``data.root`` set the
network is never touched. Otherwise the tarball is downloaded from the authors' site into
the download cache (verified against the tarball's published MD5). The content that is
verified is the seven batch files: each is checked against its published MD5 whether it
is read from a folder or from the tarball's members in memory (nothing is extracted to
disk), so a local tarball repacked or recompressed at any level is accepted while any
changed batch is refused by name. Batches are Python pickles, read with ``safe_pickle`` so a
tampered file cannot run code. Validation is carved out of the 50,000 training images,
stratified with the seed; the official test batch is the test set (``data.test_fraction``
and ``data.image_size`` are not used: the images stay 3 x 32 x 32).
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from prunelab.data import safe_pickle
from prunelab.data.catalog import DATASETS
from prunelab.data.download import verify_bytes
from prunelab.data.sources import RemoteFile, Source, download_all, local_root
from prunelab.data.spec import DataSpec, Split
from prunelab.data.split import stratified_split
from prunelab.errors import PrunelabError

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST, META = "test_batch", "batches.meta"
SOURCE = Source(
    {"archive": RemoteFile(ARCHIVE, "c58f30108f718f92721af3b95e74349a")}, ("https://www.cs.toronto.edu/~kriz/",)
)
BATCH_MD5 = {  # published checksums of the extracted files (as torchvision lists them)
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CLASSES, CHANNELS, SIDE = 10, 3, 32


def _unpickle(blob: bytes, md5: str | None, where: str) -> object:
    return safe_pickle.load(verify_bytes(blob, md5, where), where)


def read_archive(path: Path, batch_md5: dict[str, str]) -> dict[str, object]:
    """Every batch in the tarball, read in one pass without extracting, verified and unpickled."""
    wanted = {f"{FOLDER}/{name}": name for name in (*TRAIN, TEST, META)}
    found: dict[str, object] = {}
    try:
        with tarfile.open(path, "r:*") as tar:  # gzip at any level, or another compression, or none
            for info in tar:
                name = wanted.get(info.name.removeprefix("./"))
                if name is not None and (fh := tar.extractfile(info)) is not None:
                    found[name] = _unpickle(fh.read(), batch_md5.get(name), f"{path}:{FOLDER}/{name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise PrunelabError(f"{path}: truncated or corrupt archive ({exc})") from exc
    if missing := [f"{FOLDER}/{n}" for n in wanted.values() if n not in found]:
        raise PrunelabError(f"{path}: {', '.join(missing)} missing from the archive (not {ARCHIVE}?)")
    return found


def read_folder(folder: Path, batch_md5: dict[str, str]) -> dict[str, object]:
    found = {}
    for name in (*TRAIN, TEST, META):
        if not (path := folder / name).is_file():
            raise PrunelabError(
                f"{path} is missing (the extracted {FOLDER}/ folder holds data_batch_1..5, test_batch and batches.meta)"
            )
        found[name] = _unpickle(path.read_bytes(), batch_md5.get(name), str(path))
    return found


def _fields(obj: object, where: str, keys: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise PrunelabError(f"{where}: not a CIFAR-10 batch (expected a dict, got {type(obj).__name__})")
    fields = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if missing := [k for k in keys if k not in fields]:
        raise PrunelabError(f"{where}: not a CIFAR-10 batch (no {', '.join(missing)})")
    return fields


def read_batch(obj: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch's images as uint8 (N, 3, 32, 32) and labels as int64 (N,), checked."""
    fields = _fields(obj, where, ("data", "labels"))
    data, labels = fields["data"], np.asarray(fields["labels"])
    size = CHANNELS * SIDE * SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise PrunelabError(f"{where}: expected data as uint8 (N, {size}) (R, G, B planes of {SIDE}x{SIDE}), got {got}")
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise PrunelabError(f"{where}: expected {len(data)} integer labels, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= CLASSES):
        raise PrunelabError(
            f"{where}: label {labels.min() if labels.min() < 0 else labels.max()} is outside 0..{CLASSES - 1}"
        )
    return data.reshape(-1, CHANNELS, SIDE, SIDE), labels.astype(np.int64)


def read_classes(obj: object, where: str) -> tuple[str, ...]:
    names = _fields(obj, where, ("label_names",))["label_names"]
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names] if isinstance(names, list) else names
    if not isinstance(names, list) or len(names) != CLASSES or not all(isinstance(n, str) for n in names):
        raise PrunelabError(f"{where}: expected label_names to be a list of {CLASSES} names, got {names!r}")
    return tuple(names)


def _split(batches: list[tuple[np.ndarray, np.ndarray]]) -> Split:
    images, labels = (np.concatenate(parts) for parts in zip(*batches))
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


@DATASETS.register("cifar10")
def load(
    cfg, seed: int, *, source: Source = SOURCE, batch_md5: dict[str, str] = BATCH_MD5, cache: Path | None = None
) -> DataSpec:
    if cfg.root is not None:
        root = local_root(cfg.root)
        if (archive := root / ARCHIVE).is_file():  # its members are the content that is verified
            blobs, prefix = read_archive(archive, batch_md5), f"{archive}:{FOLDER}/"
        elif folder := next((f for f in (root / FOLDER, root) if (f / TRAIN[0]).is_file()), None):
            blobs, prefix = read_folder(folder, batch_md5), f"{folder}/"
        else:
            raise PrunelabError(
                f"data.root {str(cfg.root)!r}: expected {ARCHIVE} or the extracted {FOLDER}/ "
                "folder (data_batch_1..5, test_batch, batches.meta) in it, or to be that folder"
            )
    else:
        archive = download_all(source, "cifar10", cache)["archive"]
        blobs, prefix = read_archive(archive, batch_md5), f"{archive}:{FOLDER}/"
    full = _split([read_batch(blobs[name], prefix + name) for name in TRAIN])
    test = _split([read_batch(blobs[TEST], prefix + TEST)])
    train_idx, val_idx = (torch.from_numpy(i) for i in stratified_split(full.labels.numpy(), [cfg.val_fraction], seed))
    return DataSpec(
        name="cifar10",
        classes=read_classes(blobs[META], prefix + META),
        train=Split(full.images[train_idx], full.labels[train_idx]),
        val=Split(full.images[val_idx], full.labels[val_idx]),
        test=test,
    )
