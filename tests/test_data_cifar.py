"""cifar10: small files in the real python-pickle distribution format, read through the real loader."""

import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from mirror import local_mirror, md5

from prunelab.config import DataConfig
from prunelab.data import DATASETS, safe_pickle
from prunelab.data.cifar10 import ARCHIVE, FOLDER, TEST, TRAIN, load
from prunelab.data.sources import RemoteFile, Source
from prunelab.errors import PrunelabError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_CLASS = 2  # images per class per batch: 20 per training batch, 100 training images in all
UNREACHABLE = "http://127.0.0.1:1/"


@dataclass
class Cifar:
    tar_dir: Path  # holds only the tarball
    ext_dir: Path  # holds the extracted cifar-10-batches-py/ folder
    batch_md5: dict
    tar_md5: str
    train_images: np.ndarray  # (100, 3, 32, 32): the 5 training batches in order
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def folder(self) -> Path:
        return self.ext_dir / FOLDER

    @property
    def tarball(self) -> Path:
        return self.tar_dir / ARCHIVE

    def source(self, mirror: str = UNREACHABLE, md5: str | bool | None = True) -> Source:
        return Source({"archive": RemoteFile(ARCHIVE, self.tar_md5 if md5 is True else md5)}, (mirror,))


def dump(path: Path, obj: object) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def batch(images: np.ndarray, labels: np.ndarray, label: str, bytes_keys: bool = False) -> dict:
    d = {
        "batch_label": label,
        "labels": [int(x) for x in labels],
        "data": images.reshape(len(images), -1),
        "filenames": [f"{label.replace(' ', '_')}_{i}.png" for i in range(len(images))],
    }
    return {k.encode(): v for k, v in d.items()} if bytes_keys else d


def make_tarball(folder: Path, out_dir: Path, skip: str | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out_dir / ARCHIVE, "w:gz") as tar:
        for f in sorted(folder.iterdir()):
            if f.name != skip:
                tar.add(f, arcname=f"{FOLDER}/{f.name}")
    return out_dir / ARCHIVE


@pytest.fixture
def cifar(tmp_path) -> Cifar:
    rng = np.random.default_rng(0)
    n_train = 5 * 10 * PER_CLASS
    images = rng.integers(0, 256, (n_train + 10 * PER_CLASS, 3, 32, 32), dtype=np.uint8)
    images[0, 0], images[0, 1], images[0, 2] = 200, np.arange(32)[None, :], np.arange(32)[:, None]
    images[:, 2, 31, 31] = np.arange(len(images))  # an id in the last byte, to match images after the split
    labels = np.concatenate([rng.permutation(np.repeat(np.arange(10), PER_CLASS)) for _ in range(6)])
    folder = tmp_path / "ext" / FOLDER
    folder.mkdir(parents=True)
    per = 10 * PER_CLASS
    for i, name in enumerate(TRAIN):
        part = slice(i * per, (i + 1) * per)
        dump(folder / name, batch(images[part], labels[part], f"training batch {i + 1} of 5", bytes_keys=i == 4))
    dump(folder / TEST, batch(images[n_train:], labels[n_train:], "testing batch 1 of 1"))
    dump(folder / "batches.meta", {"num_cases_per_batch": per, "label_names": NAMES, "num_vis": 3072})
    (folder / "readme.html").write_text("<html></html>")  # the real archive has one too
    tarball = make_tarball(folder, tmp_path / "tar")
    return Cifar(
        tmp_path / "tar",
        tmp_path / "ext",
        {f.name: md5(f) for f in folder.iterdir()},
        md5(tarball),
        images[:n_train],
        labels[:n_train],
        images[n_train:],
        labels[n_train:],
    )


def cfg(root: Path | None = None, val_fraction: float = 0.2) -> DataConfig:
    return DataConfig(name="cifar10", root=None if root is None else str(root), val_fraction=val_fraction)


def assert_same(a, b) -> None:
    assert a.name == b.name and a.classes == b.classes
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).images, getattr(b, part).images)
        assert torch.equal(getattr(a, part).labels, getattr(b, part).labels)


# -- the three local layouts --------------------------------------------------------------


