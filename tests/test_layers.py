"""The import graph points one way (README: Layout): every ``mtfcdd`` import of a package's modules, at the top or
inside a function, names only the packages the layer may use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtfcdd"
BASE = {"errors", "atomic_io", "defect_types", "config", "sweep"}
"""Modules that import nothing of mtfcdd but each other: every layer may use them."""
ALLOWED = {
    "data": BASE | {"data"},
    "metrics": BASE | {"metrics"},
    "model": BASE | {"model", "data", "metrics"},
    "inference": BASE | {"inference", "model", "data", "metrics"},
    "callbacks": BASE | {"callbacks", "model", "data", "metrics", "inference", "viz"},
    "report": BASE | {"report", "data", "metrics", "run_status"},
}


def imported(path: Path) -> set[str]:
    """The first name after ``mtfcdd.`` of every mtfcdd import in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        names.update(m.split(".")[1] for m in modules if m.startswith("mtfcdd."))
        if isinstance(node, ast.ImportFrom) and node.module == "mtfcdd":  # from mtfcdd import errors
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_lies_below_it(layer):
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(imported(path) - ALLOWED[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_base_modules_import_only_base_modules():
    for name in BASE:
        assert imported(PACKAGE / f"{name}.py") <= BASE, name


def test_the_checker_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom mtfcdd.data import x\nfrom mtfcdd import run\n\ndef f():\n"
                      "    from mtfcdd.train import main\n")
    assert imported(source) == {"data", "run", "train"}
