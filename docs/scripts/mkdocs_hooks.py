"""MkDocs hooks (``hooks:`` in ``mkdocs.yml``): the pages generated from the tree at every build.

- ``reference/config.md``: the configuration reference (``config_reference.render``); a key without a comment
  fails the build, naming file and key.
- ``reference/api/<package>.md``: one page per package of ``mtfcdd`` (and one for the commands) with a
  mkdocstrings block per public module, listed under the nav entry "API reference".
- the layer diagram of ``design/layers.md`` (at its ``<!-- layers diagram -->`` line): a Mermaid graph of the
  imports ``tests/test_layers.py`` allows (its ``BELOW``), transitively reduced.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pymdownx.superfences import fence_code_format

sys.path.insert(0, str(Path(__file__).resolve().parent))
import config_reference  # this folder is not a package: imported by path

from mtfcdd.core.config_docs import UndocumentedKey

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mtfcdd"
API_TITLE = "API reference"
LAYERS_MARK = "<!-- layers diagram -->"


def _modules(folder: Path) -> list[str]:
    """Dotted names of the public modules below ``folder`` (a package of ``mtfcdd``), subpackages included."""
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(part.startswith("_") and part not in ("__init__", "__main__") for part in parts):
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def api_pages() -> dict[str, tuple[str, list[str]]]:
    """Page path -> (title, modules): the commands (modules at the top of ``mtfcdd/``, and ``report``), then one
    page per package."""
    commands = [f"mtfcdd.{path.stem}" for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"]
    pages = {"reference/api/commands.md": ("commands", commands)}
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        pages[f"reference/api/{folder.name}.md"] = (f"mtfcdd.{folder.name}", _modules(folder))
    return pages


def _api_markdown(title: str, modules: list[str]) -> str:
    """One API page: a heading and a mkdocstrings block per module."""
    blocks = [f"# {title}", "", "Generated from the docstrings at every build (mkdocstrings)."]
    for module in modules:
        blocks += ["", f"::: {module}", "    options:", "      heading_level: 2", "      show_submodules: false"]
    return "\n".join(blocks) + "\n"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Fill the nav entry "API reference" (under "Reference") with the generated API pages, and let superfences
    pass ``mermaid`` blocks to the theme (Material draws them)."""
    fences = config.mdx_configs.setdefault("pymdownx.superfences", {}).setdefault("custom_fences", [])
    fences.append({"name": "mermaid", "class": "mermaid", "format": fence_code_format})
    for section in config.nav or []:
        for entry in section.get("Reference", []) if isinstance(section, dict) else []:
            if isinstance(entry, dict) and API_TITLE in entry:
                entry[API_TITLE] = [{title: path} for path, (title, _) in api_pages().items()]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the configuration reference and the API pages to the build."""
    try:
        page = config_reference.render()
    except UndocumentedKey as err:
        raise PluginError(f"configuration reference: {err}") from None
    files.append(File.generated(config, "reference/config.md", content=page))
    for path, (title, modules) in api_pages().items():
        files.append(File.generated(config, path, content=_api_markdown(title, modules)))
    return files


def allowed_imports() -> dict[str, set[str]]:
    """``BELOW`` of ``tests/test_layers.py`` (package -> the packages it may import), read without importing it."""
    tree = ast.parse((ROOT / "tests" / "test_layers.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "BELOW" for t in node.targets):
            return ast.literal_eval(node.value)
    raise PluginError("tests/test_layers.py has no BELOW dict: the layer diagram cannot be drawn")


def layers_mermaid(below: dict[str, set[str]]) -> str:
    """A Mermaid graph of ``below`` without the edges implied by others (p -> q when p may import q directly and
    no other package p may import reaches q), commands on top."""

    def reach(package: str) -> set[str]:
        seen: set[str] = set()
        todo = list(below.get(package, ()))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += below.get(current, ())
        return seen

    tops = sorted(set(below) - {q for deps in below.values() for q in deps})
    lines = ["```mermaid", "graph TD", "  commands([commands])"] + [f"  commands --> {top}" for top in tops]
    for package in below:
        for dep in sorted(below[package]):
            if not any(dep in reach(other) for other in below[package] - {dep}):
                lines.append(f"  {package} --> {dep}")
    return "\n".join([*lines, "```"])


def on_page_markdown(markdown: str, page: Page, **_: object) -> str:
    """Draw the layer diagram where ``design/layers.md`` asks for it."""
    if page.file.src_uri == "design/layers.md" and LAYERS_MARK in markdown:
        return markdown.replace(LAYERS_MARK, layers_mermaid(allowed_imports()))
    return markdown