def test_local_layouts_agree_keep_pixels_and_never_touch_the_network(cifar):
    requests: list = []
    with local_mirror(cifar.tar_dir, requests=requests) as url:
        specs = [
            load(cfg(root), seed=3, source=cifar.source(url), batch_md5=cifar.batch_md5)
            for root in (cifar.tar_dir, cifar.ext_dir, cifar.folder)
        ]
    assert requests == []
    for other in specs[1:]:
        assert_same(specs[0], other)
    spec = specs[0]
    assert spec.name == "cifar10" and spec.classes == tuple(NAMES) and spec.input_shape == (3, 32, 32)
    assert spec.train.images.dtype == torch.uint8 and spec.train.labels.dtype == torch.int64
    assert (len(spec.train), len(spec.val), len(spec.test)) == (80, 20, 20)
    # official test batch kept, in order
    assert torch.equal(spec.test.images, torch.from_numpy(cifar.test_images))
    assert torch.equal(spec.test.labels, torch.from_numpy(cifar.test_labels))
    # train + val are the 100 training images, disjoint, each with its own label
    ids = [s.images[:, 2, 31, 31].long() for s in (spec.train, spec.val)]
    assert sorted(torch.cat(ids).tolist()) == list(range(100))
    for s, idx in zip((spec.train, spec.val), ids):
        assert torch.equal(s.images, torch.from_numpy(cifar.train_images)[idx])
        assert torch.equal(s.labels, torch.from_numpy(cifar.train_labels)[idx])
    assert torch.bincount(spec.val.labels, minlength=10).tolist() == [2] * 10  # stratified
    # pixel layout: each row of 3072 bytes is the R, then G, then B plane of 32 x 32, row-major
    first = spec.train.images[ids[0] == 0] if (ids[0] == 0).any() else spec.val.images[ids[1] == 0]
    assert (first[0, 0] == 200).all()
    assert torch.equal(first[0, 1, 5], torch.arange(32, dtype=torch.uint8))  # G varies along x
    assert torch.equal(first[0, 2, :31, 7], torch.arange(31, dtype=torch.uint8))  # B varies along y
    # seeded split
    again = load(cfg(cifar.folder), seed=3, batch_md5=cifar.batch_md5)
    assert_same(spec, again)
    other = load(cfg(cifar.folder), seed=4, batch_md5=cifar.batch_md5)
    assert not torch.equal(other.val.images, spec.val.images)
    assert torch.equal(other.test.images, spec.test.images)


def test_registered_and_missing_files_are_explained(cifar, tmp_path):
    assert DATASETS.get("cifar10") is load
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrunelabError, match=r"empty.*expected cifar-10-python\.tar\.gz or the extracted"):
        load(cfg(tmp_path / "empty"), seed=0)
    (cifar.folder / TEST).unlink()
    with pytest.raises(PrunelabError, match=r"test_batch is missing"):
        load(cfg(cifar.folder), seed=0, batch_md5=cifar.batch_md5)
    make_tarball(cifar.folder, tmp_path / "partial")  # without test_batch
    with pytest.raises(PrunelabError, match=rf"{ARCHIVE}: {FOLDER}/test_batch missing from the archive"):
        load(cfg(tmp_path / "partial"), seed=0, source=cifar.source(md5=None), batch_md5=cifar.batch_md5)


# -- download -----------------------------------------------------------------------------


def test_downloads_verifies_and_reuses_the_cache(cifar, tmp_path):
    cache = tmp_path / "cache"
    with local_mirror(cifar.tar_dir) as url:
        spec = load(cfg(), seed=1, source=cifar.source(url), batch_md5=cifar.batch_md5, cache=cache)
    assert md5(cache / ARCHIVE) == cifar.tar_md5
    assert_same(spec, load(cfg(cifar.ext_dir), seed=1, batch_md5=cifar.batch_md5))
    offline = load(cfg(), seed=1, source=cifar.source(UNREACHABLE), batch_md5=cifar.batch_md5, cache=cache)
    assert_same(spec, offline)


# -- corrupt input ------------------------------------------------------------------------


def test_tarball_checksum_mismatch_served_and_local(cifar, tmp_path):
    cache = tmp_path / "cache"
    served = pytest.raises(PrunelabError, match=r"(?s)cifar-10-python\.tar\.gz.*checksum mismatch")
    with local_mirror(cifar.tar_dir) as url, served:
        load(cfg(), seed=0, source=cifar.source(url, md5="0" * 32), batch_md5=cifar.batch_md5, cache=cache)
    assert not (cache / ARCHIVE).exists() and not any(cache.iterdir())  # no file, no partial download


