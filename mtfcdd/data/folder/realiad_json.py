"""A folder split as Real-IAD split files, which :func:`mtfcdd.data.realiad.load_splits` reads as it reads
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


def split_documents(index: FolderIndex, split: FolderSplit) -> dict[str, dict[str, object]]:
    """Category name -> its split file's content (see the module's description)."""
    documents = {}
    for category, base in index.category_dirs.items():
        prefix = base.relative_to(index.root).as_posix()
        meta = {
            "prefix": "" if prefix == "." else prefix + "/",
            "normal_class": NORMAL_FOLDER,
            "sample_per_image": True,
            "types": list(index.types),
            "layout": index.layout,
            "split": dict(split.options),
        }
        documents[category] = {"meta": meta} | {
            key: [_record(image, base) for image in getattr(split, name) if image.category == category]
            for name, key in SPLIT_NAMES.items()
        }
    return documents


def write_split(index: FolderIndex, split: FolderSplit, folder: str | Path) -> Path:
    """Write the split files under ``folder`` (each file atomically, after all were built); returns their folder
    (``<folder>/realiad_jsons``). Raises :class:`~mtfcdd.data.folder.records.FolderFormatError` when that folder
    already holds the file of another category (the loader would read it too)."""
    target = Path(folder) / json_folder_name(JSON_SET, 0.0)
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
