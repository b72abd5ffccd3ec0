"""Checksummed downloads into a cache directory, never leaving a half-written file.

The transfer itself is torchvision's downloader (progress bar, redirects); the file lands
under a temporary name and is renamed only after its MD5 matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from prunelab.errors import PrunelabError


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(filename: str, md5: str, mirrors: list[str], cache_dir: str | Path) -> Path:
    """Return ``cache_dir/filename``, downloading it from the first mirror that works."""
    cache_dir = Path(cache_dir)
    target = cache_dir / filename
    if target.exists():
        if md5sum(target) == md5:
            return target
        target.unlink()  # a stale or corrupted copy: fetch it again
    from torchvision.datasets.utils import download_url  # torchvision is slow to import

    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".{filename}.part"
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            download_url(url, str(cache_dir), filename=partial.name, md5=None)
        except Exception as exc:  # noqa: BLE001  any transfer failure: try the next mirror
            errors.append(f"{url}: {exc}")
            continue
        got = md5sum(partial)
        if got == md5:
            os.replace(partial, target)
            return target
        errors.append(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    raise PrunelabError(f"could not download {filename}:\n  " + "\n  ".join(errors))