@pytest.mark.parametrize("wrapping", ["gzip level 1", "gzip level 9, other mtime", "plain tar"])
def test_a_local_tarball_recompressed_is_genuine_by_its_batches(cifar, tmp_path, wrapping):
    """The content is the seven batch files (each has a published MD5), not the gzip around the tar."""
    import gzip

    tar = gzip.decompress(cifar.tarball.read_bytes())
    blob = {
        "gzip level 1": gzip.compress(tar, compresslevel=1),
        "gzip level 9, other mtime": gzip.compress(tar, compresslevel=9, mtime=42),
        "plain tar": tar,
    }[wrapping]
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / ARCHIVE).write_bytes(blob)
    assert md5(tmp_path / "copy" / ARCHIVE) != cifar.tar_md5
    assert_same(
        load(cfg(tmp_path / "copy"), seed=0, source=cifar.source(), batch_md5=cifar.batch_md5),
        load(cfg(cifar.folder), seed=0, batch_md5=cifar.batch_md5),
    )


def test_truncated_tarball_and_bad_batch_checksum(cifar, tmp_path):
    blob = cifar.tarball.read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / ARCHIVE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PrunelabError, match=rf"cut/{ARCHIVE}: truncated or corrupt archive"):
        load(cfg(tmp_path / "cut"), seed=0, source=cifar.source(md5=None), batch_md5=cifar.batch_md5)
    good = (cifar.folder / "data_batch_3").read_bytes()
    (cifar.folder / "data_batch_3").write_bytes(good[:-10] + bytes(10))
    with pytest.raises(PrunelabError, match=r"data_batch_3: checksum mismatch"):
        load(cfg(cifar.ext_dir), seed=0, batch_md5=cifar.batch_md5)
    make_tarball(cifar.folder, tmp_path / "repacked")  # a member is checked too, even in an unchecked archive
    with pytest.raises(PrunelabError, match=rf"repacked/{ARCHIVE}:{FOLDER}/data_batch_3: checksum mismatch"):
        load(cfg(tmp_path / "repacked"), seed=0, source=cifar.source(md5=None), batch_md5=cifar.batch_md5)


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["folder", "tarball"])
def test_malicious_pickle_is_refused_and_never_runs(cifar, tmp_path, layout):
    marker = tmp_path / "pwned"
    dump(cifar.folder / "data_batch_1", Evil(marker))
    batch_md5 = {**cifar.batch_md5, "data_batch_1": md5(cifar.folder / "data_batch_1")}
    root = cifar.ext_dir if layout == "folder" else make_tarball(cifar.folder, tmp_path / "evil").parent
    with pytest.raises(PrunelabError, match=r"data_batch_1: refused to load (os|posix) system"):
        load(cfg(root), seed=0, source=cifar.source(md5=None), batch_md5=batch_md5)
    assert not marker.exists()


def test_wrong_shape_and_not_a_pickle(cifar):
    dump(cifar.folder / "data_batch_2", {"data": np.zeros((20, 100), np.uint8), "labels": [0] * 20})
    (cifar.folder / "data_batch_4").write_bytes(b"\x80\x02}q\x00(X")  # a cut-off pickle
    no_md5: dict = {}
    with pytest.raises(PrunelabError, match=r"data_batch_4: not a readable pickle \(truncated or wrong format\?\)"):
        load(cfg(cifar.folder), seed=0, batch_md5=no_md5)
    (cifar.folder / "data_batch_4").write_bytes((cifar.folder / "data_batch_3").read_bytes())
    with pytest.raises(PrunelabError, match=r"data_batch_2: expected data as uint8 \(N, 3072\).*got uint8 \(20, 100\)"):
        load(cfg(cifar.folder), seed=0, batch_md5=no_md5)
    dump(cifar.folder / "data_batch_2", batch(cifar.train_images[:20], np.full(20, 10), "bad labels"))
    with pytest.raises(PrunelabError, match=r"data_batch_2: label 10 is outside 0..9"):
        load(cfg(cifar.folder), seed=0, batch_md5=no_md5)


def test_safe_pickle_reads_python2_era_numpy_names():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    blob = pickle.dumps({b"data": arr}, protocol=2)
    legacy = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # how the CIFAR files name it
    for data in (blob, legacy):
        out = safe_pickle.load(data, "x")
        assert np.array_equal(out[b"data"], arr) and out[b"data"].dtype == np.uint8
    # a Python 2 cPickle of {'data': array([1, 2, 255], uint8)}: py2 str for keys and bytes, no _codecs
    py2 = (
        b"\x80\x02}q\x00U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00"
        b"\x85U\x01b\x87Rq\x04(K\x01K\x03\x85cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNN"
        b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x03\x01\x02\xfftbs."
    )
    out = safe_pickle.load(py2, "py2")
    assert list(out) == ["data"] and out["data"].tolist() == [1, 2, 255] and out["data"].dtype == np.uint8
    with pytest.raises(PrunelabError, match=r"x: refused to load builtins eval"):
        safe_pickle.load(b"\x80\x02cbuiltins\neval\nq\x00.", "x")
