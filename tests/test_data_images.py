"""Image datasets: imagefolder and realwaste, from tiny generated JPEG / PNG files (no network)."""

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mirror import local_mirror
from PIL import Image

from prunelab.config import DataConfig
from prunelab.data import DATASETS, realwaste
from prunelab.data.images import decode
from prunelab.data.sources import RemoteFile, Source
from prunelab.errors import PrunelabError

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (128, 128, 128)}


def save(path: Path, img: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def solid(colour, size=(20, 16), mode="RGB") -> Image.Image:
    return Image.new("RGB", size, colour).convert(mode)


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_folder(root: Path, n: int = 10) -> Path:
    """3 classes x n images in every mode and format, some nested, plus files that must be ignored."""
    for i in range(n):
        size = (20, 16) if i % 2 else (16, 20)  # landscape and portrait
        save(root / "emu" / f"g{i}.{'jpg' if i % 2 else 'png'}", solid(COLOURS["emu"], size, "L"))
        save(root / "cat" / ("sub/deeper" if i < 3 else "") / f"c{i}.JPG", solid(COLOURS["cat"], size), format="JPEG")
        save(root / "dog" / f"d{i}.png", solid(COLOURS["dog"], size, "P" if i % 2 else "RGBA"))
    (root / "README.txt").write_text("not a class")
    (root / "cat" / "notes.txt").write_text("ignored")
    (root / "dog" / ".DS_Store").write_bytes(b"\0garbage")
    (root / "dog" / "._d0.png").write_bytes(b"AppleDouble junk, not an image")  # hidden: ignored
    save(root / "dog" / ".thumbs" / "t.png", solid((0, 0, 0)))  # hidden folder: ignored
    save(root / ".hidden" / "h.png", solid((0, 0, 0)))  # hidden: not a class
    return root


def cfg(root, name="imagefolder", **kw) -> DataConfig:
    return DataConfig(
        name=name,
        root=None if root is None else str(root),
        image_size=kw.pop("image_size", 8),
        val_fraction=kw.pop("val_fraction", 0.2),
        test_fraction=kw.pop("test_fraction", 0.2),
        **kw,
    )


def load_folder(root, seed=0, **kw):
    return DATASETS.get("imagefolder")(cfg(root, **kw), seed=seed)


def parts(spec):
    return (spec.train, spec.val, spec.test)


def assert_same(a, b) -> None:
    assert a.name == b.name and a.classes == b.classes
    for x, y in zip(parts(a), parts(b)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


# -- imagefolder ----------------------------------------------------------------------------


def test_imagefolder_decodes_every_mode_with_sorted_classes(tmp_path):
    spec = load_folder(make_folder(tmp_path / "f"))
    assert spec.name == "imagefolder" and spec.classes == ("cat", "dog", "emu")
    assert (len(spec.train), len(spec.val), len(spec.test)) == (18, 6, 6)  # nested cat images included
    for part in parts(spec):
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, 8, 8)
        assert part.labels.dtype == torch.int64
        for label, cls in enumerate(spec.classes):
            mean = part.images[part.labels == label].double().mean(dim=(0, 2, 3))
            assert torch.allclose(mean, torch.tensor(COLOURS[cls], dtype=torch.float64), atol=6), (cls, mean)


def test_resize_shorter_side_then_centre_crop():
    bands = np.zeros((16, 64, 3), dtype=np.uint8)
    bands[:, :24] = (255, 0, 0)
    bands[:, 24:40] = (0, 255, 0)
    bands[:, 40:] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(bands).save(buf, "PNG")
    out = decode(buf.getvalue(), 8, "wide.png")  # 64x16 -> 32x8 -> middle 8 columns: the green band
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[:, 1:7, 1] >= 250).all() and out[:, 1:7, [0, 2]].max() <= 5
    buf = io.BytesIO()
    Image.fromarray(bands.transpose(1, 0, 2).copy()).save(buf, "PNG")  # tall: the crop is the middle rows
    out = decode(buf.getvalue(), 8, "tall.png")
    assert (out[1:7, :, 1] >= 250).all() and out[1:7, :, [0, 2]].max() <= 5
    assert decode(jpeg_bytes(solid((10, 20, 30), (5, 3))), 8, "tiny.jpg").shape == (8, 8, 3)  # upscaled


def test_split_is_stratified_disjoint_complete_and_seeded(tmp_path):
    root = tmp_path / "u"
    for c in range(3):  # every image a unique lossless colour, so it can be traced through the split
        for i in range(10):
            save(root / f"k{c}" / f"{i}.png", solid((c * 80 + i * 5, i * 20, 7)))
    spec = load_folder(root, seed=1)
    seen = []
    for part, count in zip(parts(spec), (6, 2, 2)):
        assert torch.bincount(part.labels, minlength=3).tolist() == [count] * 3
        ids = [tuple(px) for px in part.images[:, :, 0, 0].tolist()]
        assert all(px[0] // 80 == label for px, label in zip(ids, part.labels.tolist()))
        seen += ids
    assert len(seen) == len(set(seen)) == 30
    assert_same(spec, load_folder(root, seed=1))
    other = load_folder(root, seed=2)
    assert not torch.equal(spec.val.images, other.val.images)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "truncated"])
