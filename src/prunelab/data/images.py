"""Photographs to tensors: decoded and resized ONCE, shared by the imagefolder and realwaste loaders.

An image *entry* is a file in a folder tree (``FileEntry``) or a member of a zip archive
(``ZipEntry``, read in place with ``zipfile``, which checks every member's CRC-32 as it
reads: nothing is extracted). Files count as images by extension, like torchvision's
ImageFolder; hidden files and folders (name starting with '.') and other extensions are
ignored, but a file with an image extension that does not decode is an error, never
skipped. Each image becomes RGB, its shorter side is resized to ``size`` and the middle
``size`` x ``size`` is cropped out (EXIF orientation is not applied, as in torchvision).
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from prunelab.data.spec import DataSpec, Split
from prunelab.data.split import stratified_split
from prunelab.errors import PrunelabError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


def is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class FileEntry:
    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise PrunelabError(f"{self.path}: cannot read ({exc})") from exc


@dataclass(frozen=True)
class ZipEntry:
    archive: zipfile.ZipFile  # kept open by the caller while the entries are read
    member: str

    @property
    def name(self) -> str:
        return f"{self.archive.filename} member {self.member}"

    def read(self) -> bytes:
        try:
            return self.archive.read(self.member)  # raises BadZipFile on a CRC-32 mismatch
        except _ZIP_ERRORS as exc:
            raise PrunelabError(
                f"{self.archive.filename}: corrupt zip archive at member {self.member} ({exc}); "
                "delete it and download it again"
            ) from exc


Entry = FileEntry | ZipEntry  # anything with ``.name`` (for messages) and ``.read() -> bytes``


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise PrunelabError(
            f"{path}: not a readable zip archive ({exc}): the file is truncated or corrupt; "
            "delete it and download it again"
        ) from exc


def list_images(folder: Path, recursive: bool = True) -> list[FileEntry]:
    """Image files in ``folder`` (and its non-hidden sub-folders), sorted by relative path."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if recursive and not d.startswith(".")]
        rel = Path(dirpath).relative_to(folder)
        found += [(rel / f).as_posix() for f in filenames if is_image(f)]
    return [FileEntry(folder / rel) for rel in sorted(found)]


def folder_classes(root: Path) -> dict[str, list[FileEntry]]:
    """torchvision's ImageFolder layout: root/<class>/**/<image>; classes sorted by name."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    layout = "expected the layout root/<class>/<image>, one sub-folder of images per class"
    if len(classes) < 2:
        found = f"only one class folder ({classes[0]!r})" if classes else "no class folders found"
        raise PrunelabError(f"{root}: {found}; {layout}, at least two classes")
    groups = {c: list_images(root / c) for c in classes}
    if empty := [c for c, entries in groups.items() if not entries]:
        raise PrunelabError(
            f"{root / empty[0]}: empty class folder (no images with extensions {' '.join(IMAGE_EXTENSIONS)})"
        )
    return groups


def decode(data: bytes, size: int, name: str) -> np.ndarray:
    """uint8 (size, size, 3): RGB, shorter side resized to ``size``, centre-cropped."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size, size))  # JPEG only: cheap DCT-domain downscale, never below size
            img.load()  # decode now, so a truncated file fails here
            rgb = img.convert("RGB")
        w, h = rgb.size
        new = (max(size, round(w * size / min(w, h))), max(size, round(h * size / min(w, h))))
        # Bilinear is antialiased in Pillow (its kernel widens with the reduction) and is
        # torchvision's Resize default; reducing_gap=3 box-reduces first, indistinguishable and faster.
        rgb = rgb.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except Image.UnidentifiedImageError as exc:  # its own message names a BytesIO, not the file
        raise PrunelabError(f"{name}: cannot decode image (not a format Pillow recognises)") from exc
    except (OSError, ValueError, EOFError, SyntaxError, struct.error, Image.DecompressionBombError) as exc:
        raise PrunelabError(f"{name}: cannot decode image ({exc})") from exc


def decode_all(entries: list[Entry], size: int, desc: str) -> torch.Tensor:
    """uint8 (N, 3, size, size), in the order given."""
    out = np.empty((len(entries), 3, size, size), dtype=np.uint8)
    for i, entry in enumerate(tqdm(entries, desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)):
        out[i] = decode(entry.read(), size, entry.name).transpose(2, 0, 1)
    return torch.from_numpy(out)


def build_spec(name: str, groups: dict[str, list[Entry]], cfg, seed: int) -> DataSpec:
    """Decode ``groups`` (class -> entries, in label order) and split them, stratified, into train/val/test.

    Every class must land in all three parts, so a class with too few images is an error
    (checked before anything is decoded).
    """
    classes = tuple(groups)
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(e) for e in groups.values()])
    fractions = [cfg.val_fraction, cfg.test_fraction]
    parts = stratified_split(labels, fractions, seed)
    counts = np.stack([np.bincount(labels[p], minlength=len(classes)) for p in parts])
    if (short := np.flatnonzero(counts.min(axis=0) == 0)).size:
        cls = classes[short[0]]  # the fewest images with which stratified_split fills every part:
        need = next(n for n in itertools.count(1) if min(map(len, stratified_split(np.zeros(n), fractions, 0))))
        raise PrunelabError(
            f"{name}: class {cls!r} has {len(groups[cls])} images, too few to appear in train, val and test "
            f"(with val_fraction {cfg.val_fraction} and test_fraction {cfg.test_fraction} every class needs "
            f"at least {need})"
        )
    images = decode_all([e for entries in groups.values() for e in entries], cfg.image_size, f"decoding {name}")
    train, val, test = (Split(images[torch.from_numpy(p)], torch.from_numpy(labels[p])) for p in parts)
    return DataSpec(name=name, classes=classes, train=train, val=val, test=test)
