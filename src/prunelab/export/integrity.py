"""Integrity of export files: each is one file, checked whole before anything in it is used.

- ``.sparse`` (prunelab's container): a fixed preamble, a JSON header, a payload, and the
  SHA-256 of everything before it as the last 32 bytes::

      bytes 0-7     magic b"PLSPARSE"
      bytes 8-11    container version, uint32 little-endian
      bytes 12-19   header length H, uint64 little-endian
      H bytes       header: UTF-8 JSON (what the payload holds, at which offsets)
      P bytes       payload (P = header["payload_bytes"])
      32 bytes      SHA-256 of every byte before these

- ``.pt2`` (torch.export's archive, a zip): prunelab appends one entry,
  ``archive/extra/prunelab.json``, holding the SHA-256 of every other entry, and ends the
  archive with a 64-character zip comment: the SHA-256 (hex) of every byte before it. The
  entry digests alone would miss a flipped byte in what zip readers skip (the padding torch
  writes into local headers, the central directory's attributes); the whole-file digest
  does not. The archive stays a plain ``torch.export.load`` file (a zip comment is part of
  the format); ``read_pt2`` checks the file's digest, the list of entries and each entry's
  digest first.

A digest detects truncation, bit rot and edits made without rewriting it; it is not a
signature (whoever can write the file can write a matching digest). What keeps a crafted
file from running code is elsewhere: the container holds raw arrays and JSON only, and
``pt2.safe_load`` refuses an archive in which torch would unpickle anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

from prunelab import atomic
from prunelab.errors import PrunelabError
from prunelab.export.formats import VERSION

MAGIC = b"PLSPARSE"
CONTAINER_VERSION = 1
_PREAMBLE = struct.Struct("<8sIQ")  # magic, version, header length
_DIGEST = 32  # SHA-256
_EOCD = struct.Struct("<4s4H2LH")  # zip end-of-central-directory record, comment length last
_HEX_DIGEST = 2 * _DIGEST
MANIFEST = "extra/prunelab.json"  # inside the .pt2 archive's top folder (torch's place for extra files)


class ExportError(PrunelabError):
    """An export file that cannot be used: missing, truncated, tampered with, or not an export."""


def refuse(path: str | Path, problem: str) -> ExportError:
    """The one-line error for a bad export file: the file, what is wrong, what to do."""
    return ExportError(f"{path}: {problem}; {atomic.rerun_hint(path)}")


def check_format(path: str | Path, info: Any, expected: str, versions: tuple[int, ...] = (VERSION,)) -> None:
    """Refuse, naming the file, one of another format or version than this prunelab reads."""
    if info.get("format") != expected or info.get("version") not in versions:
        raise refuse(
            path,
            f"format {info.get('format')!r} version {info.get('version')!r}, "
            f"this prunelab reads {expected!r} version {' or '.join(map(str, versions))}",
        )


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.exists():
        raise ExportError(f"export {path} is missing: export the model again (prunelab.export.export_model)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise refuse(path, f"unreadable ({atomic.reason(exc)})") from None


# -- the .sparse container ---------------------------------------------------------------


def pack_container(header: dict[str, Any], payload: bytes) -> bytes:
    """The container's bytes: preamble, header (with ``payload_bytes``), payload, digest."""
    head = json.dumps({**header, "payload_bytes": len(payload)}, sort_keys=True, separators=(",", ":")).encode()
    body = _PREAMBLE.pack(MAGIC, CONTAINER_VERSION, len(head)) + head + payload
    return body + hashlib.sha256(body).digest()


def unpack_container(path: str | Path, data: bytes) -> tuple[dict[str, Any], memoryview]:
    """(header, payload) of a container's bytes, after checking its length and digest."""
    if len(data) < _PREAMBLE.size + _DIGEST or data[: len(MAGIC)] != MAGIC:
        raise refuse(
            path, f"not a prunelab sparse export (no {MAGIC.decode()} preamble), or truncated to {len(data)} bytes"
        )
    _, version, head_len = _PREAMBLE.unpack_from(data)
    if version != CONTAINER_VERSION:
        raise refuse(path, f"container version {version}, this prunelab reads version {CONTAINER_VERSION}")
    body_len = len(data) - _DIGEST
    if _PREAMBLE.size + head_len > body_len:
        raise refuse(path, f"truncated ({len(data)} bytes, its header alone announces {head_len})")
    if hashlib.sha256(memoryview(data)[:body_len]).digest() != data[body_len:]:
        raise refuse(path, "its SHA-256 does not match its contents: truncated or modified after it was written")
    try:
        header = json.loads(data[_PREAMBLE.size : _PREAMBLE.size + head_len].decode())
        payload = memoryview(data)[_PREAMBLE.size + head_len : body_len]
        if not isinstance(header, dict) or header.get("payload_bytes") != len(payload):
            raise ValueError("payload length differs from the header's")
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(path, f"its header is not valid ({atomic.reason(exc)})") from None
    return header, payload


