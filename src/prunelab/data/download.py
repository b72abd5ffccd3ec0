"""Checksummed, resumable downloads into a cache directory, never leaving a half-written file.

A transfer writes ``.<name>.part`` beside the target. If an earlier attempt was cut off,
the next one resumes it with an HTTP Range request; a server that ignores Range sends the
whole file, which then replaces the part. The part is renamed to its final name only once
its MD5 matches the published one, so an interrupted or corrupted download is never
taken for a good file, and rerunning simply continues where it stopped.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from prunelab.errors import PrunelabError

CHUNK = 1 << 20
TIMEOUT_S = 60  # per socket operation, not per file: a slow mirror is fine, a dead one is not
OFFLINE_HINT = "to work without the network, put the dataset's files in a folder and set data.root to it"


def md5sum(path: str | Path, chunk: int = CHUNK) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def content_md5sum(path: str | Path, chunk: int = CHUNK) -> str:
    """MD5 of the data a file holds: of its decompressed bytes if it is gzip (any level, any
    header), else of the file itself. A recompressed copy of a published file has the same."""
    path = Path(path)
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with (gzip.open if gzipped else open)(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                digest.update(block)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut-off stream is EOFError
        raise PrunelabError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    return digest.hexdigest()


def mismatch(path: str | Path, md5: str | None, content_md5: str | None = None) -> str | None:
    """Why ``path`` is not the published file (None: it is, or nothing is published to check).

    The file is genuine if it is byte for byte the published one (``md5``) or if the data
    it holds, decompressed, is the published data (``content_md5``): what matters is the
    content, not the compressor that wrapped it.
    """
    if md5 is None and content_md5 is None:
        return None
    got = md5sum(path) if md5 is not None else None
    if got is not None and got == md5:
        return None
    if content_md5 is not None:
        content = content_md5sum(path)
        if content == content_md5:
            return None
        return (
            f"content checksum mismatch: the data's md5 is {content}, expected {content_md5} "
            "(the file is corrupt, truncated or not the published data, however it is compressed)"
        )
    return f"checksum mismatch: md5 is {got}, expected {md5} (the file is corrupt, truncated or not the published one)"


def verify(path: str | Path, md5: str | None, content_md5: str | None = None) -> Path:
    """Return ``path`` if it is genuine (see ``mismatch``); else raise, naming the file and both checksums."""
    if (reason := mismatch(path, md5, content_md5)) is not None:
        raise PrunelabError(f"{path}: {reason}")
    return Path(path)


def verify_bytes(blob: bytes, md5: str | None, where: str) -> bytes:
    """``verify`` for a file already in memory (a member read from an archive)."""
    if md5 is not None:
        check_md5(hashlib.md5(blob, usedforsecurity=False).hexdigest(), md5, where)
    return blob


def check_md5(got: str, expected: str, where: str) -> None:
    if got != expected:
        raise PrunelabError(
            f"{where}: checksum mismatch: md5 is {got}, expected {expected} "
            "(the file is corrupt, truncated or not the published one)"
        )


def _transfer(url: str, part: Path) -> None:
    """Download ``url`` into ``part``, continuing an earlier partial transfer when the server allows."""
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "prunelab"} | ({"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # nothing left to send: the part is already whole
            return
        raise
    with response:
        resumed = done > 0 and response.status == 206
        if not resumed:
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with (
            open(part, "ab" if resumed else "wb") as fh,
            tqdm(
                total=total,
                initial=done,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removeprefix(".").removesuffix(".part"),
                leave=False,
                dynamic_ncols=True,
                disable=None,
            ) as bar,
        ):  # not on a terminal: no redraws
            while block := response.read(CHUNK):
                fh.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise PrunelabError(f"connection closed after {size} of {total} bytes")


def fetch(
    filename: str,
    md5: str | None,
    mirrors: list[str] | tuple[str, ...],
    cache_dir: str | Path,
    content_md5: str | None = None,
) -> Path:
    """Return ``cache_dir/filename``, downloading it from the first mirror that works.

    A cached file is reused only while it is genuine (``mismatch``). ``md5`` and
    ``content_md5`` are None for files whose publisher gives no checksum; their readers
    check structure instead (e.g. a zip's CRCs).
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / filename
    if target.exists():
        with contextlib.suppress(PrunelabError):  # an unreadable cached copy is fetched again
            if mismatch(target, md5, content_md5) is None:
                return target
        target.unlink()  # a stale or corrupted copy: fetch it again
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = cache_dir / f".{filename}.part"
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            _transfer(url, part)
        except (OSError, http.client.HTTPException, PrunelabError) as exc:  # any transfer failure: next mirror
            reason = getattr(exc, "reason", None) or exc
            errors.append(f"{url}: {reason}")
            continue
        try:
            reason = mismatch(part, md5, content_md5)
        except PrunelabError as exc:  # complete by length, but not a readable gzip
            reason = str(exc)
        if reason is not None:
            errors.append(f"{url}: {reason}")
            part.unlink()  # a complete but wrong file: never resume from it
            continue
        os.replace(part, target)
        return target
    kept = part.exists() and part.stat().st_size > 0
    if not kept:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    resume = f"\n  the partial download {part} is kept: rerun to resume it" if kept else ""
    raise PrunelabError(f"could not download {filename}:\n  " + "\n  ".join(errors) + resume + f"\n  ({OFFLINE_HINT})")
