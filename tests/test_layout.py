"""The house's shape: modules a reader can take in, package faces that only hand names on."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prunelab"
MODULES = sorted(SRC.rglob("*.py"))
MAX_LINES = 300  # about a screenful of screens: a module longer than this holds two ideas


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_about_300_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", sorted(SRC.rglob("__init__.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_a_package_init_only_hands_names_on(path):
    """No function or class is defined in a package's __init__: the implementation lives in named modules."""
    defined = [
        n.name
        for n in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    assert defined == []