# -- the .pt2 archive ----------------------------------------------------------------------


def _entries(archive: zipfile.ZipFile) -> dict[str, str]:
    return {info.filename: hashlib.sha256(archive.read(info)).hexdigest() for info in archive.infolist()}


def seal_pt2(path: Path, info: dict[str, Any]) -> None:
    """Append the manifest (``info`` plus every entry's SHA-256) to the archive at ``path``.

    Entries are stored uncompressed with a fixed date, as torch writes its own, so equal
    programs give byte-identical files.
    """
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        digests = _entries(archive)
    top = names[0].split("/", 1)[0]
    manifest = json.dumps({**info, "entries": digests}, sort_keys=True, indent=1)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo(f"{top}/{MANIFEST}", date_time=(1980, 1, 1, 0, 0, 0)), manifest)
    end_with_digest(path)


def end_with_digest(path: Path) -> None:
    """Give the archive at ``path`` a zip comment holding the SHA-256 of every byte before it."""
    data = path.read_bytes()
    signature, *_, comment_len = _EOCD.unpack_from(data, len(data) - _EOCD.size)
    if signature != b"PK\x05\x06" or comment_len:
        raise refuse(path, "torch wrote an archive prunelab cannot seal (it ends in a zip comment)")
    body = data[:-2] + struct.pack("<H", _HEX_DIGEST)
    path.write_bytes(body + hashlib.sha256(body).hexdigest().encode())


def _check_file_digest(path: str | Path, data: bytes) -> None:
    """The last 64 bytes (the zip comment) are the SHA-256 of every byte before them."""
    if len(data) < _EOCD.size + _HEX_DIGEST:
        raise refuse(path, f"truncated .pt2 archive ({len(data)} bytes)")
    end = len(data) - _HEX_DIGEST - _EOCD.size
    if data[end : end + 4] != b"PK\x05\x06":
        raise refuse(
            path,
            "a .pt2 archive without prunelab's manifest and digest: not written by "
            "prunelab.export, or truncated or damaged",
        )
    body, digest = data[:-_HEX_DIGEST], data[-_HEX_DIGEST:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise refuse(
            path,
            "its SHA-256 does not match its contents (the digest ending the archive): "
            "truncated or modified after it was written, or not sealed by prunelab.export",
        )


def read_pt2(path: str | Path, data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, {entry: bytes}) of a sealed archive, after checking the file's and every entry's digest."""
    _check_file_digest(path, data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            top = names[0].split("/", 1)[0] if names else ""
            if f"{top}/{MANIFEST}" not in names:
                raise refuse(
                    path, "a .pt2 archive without prunelab's manifest: not written by prunelab.export, or damaged"
                )
            manifest = json.loads(archive.read(f"{top}/{MANIFEST}").decode())
            files = {name: archive.read(name) for name in names if name != f"{top}/{MANIFEST}"}
    except ExportError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, UnicodeDecodeError) as exc:
        # zipfile checks each entry's CRC-32 too: a flipped byte inside an entry lands here
        raise refuse(path, f"unreadable or truncated .pt2 archive ({atomic.reason(exc)})") from None
    expected = manifest.get("entries") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict):
        raise refuse(path, "its prunelab manifest lists no entries")
    if set(expected) != set(files):
        odd = sorted(set(expected) ^ set(files))
        raise refuse(path, f"entries added or removed since it was written ({', '.join(odd[:3])})")
    for name, blob in files.items():
        if hashlib.sha256(blob).hexdigest() != expected[name]:
            raise refuse(path, f"entry {name} does not match its SHA-256: modified after it was written")
    return manifest, files


def format_of(data: bytes) -> str:
    """'sparse', 'pt2' or '' (neither), from the first bytes: the suffix is not trusted."""
    if data[: len(MAGIC)] == MAGIC:
        return "sparse"
    if data[:4] == b"PK\x03\x04":
        return "pt2"
    return ""
