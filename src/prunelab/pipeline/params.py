"""Undo a rejected ``dvc exp run -S`` value, so one mistake does not poison the next command.

DVC writes ``-S`` values into params.yaml before any stage runs (and reformats the file);
a stage that then refuses a value leaves it there, and three mistakes later every correct
command fails on a key it did not pass. When a stage of a workspace experiment refuses a
key that the experiment changed, the runner puts back the value that key has at the
experiment's baseline commit (DVC_EXP_BASELINE_REV), or removes a key the baseline does
not have; when nothing else differs from the baseline, the baseline's file comes back
byte for byte. Plain ``dvc repro`` never touches params.yaml: there the user wrote the value.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from prunelab import atomic, paths
from prunelab.errors import ConfigError

_MISSING = object()


def in_workspace_experiment() -> bool:
    """``dvc exp run`` in the workspace (not --temp or --queue, whose copy is thrown away)."""
    root = os.environ.get("DVC_ROOT")
    return bool(
        os.environ.get("DVC_EXP_NAME")
        and os.environ.get("DVC_EXP_BASELINE_REV")
        and root
        and Path(root).resolve() == Path.cwd().resolve()
    )


def _lookup(tree: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def restore_rejected(error: ConfigError) -> str | None:
    """Put the rejected key back to its baseline value; what was done, in words (None: nothing to undo)."""
    if not in_workspace_experiment():
        return None
    parts = re.sub(r"\[\d+\]$", "", error.key).split(".")  # sweep.methods[1] -> sweep.methods
    rev = os.environ["DVC_EXP_BASELINE_REV"]
    shown = subprocess.run(["git", "show", f"{rev}:{paths.PARAMS}"], capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    base_text = shown.stdout
    base, now = yaml.safe_load(base_text) or {}, yaml.safe_load(paths.PARAMS.read_text(encoding="utf-8")) or {}
    before, after = _lookup(base, parts), _lookup(now, parts)
    if after is _MISSING or before == after:
        return None  # the experiment did not change this key: the user's own value, left alone
    if _restored(now, parts, before) == base:
        atomic.write_text(paths.PARAMS, base_text)  # nothing else was changed: the baseline's file, comments and all
    else:
        _rewrite(parts, before)
    was = "removed it (the baseline has no such key)" if before is _MISSING else f"restored {before!r}"
    return f"params.yaml: {'.'.join(parts)} = {after!r} was refused, so prunelab {was} from {rev[:7]}"


def _restored(tree: dict, parts: list[str], value: Any) -> dict:
    copy = yaml.safe_load(yaml.safe_dump(tree))
    node = copy
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is _MISSING:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return copy


def _rewrite(parts: list[str], value: Any) -> None:
    """Change one key in place, keeping the file's comments and the rest of its layout (ruamel)."""
    from ruamel.yaml import YAML

    rt = YAML()
    data = rt.load(paths.PARAMS.read_text(encoding="utf-8"))
    node = data
    for part in parts[:-1]:
        node = node[part]
    if value is _MISSING:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    atomic.write_with(paths.PARAMS, lambda tmp: rt.dump(data, tmp))
