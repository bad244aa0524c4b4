"""The keys of ``conf/`` with their defaults and the comments above them: what the configuration reference
(``docs/scripts/config_reference.py``) and ``python -m mtfcdd.<command> --help`` print.

A YAML file of ``conf/`` documents a key by the comment lines right above it (or a comment at the end of its line).
A key of a group's option without one is documented by the same key's comment in a sibling option of its group
(``trainer/cpu.yaml`` by ``trainer/default.yaml``), never by an override elsewhere (an experiment says why it
changes a value, not what the key does); a key of a ``_global_`` file (an experiment, a debug preset) by the
key's own comment wherever it has one; a command's own config comments every key it sets.
``_target_`` and ``_partial_`` are Hydra's and need none. ``check_documented`` raises ``UndocumentedKey``
naming the file and key of every key that nothing documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HYDRA_KEYS = {
    "_target_": "the class or function Hydra instantiates",
    "_partial_": "instantiate as a partial: the caller passes the remaining arguments",
}
"""Hydra's reserved keys, described here rather than above every use."""

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#'\"-][^:#]*?|'[^']+'|\"[^\"]+\"):(?:\s+(?P<value>.*))?$")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")


class UndocumentedKey(ValueError):
    """Config keys without a comment anywhere in ``conf/``; the message names each file and key."""


@dataclass(frozen=True)
class ConfigKey:
    """One key of a config file: ``path`` dotted within the file, ``name`` dotted in the composed config,
    ``package`` the file's (``""``: the root of the composed config)."""

    file: str
    line: int
    path: str
    name: str
    default: str
    comment: str
    mapping: bool
    package: str


@dataclass
class ConfigFile:
    """A config file of ``conf/``: its group (``""`` for a command's primary config), option, package, header
    comment, defaults-list entries (``(entry, comment)``) and keys in file order."""

    file: str
    group: str
    option: str
    package: str
    header: str = ""
    defaults: list[tuple[str, str]] = field(default_factory=list)
    keys: list[ConfigKey] = field(default_factory=list)


def _strip_inline_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment), ignoring ``#`` inside quotes or not preceded by a space."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] == " "):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


def _comment_text(lines: list[str]) -> str:
    """Comment lines (``# ...``) as one paragraph."""
    return " ".join(line.strip()[1:].strip() for line in lines).strip()


def _group(file: str) -> str:
    """The config group of a file below ``conf/`` (``""`` for a command's config)."""
    return file.rsplit("/", 1)[0] if "/" in file else ""


def parse_file(conf_dir: Path, path: Path) -> ConfigFile:
    """The keys, defaults list and header comment of the config file ``path`` below ``conf_dir``."""
    rel = path.relative_to(conf_dir).as_posix()
    group = _group(rel)
    lines = path.read_text(encoding="utf-8").splitlines()
    package = group.replace("/", ".")
    for line in lines[:3]:
        match = _PACKAGE.match(line.strip())
        if match:
            package = "" if match.group(1) == "_global_" else match.group(1)
    config = ConfigFile(file=rel, group=group, option=path.stem, package=package)
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    header_done = False
    in_defaults = False
    block_indent: int | None = None
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip(" "))
        if block_indent is not None:  # inside a block scalar (key: |)
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if not stripped:
            if not header_done:
                config.header, header_done = _comment_text(comments), bool(comments)
            comments = []
            continue
        if stripped.startswith("#"):
            if not _PACKAGE.match(stripped):
                comments.append(stripped)
            continue
        if stripped.startswith("- "):
            header_done = True
            if in_defaults:
                config.defaults.append((stripped[2:].strip(), _comment_text(comments)))
            comments = []
            continue
        match = _KEY.match(raw)
        if match is None:
            raise ValueError(f"{rel}:{number}: cannot read this line as a YAML key: {raw!r}")
        if not header_done:  # the comment block at the top, also the comment of a key right below it
            config.header, header_done = _comment_text(comments), True
        key = match.group("key").strip("'\"")
        value, inline = _strip_inline_comment(match.group("value") or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        in_defaults = not stack and key == "defaults"
        if in_defaults:
            comments = []
            continue
        dotted = ".".join([name for _, name in stack] + [key])
        if value in ("|", ">", "|-", ">-"):
            block_indent, value = indent, "(text)"
        mapping = value == "" and _next_is_child(lines, number, indent)
        config.keys.append(
            ConfigKey(
                file=rel,
                line=number,
                path=dotted,
                name=f"{package}.{dotted}" if package else dotted,
                default=value,
                comment=_comment_text(comments) or inline,
                mapping=mapping,
                package=package,
            )
        )
        comments = []
        if mapping:
            stack.append((indent, key))
    if not header_done and comments:
        config.header = _comment_text(comments)
    return config


def _next_is_child(lines: list[str], number: int, indent: int) -> bool:
    """Whether the first content line after line ``number`` (1-based) is indented deeper than ``indent``."""
    for raw in lines[number:]:
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            return len(raw) - len(raw.lstrip(" ")) > indent
    return False


def parse_conf(conf_dir: Path) -> list[ConfigFile]:
    """Every config file below ``conf_dir``: the commands' primary configs first, then the groups by name."""
    files = sorted(conf_dir.rglob("*.yaml"), key=lambda p: ("/" in p.relative_to(conf_dir).as_posix(), str(p)))
    return [parse_file(conf_dir, path) for path in files]


Owners = dict[str, list[tuple[str, str]]]
"""Composed key name -> (comment, file) of every file that comments it, in ``documentation``'s order."""


def documentation(files: list[ConfigFile]) -> Owners:
    """Composed key name -> (comment, file) of every file that comments it: a group's own files first, then
    ``train.yaml`` (the config the experiments and presets apply to), the other commands' configs, and last the
    ``_global_`` overrides of experiments and presets, so that a key's own group owns its description."""

    def rank(config: ConfigFile) -> tuple[int, str]:
        if config.group:
            return (3 if config.package == "" else 0), config.file
        return (1 if config.file == "train.yaml" else 2), config.file

    owners: Owners = {}
    for config in sorted(files, key=rank):
        for key in config.keys:
            if key.comment:
                owners.setdefault(key.name, []).append((key.comment, config.file))
    return owners


def describe(key: ConfigKey, owners: Owners) -> tuple[str, str]:
    """(description, file that holds it) of ``key``: its own comment, Hydra's reserved keys, or the comment of the
    same key in another file (module docstring: a group's option borrows only from its group); ``("", "")``
    when nothing documents it."""
    if key.comment:
        return key.comment, key.file
    leaf = key.path.rsplit(".", 1)[-1]
    if leaf in HYDRA_KEYS:
        return HYDRA_KEYS[leaf], ""
    group = _group(key.file)
    if not group:  # a command's own config documents every key it sets
        return "", ""
    for comment, file in owners.get(key.name, []):
        if not key.package or _group(file) == group:
            return comment, file
    return "", ""


def check_documented(files: list[ConfigFile]) -> None:
    """Raise ``UndocumentedKey`` naming ``file:line key`` of every value key (not a mapping of further keys)
    that has no description (``describe``)."""
    owners = documentation(files)
    missing = [
        f"conf/{key.file}:{key.line} {key.path}"
        for config in files
        for key in config.keys
        if not key.mapping and not describe(key, owners)[0]
    ]
    if missing:
        raise UndocumentedKey(
            f"{len(missing)} config key(s) without a comment above them (write one line saying what the key does):\n  "
            + "\n  ".join(missing)
        )
