"""The prunelab modules a stage's process imports: read from the code, never by running it.

Every ``import`` and ``from … import`` anywhere in a module counts, also those inside
functions (stages import lazily to start fast), and importing ``a.b.c`` runs the
``__init__`` of ``a`` and ``a.b`` too. Tests compare this closure with dvc.yaml's deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    """The file of prunelab module ``name`` (a package: its ``__init__.py``), or None."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported(path: Path) -> set[str]:
    """The prunelab modules that ``path`` imports (with the packages above them)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a import b`: b is a submodule or a name defined in a
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "prunelab" and module_file(target):
                names.update(n for n in _with_parents(target) if module_file(n))
    return names


def closure(script: Path) -> set[Path]:
    """Every prunelab source file that running ``script`` can import, relative to the repository."""
    seen: set[str] = set()
    todo = list(imported(script))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported(module_file(name)) - seen)  # type: ignore[arg-type]
    return {module_file(n).relative_to(ROOT) for n in seen}  # type: ignore[union-attr]


def covered(path: Path, deps: list[str]) -> bool:
    """Whether one of dvc.yaml's ``deps`` (files or folders) holds ``path``."""
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


PACKAGES_AS_ONE = (
    "config",
    "data",
    "models",
    "pruning",
    "train",
    "measure",
    "export",
    "track",
    "report",
    "compress",
    "parallel",
)


def deps_for(script: Path) -> list[str]:
    """dvc.yaml deps that cover ``script``'s closure: a package where it imports from it, else the file.

    pipeline/ is listed file by file: each stage has a module there, and one stage's
    module changing must not rerun the others.
    """
    units = set()
    for path in closure(script):
        parts = path.parts  # src, prunelab, ...
        units.add("/".join(parts[:3]) if len(parts) > 3 and parts[2] in PACKAGES_AS_ONE else str(path))
    return sorted(units, key=lambda u: (u.count("/") == 2 and u.endswith(".py"), u))


if __name__ == "__main__":  # print what each stage's deps should list: `python tests/imports.py`
    import yaml

    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        script = stage["cmd"].split()[1]
        print(f"{name}:\n" + "\n".join(f"  - {d}" for d in [script, "stages/_bootstrap.py", *deps_for(ROOT / script)]))
