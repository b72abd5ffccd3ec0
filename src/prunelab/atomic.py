"""Atomic writes: an output is either the complete new file or the previous one, never half.

Every file a stage produces goes through here (write to a temporary file in the same
directory, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TMP_PATTERN = ".{name}.*.tmp"  # ignored by git and DVC (.gitignore, .dvcignore)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A writer killed outright (SIGKILL, power loss) cannot remove its temporary file: the
    next write of the same output does. Only one stage writes an output, and DVC runs one
    stage per workspace at a time, so such a file is never another writer's.
    """
    from prunelab.parallel import current

    if not (world := current()).writer:  # a bug, not bad input: ranks other than 0 never write
        raise RuntimeError(f"rank {world.rank} of {world.size} tried to write {path}: only rank 0 writes")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(TMP_PATTERN.format(name=target.name)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_torch(path: str | os.PathLike[str], obj: Any) -> Path:
    """torch.save, atomically and byte-reproducibly.

    Saving to a path names the zip archive's inner folder after the (random) temporary
    file; saving through a file object uses a fixed name, so equal tensors give equal files.
    """
    import torch

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    return write_with(path, save)


def read_torch(
    path: str | os.PathLike[str], what: str, keys: tuple[str, ...] = (), *, mmap: bool = False
) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a file a stage wrote: a dict of tensors and plain values.

    ``mmap``: the tensors are views of the file, mapped into memory: the processes reading
    one file share its pages in the page cache instead of each holding a copy.

    Anything else (unreadable, truncated, foreign, holding Python objects, missing ``keys``)
    is one PrunelabError naming the file, what was expected and what to rerun. It never
    suggests unpickling: torch's own message for a refused pickle advises exactly that.
    """
    import pickle

    import torch

    from prunelab.errors import PrunelabError

    path = Path(path)
    expected = f"expected {what} written by prunelab; {rerun_hint(path)}"
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise PrunelabError(
            f"{path}: refused: it holds Python objects, not only tensors and plain values, "
            f"and prunelab never unpickles code; {expected}"
        ) from None
    except Exception as exc:
        raise PrunelabError(f"{path}: unreadable or truncated ({reason(exc)}); {expected}") from None
    if not isinstance(blob, dict):
        raise PrunelabError(f"{path}: holds a {type(blob).__name__}, not a prunelab file; {expected}")
    if missing := [k for k in keys if k not in blob]:
        raise PrunelabError(f"{path}: not a prunelab file (no {', '.join(map(repr, missing))}); {expected}")
    return blob


def rerun_hint(path: str | os.PathLike[str]) -> str:
    """What to do about a bad file a stage wrote: rerun that stage."""
    from prunelab.paths import writer

    stage = writer(path)
    return f"rerun the {stage} stage (`dvc repro -f {stage}`)" if stage else "write it again with prunelab"


def reason(exc: BaseException) -> str:
    """An exception's message in one short line: its first sentence (and what a trailing colon announces)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]], columns: list[str]) -> Path:
    """CSV with a header (quoted where needed); missing values are written empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: r.get(c) for c in columns} for r in rows)
    return write_text(path, buffer.getvalue())


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
