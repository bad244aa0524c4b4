"""The configuration reference page, generated from ``conf/``: every command config, group, option and key with its
default and the comment above it in the YAML (:mod:`mtfcdd.core.config_docs`).

    python docs/scripts/config_reference.py [OUT.md]    # print the page (or write it); exit 1 on an uncommented key

``make docs`` renders the same page through the MkDocs hook (``docs/scripts/mkdocs_hooks.py``), so the build fails,
naming file and key, when a key has no comment.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from mtfcdd.core.config_docs import (
    ConfigFile,
    ConfigKey,
    Owners,
    UndocumentedKey,
    check_documented,
    describe,
    documentation,
    parse_conf,
)

CONF = Path(__file__).resolve().parents[2] / "conf"


def _text(text: str) -> str:
    """Comment text for a Markdown table cell: HTML-like ``<names>``, ``*`` and ``|`` escaped outside code spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside backticks
        parts[i] = parts[i].replace("<", "&lt;").replace("*", r"\*").replace("_", r"\_")
    return "`".join(parts).replace("|", r"\|")


def _code(value: str) -> str:
    """A default value as inline code (empty for a mapping)."""
    return f"`{value.replace('|', '¦')}`" if value else ""


def _key_rows(config: ConfigFile, owners: Owners) -> list[str]:
    """The key table of one config file."""
    rows = ["| key | default | description |", "|---|---|---|"]
    for key in config.keys:
        rows.append(f"| `{key.name}` | {_code(key.default)} | {_describe(key, owners)} |")
    return rows


def _describe(key: ConfigKey, owners: Owners) -> str:
    """A key's description; a borrowed one names the file that owns it."""
    text, owner = describe(key, owners)
    if key.mapping and not text:
        return "*(a group of the keys below)*"
    suffix = f" *(as in `conf/{owner}`)*" if owner and owner != key.file else ""
    return _text(text) + suffix


def _defaults_rows(config: ConfigFile) -> list[str]:
    """The defaults list of a config file as a table (empty when it has none)."""
    if not config.defaults:
        return []
    rows = ["| defaults list entry | note |", "|---|---|"]
    rows += [f"| `{entry}` | {_text(note)} |" for entry, note in config.defaults]
    return ["", *rows]


def _section(config: ConfigFile, owners: Owners, title: str) -> list[str]:
    """One config file: heading, header comment, defaults list and keys."""
    package = f" (package `{config.package or '_global_'}`)" if config.group else ""
    lines = ["", title, "", f"`conf/{config.file}`{package}"]
    if config.header:
        lines += ["", _text(config.header)]
    lines += _defaults_rows(config)
    if config.keys:
        lines += ["", *_key_rows(config, owners)]
    return lines


def render(conf_dir: Path = CONF) -> str:
    """The reference page as Markdown; raises ``UndocumentedKey`` when a key has no comment."""
    files = parse_conf(conf_dir)
    check_documented(files)
    owners = documentation(files)
    lines = [
        "# Configuration reference",
        "",
        "Generated from `conf/` by `docs/scripts/config_reference.py` at every `make docs`: each key with its",
        "default and the comment above it in the YAML (the build fails when a key has none). Set a key with",
        "`key=value` on the command line, choose a group's option with `group=option`",
        "(`model/backbone=efficientnet_lite0`); a key without a comment of its own shows the description of the",
        "same key in a sibling option of its group (an experiment's keys: where the key is defined), and names",
        "that file.",
        "`python -m mtfcdd.<command> --cfg job` prints a command's composed config.",
        "",
        "## Commands",
    ]
    commands = [config for config in files if not config.group]
    groups: dict[str, list[ConfigFile]] = defaultdict(list)
    for config in files:
        if config.group:
            groups[config.group].append(config)
    for config in commands:
        lines += _section(config, owners, f"### `python -m mtfcdd.{config.option}`")
    lines += ["", "## Config groups", "", "| group | options |", "|---|---|"]
    lines += [f"| `{group}` | {', '.join(f'`{c.option}`' for c in options)} |" for group, options in groups.items()]
    for group, options in groups.items():
        lines += ["", f"### `{group}`"]
        for config in options:
            lines += _section(config, owners, f"#### `{group}={config.option}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, conf_dir: Path = CONF) -> int:
    """Print the page of ``conf_dir``, or write it to the file given; exit status 1 naming the uncommented keys."""
    args = sys.argv[1:] if argv is None else argv
    try:
        page = render(conf_dir)
    except UndocumentedKey as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args:
        Path(args[0]).write_text(page, encoding="utf-8")
    else:
        print(page, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
