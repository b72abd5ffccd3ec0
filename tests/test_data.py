"""Datasets: the split, the prepared file, the IDX reader, (Fashion-)MNIST from a folder or a mirror, downloads."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from mirror import local_mirror, md5

from prunelab.config import DataConfig
from prunelab.data import DATASETS, idx_datasets, load_prepared, save_prepared
from prunelab.data.download import fetch
from prunelab.data.idx import read_idx, write_idx
from prunelab.data.sources import RemoteFile, Source
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
    with pytest.raises(PrunelabError, match="magic: cannot read IDX file"):  # gzip's magic, not gzip data
        read_idx(tmp_path / "magic")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(PrunelabError, match=r"bad\.gz: cannot read IDX"):
        read_idx(tmp_path / "bad.gz")


def write_fake_mnist(folder: Path, n_train=100, n_test=20, gz: bool = True) -> dict[str, Path]:
    """The four IDX files in the published format and names (gzip-compressed or extracted)."""
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, stem in zip(idx_datasets.KEYS, idx_datasets.STEMS):
        files[key] = folder / (stem + (".gz" if gz else ""))
        write_idx(files[key], arrays[key])
    return files


def source_for(files: dict[str, Path], mirrors=("http://127.0.0.1:1/",)) -> Source:
    """The published layout with the checksums of our generated files: of each .gz, and of its IDX data."""

    def remote(path: Path) -> RemoteFile:
        stem = path.name.removesuffix(".gz")
        return RemoteFile(
            path.name, md5(path), md5(gzip.decompress(path.read_bytes())), (stem, stem.replace("-idx", ".idx"))
        )

    return Source({k: remote(p) for k, p in files.items()}, tuple(mirrors))


def load_idx(cfg, source, **kw):
    return idx_datasets.load(
        cfg, 0, name="mnist", source=source, classes=idx_datasets.DIGITS, subdirs=("", "raw", "MNIST/raw"), **kw
    )


def test_mnist_from_idx_files_keeps_official_test_split(tmp_path):
    files = write_fake_mnist(tmp_path)
    spec = idx_datasets.from_files(files, DataConfig(val_fraction=0.1), 0, "mnist", idx_datasets.DIGITS)
    assert (len(spec.train), len(spec.val), len(spec.test)) == (90, 10, 20)
    assert spec.input_shape == (1, 28, 28)
    assert torch.equal(spec.test.images[:, 0], torch.from_numpy(read_idx(files["test_images"])))
    assert torch.bincount(spec.val.labels, minlength=10).tolist() == [1] * 10  # stratified


def test_mnist_rejects_labels_out_of_range(tmp_path):
    files = write_fake_mnist(tmp_path)
    write_idx(files["test_labels"], np.full(20, 12, dtype=np.uint8))
    with pytest.raises(PrunelabError, match=r"label 12 is outside 0\.\.9"):
        idx_datasets.from_files(files, DataConfig(), 0, "mnist", idx_datasets.DIGITS)


@pytest.mark.parametrize("layout", ["", "raw", "MNIST/raw"])
def test_mnist_from_data_root_touches_no_network(tmp_path, layout):
    gz = write_fake_mnist(tmp_path / "root" / layout)
    write_fake_mnist(tmp_path / "flat", gz=False)
    requests: list = []
    with local_mirror(tmp_path / "root", requests=requests) as url:
        from_gz = load_idx(DataConfig(name="mnist", root=str(tmp_path / "root")), source_for(gz, [url]))
        from_flat = load_idx(DataConfig(name="mnist", root=str(tmp_path / "flat")), source_for(gz, [url]))
    assert requests == []
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(from_gz, part).images, getattr(from_flat, part).images)
    assert not (tmp_path / "data").exists()  # no download cache was created


@pytest.mark.parametrize(
    "form",
    [
        "gzip level 1",
        "gzip level 9 with a name and mtime",
        "extracted",
        "extracted, dotted names",
        "dotted names, gzipped again",
    ],
)
def test_any_genuine_copy_is_accepted_whatever_its_wrapping(tmp_path, form):
    published = write_fake_mnist(tmp_path / "published")
    source = source_for(published)
    root = tmp_path / "copy"
    root.mkdir()
    for path in published.values():
        data = gzip.decompress(path.read_bytes())
        stem = path.name.removesuffix(".gz")
        dotted = stem.replace("-idx", ".idx")
        target, blob = {
            "gzip level 1": (path.name, gzip.compress(data, compresslevel=1)),
            "gzip level 9 with a name and mtime": (path.name, gzip.compress(data, compresslevel=9, mtime=123456)),
            "extracted": (stem, data),
            "extracted, dotted names": (dotted, data),
            "dotted names, gzipped again": (dotted + ".gz", gzip.compress(data, compresslevel=6)),
        }[form]
        (root / target).write_bytes(blob)
    if form.startswith("gzip"):  # a different wrapper: the .gz's own checksum no longer matches
        assert md5(root / published["train_images"].name) != source.files["train_images"].md5
    copy = load_idx(DataConfig(name="mnist", root=str(root)), source)
    original = load_idx(DataConfig(name="mnist", root=str(tmp_path / "published")), source)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(copy, part).images, getattr(original, part).images)


@pytest.mark.parametrize("gz", [True, False])
def test_a_copy_whose_content_differs_is_refused_by_name(tmp_path, gz):
    source = source_for(write_fake_mnist(tmp_path / "published"))
    files = write_fake_mnist(tmp_path / "root", gz=gz)
    data = read_idx(files["train_images"]).copy()
    data[0, 0, 0] ^= 1  # one pixel of one image
    write_idx(files["train_images"], data)
    name = files["train_images"].name.replace(".", r"\.")
    with pytest.raises(PrunelabError, match=rf"{name}: content checksum mismatch: the data's md5 is [0-9a-f]{{32}}"):
        load_idx(DataConfig(name="mnist", root=str(tmp_path / "root")), source)


def test_a_truncated_gzip_copy_is_refused_by_name(tmp_path):
    source = source_for(write_fake_mnist(tmp_path / "published"))
    files = write_fake_mnist(tmp_path / "root")
    blob = files["test_labels"].read_bytes()
    files["test_labels"].write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PrunelabError, match=r"t10k-labels-idx1-ubyte\.gz: truncated or corrupt gzip"):
        load_idx(DataConfig(name="mnist", root=str(tmp_path / "root")), source)


def test_published_content_checksums_are_the_datasets_own():
    """The decompressed IDX files' MD5s as the publishers list them (Fashion-MNIST's README; MNIST's
    as torchvision-era loaders list them): a typo here would refuse every genuine copy."""
    content = {k: f.content_md5 for k, f in idx_datasets.FASHION_MNIST.files.items()}
    assert content["train_images"] == "f4a8712d7a061bf5bd6d2ca38dc4d50a"
    assert idx_datasets.MNIST.files["train_images"].content_md5 == "6bbc9ace898e44ae57da46a324031adb"
    for source in (idx_datasets.MNIST, idx_datasets.FASHION_MNIST):
        assert len({f.content_md5 for f in source.files.values()} | {f.md5 for f in source.files.values()}) == 8


def test_local_file_with_wrong_checksum_is_refused(tmp_path):
    files = write_fake_mnist(tmp_path / "root")
    source = source_for(files)
    files["train_labels"].write_bytes(gzip.compress(b"tampered"))
    with pytest.raises(
        PrunelabError, match=r"train-labels-idx1-ubyte\.gz: content checksum mismatch.*expected [0-9a-f]{32}"
    ):
        load_idx(DataConfig(name="mnist", root=str(tmp_path / "root")), source)


def test_data_root_missing_files_or_folder_is_a_clear_error(tmp_path):
    files = write_fake_mnist(tmp_path / "root")
    source = source_for(files)
    files["test_images"].unlink()
    with pytest.raises(
        PrunelabError,
        match=r"t10k-images-idx3-ubyte\.gz or t10k-images-idx3-ubyte or .*t10k-images\.idx3-ubyte\.gz not found",
    ):
        load_idx(DataConfig(name="mnist", root=str(tmp_path / "root")), source)
    with pytest.raises(PrunelabError, match=r"data.root '.*nowhere' does not exist"):
        load_idx(DataConfig(name="mnist", root=str(tmp_path / "nowhere")), source)


def test_fashion_mnist_is_registered_with_its_own_checksums_and_classes():
    assert "fashion-mnist" in DATASETS.names()
    assert idx_datasets.FASHION_MNIST.files["train_images"].md5 != idx_datasets.MNIST.files["train_images"].md5
    assert len(idx_datasets.FASHION) == 10 and idx_datasets.FASHION[9] == "Ankle boot"


# -- download from a local mirror ------------------------------------------------------------


def test_mnist_downloads_verifies_and_loads(tmp_path):
    served = write_fake_mnist(tmp_path / "mirror")
    cache = tmp_path / "cache"
    with local_mirror(tmp_path / "mirror") as url:
        spec = load_idx(DataConfig(), source_for(served, ["http://127.0.0.1:1/", url]), cache=cache)
        assert len(spec.test) == 20
    # a second load is served from the verified cache (the mirror is gone)
    load_idx(DataConfig(), source_for(served), cache=cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in served.values())


def test_checksum_mismatch_fails_and_leaves_nothing(tmp_path):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.bin").write_bytes(b"not what was published")
    cache = tmp_path / "cache"
    with local_mirror(tmp_path / "mirror") as url:
        with pytest.raises(PrunelabError, match=r"f\.bin.*checksum mismatch.*expected 0{32}"):
            fetch("f.bin", "0" * 32, [url], cache)
    assert list(cache.iterdir()) == []


def test_truncated_file_on_the_mirror_is_refused(tmp_path):
    published = gzip.compress(np.arange(5000, dtype=np.uint32).tobytes())
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.gz").write_bytes(published[: len(published) // 2])
    with local_mirror(tmp_path / "mirror") as url:
        with pytest.raises(PrunelabError, match=r"(?s)could not download f\.gz:.*checksum mismatch"):
            fetch("f.gz", md5(published), [url], tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.bin").write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".f.bin.part").write_bytes(payload[:100_000])  # what an interrupted run left behind
    requests: list = []
    with local_mirror(tmp_path / "mirror", ranges=True, requests=requests) as url:
        got = fetch("f.bin", md5(payload), [url], cache)
    assert got.read_bytes() == payload
    assert requests == [("/f.bin", "bytes=100000-")]
    assert sorted(p.name for p in cache.iterdir()) == ["f.bin"]


def test_server_without_range_support_restarts_from_scratch(tmp_path):
    payload = b"0123456789" * 1000
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "f.bin").write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".f.bin.part").write_bytes(b"garbage from another attempt")
    with local_mirror(tmp_path / "mirror", ranges=False) as url:
        assert fetch("f.bin", md5(payload), [url], cache).read_bytes() == payload


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
    with pytest.raises(PrunelabError, match=r"could not download f\.bin(.|\n)*set data\.root"):
        fetch("f.bin", "0" * 32, ["http://127.0.0.1:1/"], tmp_path)
    assert list(tmp_path.iterdir()) == []
