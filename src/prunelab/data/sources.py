"""Where a dataset's distribution files come from: a local folder (``data.root``) or the network.

With ``data.root`` set, files are looked up there (and in the sub-folders the usual tools
create, e.g. torchvision's ``MNIST/raw``) and nothing touches the network. Without it,
files are downloaded into ``data/downloads/<dataset>``. Either way, a file with a
published checksum is verified before it is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prunelab import paths
from prunelab.data.download import fetch, verify
from prunelab.errors import PrunelabError


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name as published, e.g. "train-images-idx3-ubyte.gz"
    md5: str | None  # published checksum of the file; None where the publisher gives none
    content_md5: str | None = None  # published checksum of the data it holds, decompressed
    extracted: tuple[str, ...] = ()  # names the decompressed file goes by (checked by content_md5)


@dataclass(frozen=True)
class Source:
    """A dataset's published files and the mirrors that serve them (tests point these at 127.0.0.1)."""

    files: dict[str, RemoteFile]
    mirrors: tuple[str, ...]


def local_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise PrunelabError(f"data.root {str(root)!r} {what}: expected a folder holding the dataset's files")
    return path


def find(root: Path, names: Iterable[str], subdirs: Iterable[str] = ("",)) -> Path | None:
    """The first of ``names`` that exists under ``root/<subdir>``, trying subdirs in order."""
    names = list(names)
    for sub in subdirs:
        for name in names:
            candidate = root / sub / name
            if candidate.exists():
                return candidate
    return None


def cache_dir(dataset: str) -> Path:
    return paths.DOWNLOAD_CACHE / dataset


def download_all(source: Source, dataset: str, cache: Path | None = None) -> dict[str, Path]:
    """Every file of ``source``, downloaded (or reused from the cache) and verified."""
    cache = cache or cache_dir(dataset)
    return {key: fetch(f.name, f.md5, source.mirrors, cache, f.content_md5) for key, f in source.files.items()}


def local_file(root: Path, file: RemoteFile, subdirs: Iterable[str]) -> Path:
    """``file`` under ``root`` (or one of its ``extracted`` forms, gzipped again or not), verified.

    Any genuine copy is accepted: the published file, the same data recompressed at any
    level, or extracted; a copy whose data differs is refused by name.
    """
    subdirs = list(subdirs)
    names = list(dict.fromkeys([file.name, *(n for e in file.extracted for n in (e, f"{e}.gz"))]))
    found = find(root, names, subdirs)
    if found is not None:
        return verify(found, file.md5, file.content_md5)
    wanted = " or ".join(names)
    where = ", ".join(str(root / s) if s else str(root) for s in subdirs)
    raise PrunelabError(f"data.root: {wanted} not found (looked in {where})")