def test_undecodable_image_is_an_error_naming_it(tmp_path, kind):
    root = make_folder(tmp_path / "f")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    data = np.random.default_rng(1).bytes(500) if kind == "random" else jpeg_bytes(noise)[: len(jpeg_bytes(noise)) // 2]
    (root / "dog" / "x.jpg").write_bytes(data)
    with pytest.raises(PrunelabError, match=r"dog/x\.jpg: cannot decode image"):
        load_folder(root)


def test_folder_layout_errors(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "fox").mkdir()
    (root / "fox" / "README.txt").write_text("no images")
    with pytest.raises(PrunelabError, match=r"f/fox: empty class folder \(no images with extensions .jpg"):
        load_folder(root)
    flat = tmp_path / "flat"
    save(flat / "a.png", solid((1, 2, 3)))
    with pytest.raises(PrunelabError, match=r"flat: no class folders found; expected the layout root/<class>/<image>"):
        load_folder(flat)
    with pytest.raises(PrunelabError, match="only one class folder"):
        load_folder(tmp_path / "f" / "cat")
    with pytest.raises(PrunelabError, match=r"data.root '.*nowhere' does not exist"):
        load_folder(tmp_path / "nowhere")


def test_too_few_images_per_class_names_the_class(tmp_path):
    root = make_folder(tmp_path / "f", n=6)
    for f in sorted((root / "emu").iterdir())[:2]:
        f.unlink()
    with pytest.raises(PrunelabError, match=r"class 'emu' has 4 images, too few .* at least 6"):
        load_folder(root, val_fraction=0.1, test_fraction=0.2)


# -- realwaste --------------------------------------------------------------------------------

EXPECTED = {cls: 5 + i % 3 for i, cls in enumerate(realwaste.EXPECTED_COUNTS)}
PREFIX = "realwaste-main/RealWaste"


@pytest.fixture(scope="module")
def waste(tmp_path_factory):
    """The published layout, extracted (ext/) and zipped (zip/realwaste.zip), with small counts."""
    base = tmp_path_factory.mktemp("waste")
    rng = np.random.default_rng(0)
    for cls, n in EXPECTED.items():
        for i in range(1, n + 1):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            save(base / "ext" / PREFIX / cls / f"{cls}_{i}.jpg", solid(colour, (24, 18)), format="JPEG")
    (base / "ext" / "realwaste-main" / "README.md").write_text("RealWaste")
    (base / "zip").mkdir()
    write_zip(base / "zip" / "realwaste.zip", base / "ext")
    return base


def write_zip(path: Path, folder: Path, skip: str | None = None) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (skip is None or skip not in p.parts))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for p in reversed(files):  # stored out of order: the loader sorts
            zf.write(p, p.relative_to(folder).as_posix())
        zf.writestr(f"__MACOSX/{PREFIX}/Glass/._Glass_1.jpg", b"resource fork, not an image")
    return path


def load_waste(root, expected=EXPECTED, **kw):
    return realwaste.load(cfg(root, name="realwaste"), seed=3, expected=expected, **kw)


def test_realwaste_from_zip_folders_and_download_are_identical(waste, tmp_path):
    from_zip = load_waste(waste / "zip")
    assert from_zip.name == "realwaste" and from_zip.classes == tuple(realwaste.EXPECTED_COUNTS)
    assert sum(len(p) for p in parts(from_zip)) == sum(EXPECTED.values())
    assert from_zip.input_shape == (3, 8, 8)
    for sub in ("", "realwaste-main", PREFIX):  # root/realwaste-main/RealWaste/<C>, root/RealWaste/<C>, root/<C>
        assert_same(from_zip, load_waste(waste / "ext" / sub))
    requests = []
    with local_mirror(waste / "zip", requests=requests) as url:
        source = Source({"archive": RemoteFile("realwaste.zip", None)}, (url,))
        downloaded = load_waste(None, source=source, cache=tmp_path / "cache")
        assert requests and (tmp_path / "cache" / "realwaste.zip").exists()
        requests.clear()
        assert_same(from_zip, load_waste(waste / "zip", source=source))  # data.root: no request at all
        assert requests == []
    assert_same(from_zip, downloaded)


def test_realwaste_counts_and_classes_are_checked(waste, tmp_path):
    with pytest.raises(PrunelabError, match=r"realwaste.zip: class 'Glass' has 7 images, expected 8"):
        load_waste(waste / "zip", expected=EXPECTED | {"Glass": 8})
    (tmp_path / "nopaper").mkdir()
    write_zip(tmp_path / "nopaper" / "realwaste.zip", waste / "ext", skip="Paper")
    with pytest.raises(PrunelabError, match=r"realwaste.zip: RealWaste class folder\(s\) Paper missing"):
        load_waste(tmp_path / "nopaper")
    with pytest.raises(PrunelabError, match=r"neither realwaste\.zip nor the RealWaste class folders"):
        load_waste(tmp_path / "nopaper" / "..")


def test_corrupt_realwaste_zip_is_an_error(waste, tmp_path):
    data = (waste / "zip" / "realwaste.zip").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "realwaste.zip").write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(PrunelabError, match=r"cut/realwaste.zip: not a readable zip archive"):
        load_waste(tmp_path / "cut")
    member = f"{PREFIX}/Metal/Metal_2.jpg"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        offset = zf.getinfo(member).header_offset
    name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
    at = offset + 30 + name_len + extra_len + 40  # inside the member's stored bytes
    (tmp_path / "flip").mkdir()
    (tmp_path / "flip" / "realwaste.zip").write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    with pytest.raises(PrunelabError, match=rf"flip/realwaste.zip: corrupt zip archive at member {member} .*CRC"):
        load_waste(tmp_path / "flip")
