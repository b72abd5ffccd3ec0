"""Putting back the outputs DVC removed before a stage that then refused its input or was stopped.

No output in dvc.yaml is ``persist: true`` (persistent outputs would keep DVC from caching a
stage's run, and a study sharded over hosts is gathered through that run-cache). So DVC
deletes a stage's outputs before it starts the stage. When the stage then stops on bad
input, Ctrl-C or SIGTERM, ``restore_outputs`` copies each output that is now missing back
from DVC's cache, as dvc.lock last recorded it: earlier results stay as they were.

The stage is found in dvc.lock by its command (``python stages/<script>.py ARGS``, this
process's argv); the cache is where .dvc/config(.local) says (a queued experiment's copy
points at its repository's cache).
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import yaml

LOCK = Path("dvc.lock")


def _cache_dir(root: Path) -> Path:
    folder = root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        parser = configparser.ConfigParser()
        try:
            parser.read(root / ".dvc" / name)
        except configparser.Error:
            continue
        if parser.has_option("cache", "dir"):
            folder = root / ".dvc" / parser.get("cache", "dir")  # relative to .dvc/ (an absolute path stays)
    return folder


def _object(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def _this_stage(lock: dict, argv: list[str]) -> dict | None:
    for entry in (lock.get("stages") or {}).values():
        cmd = entry.get("cmd")
        words = shlex.split(cmd) if isinstance(cmd, str) else []
        if words[1:] == argv:
            return entry
    return None


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.restoring")
    shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


def _restore_one(cache: Path, path: Path, md5: str) -> bool:
    if md5.endswith(".dir"):  # a directory: its manifest lists each file's relative path and md5
        manifest = _object(cache, md5)
        if not manifest.is_file():
            return False
        files = [(path / f["relpath"], _object(cache, f["md5"])) for f in json.loads(manifest.read_text())]
        if not all(obj.is_file() for _, obj in files):
            return False
        for dest, obj in files:
            _copy(obj, dest)
        return True
    obj = _object(cache, md5)
    if not obj.is_file():
        return False
    _copy(obj, path)
    return True


def restore_outputs(root: Path | None = None, argv: list[str] | None = None) -> list[str]:
    """Copy back from DVC's cache every output of this stage that is missing; return their paths.

    Nothing happens outside a DVC run (no dvc.lock entry for this command), and an output
    that exists is never touched.
    """
    root = root or Path.cwd()
    argv = sys.argv if argv is None else argv
    try:
        lock = yaml.safe_load((root / LOCK).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    entry = _this_stage(lock, argv)
    if entry is None:
        return []
    cache, restored = _cache_dir(root), []
    for out in entry.get("outs") or []:
        path, md5 = root / out.get("path", ""), out.get("md5")
        if md5 and not path.exists():
            try:
                if _restore_one(cache, path, md5):
                    restored.append(out["path"])
            except OSError:
                continue  # a cache without the object (pruned by `dvc gc`): `dvc repro` rebuilds it
    return restored
