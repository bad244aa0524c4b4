"""The house's layers (docs/design/layers.md): the top of ``mtfcdd/`` holds the commands only, and the import graph
points one way: every ``mtfcdd`` import of a package's modules, at the top or inside a function, names only the
packages that lie below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtfcdd"
COMMANDS = {"train", "evaluate", "predict", "export", "benchmark", "report", "balanced_epoch", "serve"}
"""``python -m mtfcdd.<command>``: modules (or, for report, a package with ``__main__``) at the top."""
BELOW = {
    "core": set(),
    "sampling": {"core"},
    "resume": {"core", "sampling"},
    "data": {"core", "sampling", "resume"},
    "metrics": {"core"},
    "model": {"core", "data", "metrics"},
    "inference": {"core", "model", "data", "metrics"},
    "viz": {"core", "model"},
    "measure": {"core", "model", "inference"},
    "callbacks": {"core", "model", "data", "metrics", "inference", "viz"},
    "run": {"core", "sampling", "resume", "data", "metrics", "model", "inference", "callbacks"},
    "report": {"core", "sampling", "metrics", "run"},
    "serving": {"core", "data", "model", "inference"},
}
"""Package -> the packages it may import besides itself."""


def imported(path: Path) -> set[str]:
    """The first name after ``mtfcdd.`` of every mtfcdd import in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else ([alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        )
        names.update(m.split(".")[1] for m in modules if m.startswith("mtfcdd."))
        if isinstance(node, ast.ImportFrom) and node.module == "mtfcdd":  # from mtfcdd import errors
            names.update(alias.name for alias in node.names)
    return names


def test_the_top_of_the_package_holds_the_commands_only():
    top = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert top <= COMMANDS, sorted(top - COMMANDS)
    assert packages - {"report"} == set(BELOW) - {"report"}, sorted(packages ^ set(BELOW))
    assert (PACKAGE / "report" / "__main__.py").is_file()


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_a_layer_imports_only_what_lies_below_it(layer):
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(imported(path) - BELOW[layer] - {layer})
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_layers_have_no_cycle():
    order: list[str] = []
    pending = dict(BELOW)
    while pending:
        ready = [name for name, below in pending.items() if below <= set(order)]
        assert ready, f"a cycle among {sorted(pending)}"
        order.extend(sorted(ready))
        for name in ready:
            del pending[name]


def test_the_checker_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\nfrom mtfcdd.data import x\nfrom mtfcdd import run\n\ndef f():\n    from mtfcdd.train import main\n"
    )
    assert imported(source) == {"data", "run", "train"}
