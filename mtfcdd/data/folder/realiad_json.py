"""A folder split as Real-IAD split files, which ``mtfcdd.data.realiad.load_splits`` reads as it reads
Real-IAD's: ``<folder>/realiad_jsons/<category>.json`` (json_set ``standard``), paths relative to the category's
folder under the user's root, so that ``load_splits(<folder>, json_set="standard", image_root=<root>,
splits=("train", "validation", "test"), defect_codes=<vocabulary>)`` serves the user's own files (no copy, no link).

Each file holds ``meta`` (``prefix``: the category folder relative to the root, ``""`` for a tree without a category
level; ``normal_class``: ``"good"``; ``sample_per_image``: true; ``types``: the vocabulary; ``layout``; ``split``:
the split's arguments) and the ``train``, ``validation`` and ``test`` records (``anomaly_class`` the type name or
``"good"``; ``mask_path`` null where there is no mask).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.data.folder.records import NORMAL_FOLDER, FolderFormatError, FolderImage, FolderIndex
from mtfcdd.data.folder.split import FolderSplit
from mtfcdd.data.realiad import VAL_SPLIT, json_folder_name

JSON_SET = "standard"
"""The ``data.json_set`` whose folder (``realiad_jsons``) holds a folder split's files."""
SPLIT_NAMES = {"train": "train", "val": VAL_SPLIT, "test": "test"}
"""FolderSplit attribute -> list name in the split files."""


def _record(image: FolderImage, base: Path) -> dict[str, object]:
    return {
        "category": image.category,
        "anomaly_class": NORMAL_FOLDER if image.type is None else image.type,
        "image_path": image.image.relative_to(base).as_posix(),
        "mask_path": None if image.mask is None else image.mask.relative_to(base).as_posix(),
    }


def split_metas(index: FolderIndex, options: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Category name -> the ``meta`` of its split file, for a split made with ``options``
    (``split_options``)."""
    metas = {}
    for category, base in index.category_dirs.items():
        prefix = base.relative_to(index.root).as_posix()
        metas[category] = {
            "prefix": "" if prefix == "." else prefix + "/",
            "normal_class": NORMAL_FOLDER,
            "sample_per_image": True,
            "types": list(index.types),
            "layout": index.layout,
            "split": dict(options),
        }
    return metas


def split_documents(index: FolderIndex, split: FolderSplit) -> dict[str, dict[str, object]]:
    """Category name -> its split file's content (see the module's description)."""
    documents = {}
    for category, meta in split_metas(index, split.options).items():
        base = index.category_dirs[category]
        documents[category] = {"meta": meta} | {
            key: [_record(image, base) for image in getattr(split, name) if image.category == category]
            for name, key in SPLIT_NAMES.items()
        }
    return documents


def split_folder_of(folder: str | Path) -> Path:
    """Where ``write_split`` puts the split files of ``folder``: ``<folder>/realiad_jsons``."""
    return Path(folder) / json_folder_name(JSON_SET, 0.0)


def stored_metas(folder: str | Path) -> dict[str, dict[str, object]] | None:
    """Category name -> the ``meta`` of each split file under ``folder`` (None: no split there). Raises
    ``FolderFormatError`` for a file that is not a split file."""
    files = sorted(split_folder_of(folder).glob("*.json"))
    if not files:
        return None
    metas = {}
    for path in files:
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("meta")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as err:
            meta = err
        if not isinstance(meta, dict):
            raise FolderFormatError(f"{path} is not a split file ({meta!r}); expected a JSON object with a meta object")
        metas[path.stem] = meta
    return metas


def _flat(meta: Mapping[str, object]) -> dict[str, object]:
    """``meta`` with its nested objects' keys as ``<key>.<name>``, values as a JSON file holds them."""
    flat: dict[str, object] = {}
    for key, value in json.loads(json.dumps(meta)).items():
        flat.update(
            {f"{key}.{name}": item for name, item in value.items()} if isinstance(value, dict) else {key: value}
        )
    return flat


def split_differences(
    stored: Mapping[str, Mapping[str, object]], expected: Mapping[str, Mapping[str, object]]
) -> list[str]:
    """How the metas of stored split files (``stored_metas``) differ from ``expected`` (``split_metas``),
    one line per difference; empty: the stored split is the one these options make of this folder."""
    if set(stored) != set(expected):
        return [f"categories {', '.join(sorted(stored))} there, {', '.join(sorted(expected))} now"]
    differences: set[str] = set()
    for category, meta in expected.items():
        there = _flat(stored[category])
        differences.update(
            f"{key} {there.get(key)!r} there, {value!r} now"
            for key, value in _flat(meta).items()
            if key not in there or there[key] != value
        )
    return sorted(differences)


def write_split(index: FolderIndex, split: FolderSplit, folder: str | Path) -> Path:
    """Write the split files under ``folder`` (each file atomically, after all were built); returns their folder
    (``<folder>/realiad_jsons``). Raises ``FolderFormatError`` when that folder
    already holds the file of another category (the loader would read it too)."""
    target = split_folder_of(folder)
    documents = split_documents(index, split)
    stale = sorted(path.name for path in target.glob("*.json") if path.stem not in documents)
    if stale:
        raise FolderFormatError(
            f"{target} already holds split files of other categories ({', '.join(stale)}); "
            f"expected only those of {', '.join(documents)}: write the split into a new folder"
        )
    contents = {name: (json.dumps(doc, indent=1) + "\n").encode("utf-8") for name, doc in documents.items()}
    for name, data in contents.items():
        write_bytes_atomic(target / f"{name}.json", data)
    return target
