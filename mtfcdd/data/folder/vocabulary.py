"""A folder's defect-type vocabulary: type folder names mapped onto shared types (``data.type_map``) in channel order
(``data.types``, else sorted by name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mtfcdd.data.folder.layout import ImageFolder
from mtfcdd.data.folder.records import NORMAL_FOLDER, raise_problems


def _folder_list(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{category}/{name}" for category, name in pairs)


def _names_a_folder(key: str, names: set[str], pairs: set[tuple[str, str]]) -> bool:
    category, slash, name = key.rpartition("/")
    return (category, name) in pairs if slash else key in names


def _map_problems(type_map: Mapping[str, str], pairs: set[tuple[str, str]]) -> list[str]:
    names = {name for _, name in pairs}
    problems = []
    for key, value in type_map.items():
        if not (isinstance(key, str) and isinstance(value, str) and value):
            problems.append(f"data.type_map entry {key!r}: {value!r}; expected a folder name -> a type name")
        elif value == NORMAL_FOLDER:
            problems.append(
                f"data.type_map maps {key!r} onto {NORMAL_FOLDER!r}, the normal images; expected a defect type"
            )
        elif not _names_a_folder(key, names, pairs):
            problems.append(
                f"data.type_map key {key!r} names no type folder; expected one of: "
                f"{', '.join(sorted(names))} (or <category>/<folder>: {_folder_list(sorted(pairs))})"
            )
    return problems


def resolve_types(
    folders: Sequence[ImageFolder],
    root: Path,
    type_map: Mapping[str, str] | None = None,
    types: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], dict[tuple[str, str], str]]:
    """(the vocabulary, (category, folder name) -> type name) of the defect folders among ``folders``.

    Args:
        folders: the image folders of the tree (normal ones are left out).
        root: the tree, for messages.
        type_map: folder name -> type name; a key ``<category>/<folder>`` maps that category's folder alone (and
            wins over a plain folder name). Unmapped folders are types of their own name.
        types: the type names in channel order; every name must have a folder and every folder's type be listed.
            None: the types found, sorted by name.

    Raises ``FolderFormatError`` naming every entry that fits no folder and every
    folder whose type is not listed.
    """
    type_map = dict(type_map or {})
    pairs = sorted({(folder.category, folder.name) for folder in folders if folder.name != NORMAL_FOLDER})
    problems = _map_problems(type_map, set(pairs))
    type_of = {pair: type_map.get("/".join(pair), type_map.get(pair[1], pair[1])) for pair in pairs}
    found = sorted(set(type_of.values()))
    if not found:
        problems.append(f"no defect type folder under {root}; expected at least one <type>/ folder beside good/")
    if types is None:
        order = tuple(found)
    else:
        order = (types,) if isinstance(types, str) else tuple(types)
        if not order or len(set(order)) != len(order) or not all(isinstance(t, str) and t for t in order):
            problems.append(f"data.types={list(order)!r}; expected distinct, non-empty type names")
        problems += [
            f"data.types entry {name!r} names no type folder (after data.type_map); types found: {', '.join(found)}"
            for name in order
            if name not in found
        ]
        problems += [
            f"type {name!r} (folders {_folder_list([p for p in pairs if type_of[p] == name])}) is not in "
            f"data.types={list(order)!r}; add it, or map its folders onto a listed type with data.type_map"
            for name in found
            if name not in order
        ]
    raise_problems(problems, root)
    return order, type_of
