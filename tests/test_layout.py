"""The house's shape: modules a reader can take in, package faces that only hand names on."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "prunelab"
MODULES = sorted(SRC.rglob("*.py"))
MAX_LINES = 300  # about a screenful of screens: a module longer than this holds two ideas


def test_no_module_is_over_about_300_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in MODULES
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines (split them by idea)"


def test_a_package_init_only_hands_names_on():
    """No function or class is defined in a package's __init__: the implementation lives in named modules."""
    defined = {
        str(path.relative_to(SRC)): names
        for path in sorted(SRC.rglob("__init__.py"))
        if (names := [
            n.name
            for n in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ])
    }  # fmt: skip
    assert defined == {}
