"""Datasets: the stratified split, the IDX reader, MNIST from files and from a local mirror."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelab.config import DataConfig
from prunelab.data import DATASETS, load_prepared, save_prepared
from prunelab.data import mnist
from prunelab.data.download import fetch
from prunelab.data.idx import read_idx, write_idx
from prunelab.data.split import stratified_split
from prunelab.errors import PrunelabError


# -- split --------------------------------------------------------------------------------

def test_split_is_disjoint_complete_stratified_and_seeded():
    labels = np.repeat(np.arange(5), [100, 80, 60, 40, 20])
    parts = stratified_split(labels, [0.1, 0.2], seed=7)
    joined = np.concatenate(parts)
    assert len(joined) == len(labels) and len(np.unique(joined)) == len(labels)
    for part, frac in zip(parts[1:], [0.1, 0.2]):
        for c, n in zip(range(5), [100, 80, 60, 40, 20]):
            assert (labels[part] == c).sum() == round(frac * n)
    again = stratified_split(labels, [0.1, 0.2], seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = stratified_split(labels, [0.1, 0.2], seed=8)
    assert not np.array_equal(parts[1], other[1])


def test_mnist5k_is_real_offline_and_stratified():
    spec = DATASETS.get("mnist-5k")(DataConfig(), seed=0)
    assert (len(spec.train), len(spec.val), len(spec.test)) == (3500, 500, 1000)
    assert spec.input_shape == (1, 28, 28) and spec.num_classes == 10
    assert spec.train.images.dtype == torch.uint8 and int(spec.train.images.max()) == 255
    assert torch.bincount(spec.test.labels).tolist() == [100] * 10
    assert torch.bincount(spec.val.labels).tolist() == [50] * 10


def test_prepared_dataset_roundtrip(tmp_path, tiny_data):
    path = save_prepared(tiny_data, tmp_path / "d.pt")
    torch.load(path, weights_only=True)
    back = load_prepared(path)
    assert back.classes == tiny_data.classes and back.name == "toy"
    assert torch.equal(back.train.images, tiny_data.train.images)
    assert torch.equal(back.test.labels, tiny_data.test.labels)


def test_missing_prepared_dataset_says_which_stage(tmp_path):
    with pytest.raises(PrunelabError, match="run the fetch_data stage"):
        load_prepared(tmp_path / "nope.pt")


# -- IDX ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_roundtrip(tmp_path, name):
    arr = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, arr)
    assert np.array_equal(read_idx(tmp_path / name), arr)


def test_idx_header_is_the_published_format(tmp_path):
    write_idx(tmp_path / "l", np.array([3, 1, 4], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_idx_errors_name_the_file(tmp_path):
    write_idx(tmp_path / "ok", np.zeros((4, 2, 2), dtype=np.uint8))
    data = (tmp_path / "ok").read_bytes()
    (tmp_path / "short").write_bytes(data[:-3])
    with pytest.raises(PrunelabError, match=r"short: IDX data is 13 bytes, expected 16"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x1f\x8b" + data[2:])
    with pytest.raises(PrunelabError, match="magic: not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(PrunelabError, match="bad.gz: cannot read IDX"):
        read_idx(tmp_path / "bad.gz")


def write_fake_mnist(folder: Path, n_train=100, n_test=20) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, arr in arrays.items():
        files[key] = folder / mnist.FILES[key][0]
        write_idx(files[key], arr)
    return files


def test_mnist_from_idx_files_keeps_official_test_split(tmp_path):
    files = write_fake_mnist(tmp_path)
    spec = mnist.from_files(files, DataConfig(val_fraction=0.1), seed=0)
    assert (len(spec.train), len(spec.val), len(spec.test)) == (90, 10, 20)
    assert spec.input_shape == (1, 28, 28)
    assert torch.equal(spec.test.images[:, 0], torch.from_numpy(read_idx(files["test_images"])))
    assert torch.bincount(spec.val.labels, minlength=10).tolist() == [1] * 10  # stratified


def test_mnist_rejects_labels_out_of_range(tmp_path):
    files = write_fake_mnist(tmp_path)
    write_idx(files["test_labels"], np.full(20, 12, dtype=np.uint8))
    with pytest.raises(PrunelabError, match="label 12 is outside 0..9"):
        mnist.from_files(files, DataConfig(), seed=0)


# -- download from a local mirror ------------------------------------------------------------

@contextlib.contextmanager
def local_mirror(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_mnist_downloads_verifies_and_loads(tmp_path, monkeypatch):
    served = write_fake_mnist(tmp_path / "mirror")
    monkeypatch.setattr(mnist, "FILES", {k: (p.name, md5(p)) for k, p in served.items()})
    cache = tmp_path / "cache"
    with local_mirror(tmp_path / "mirror") as url:
        spec = mnist.load(DataConfig(), seed=0, mirrors=["http://127.0.0.1:1/", url], cache_dir=cache)
        assert len(spec.test) == 20
        # a second load is served from the verified cache (the mirror list is unreachable)
        mnist.load(DataConfig(), seed=0, mirrors=["http://127.0.0.1:1/"], cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in served.values())


def test_checksum_mismatch_fails_and_leaves_nothing(tmp_path):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.bin").write_bytes(b"not what was published")
    cache = tmp_path / "cache"
    with local_mirror(tmp_path / "mirror") as url:
        with pytest.raises(PrunelabError, match=r"f\.bin.*checksum mismatch.*expected 0{32}"):
            fetch("f.bin", "0" * 32, [url], cache)
    assert list(cache.iterdir()) == []


def test_corrupted_cached_file_is_fetched_again(tmp_path):
    (tmp_path / "mirror").mkdir()
    good = tmp_path / "mirror" / "f.bin"
    good.write_bytes(b"published bytes")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "f.bin").write_bytes(b"published byt")  # truncated earlier download
    with local_mirror(tmp_path / "mirror") as url:
        got = fetch("f.bin", md5(good), [url], cache)
    assert got.read_bytes() == b"published bytes"


def test_unreachable_mirrors_give_a_clear_error(tmp_path):
    with pytest.raises(PrunelabError, match="could not download f.bin"):
        fetch("f.bin", "0" * 32, ["http://127.0.0.1:1/"], tmp_path)
    assert list(tmp_path.iterdir()) == []
