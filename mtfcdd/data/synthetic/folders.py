"""Writing the per-type and the MVTec AD folder layouts: the type names of the eight looks, the files of each
category, one view of each sample.

``layout="types"`` (JPEG images, as photos sorted by hand)::

    DIR/<category>/good/000.jpg ...              train_samples + test_ok_samples normal images
    DIR/<category>/<type>/000.jpg ...            defects_per_type defective images per type
    DIR/<category>/masks/<type>/000.png          the mask of each defective image (same stem)

``layout="mvtec"`` (MVTec AD: PNG images, names repeat across folders)::

    DIR/<category>/train/good/000.png ...        train_samples normal images
    DIR/<category>/test/good/000.png ...         test_ok_samples normal images
    DIR/<category>/test/<type>/000.png ...       defects_per_type defective images per type
    DIR/<category>/ground_truth/<type>/000_mask.png

Every image is one view of its own sample: C1 of a normal sample, the first view that shows the defect of a
defective one. The folders hold no split: ``data=folder`` makes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mtfcdd.core.defect_types import NORMAL_CLASS
from mtfcdd.core.errors import UserError
from mtfcdd.data.folder.checks import MASK_STEM_ENDING
from mtfcdd.data.folder.layout import MASK_FOLDER, MVTEC_MASKS, MVTEC_TEST, MVTEC_TRAIN
from mtfcdd.data.folder.records import NORMAL_FOLDER
from mtfcdd.data.synthetic.config import SyntheticConfig
from mtfcdd.data.synthetic.layout import JPEG_QUALITY, _write_encoded
from mtfcdd.data.synthetic.sample import render_sample

FOLDER_LAYOUTS = ("types", "mvtec")
"""Layouts without split files, read by ``data=folder``; beside ``LAYOUTS``."""
FOLDER_TYPES: dict[str, str] = {
    "crack": "PS",  # a chipped edge with cracks running into the body
    "dent": "BX",  # the outline bulged out or dented in
    "rust": "AK",  # dark pits
    "stain": "ZW",  # a translucent smear
    "streak": "HS",  # thin scratches
    "wear": "CH",  # a speckled, dulled patch
    "gap": "QS",  # a component torn off
    "debris": "YW",  # a hair, wire or chip lying on the part
}
"""Type name of the folder layouts -> the Real-IAD code whose look is drawn; ``types=N`` takes the first N. No name
is a Real-IAD code or name, so that a run on these folders shows whether the names reach every output."""
MIN_DEFECTS_PER_TYPE = 6
"""Default floor of defective images per type: the folder split's defaults then give each type two test images,
one validation image and three training ones (per-type layout)."""
_MASKS = {"types": (MASK_FOLDER, ""), "mvtec": (MVTEC_MASKS, MASK_STEM_ENDING)}
"""Layout -> (mask folder beside the image folders, ending of a mask's stem)."""

Task = tuple[str, str, str, int, int, int, str, str | None]
"""(root, category, kind, sample number, size, seed, image path, mask path or None), paths relative to root."""


def check_types(types: Sequence[str] | None) -> tuple[str, ...]:
    """The folder types to write (None: all of ``FOLDER_TYPES``); raises ``UserError`` for a name out of
    them, a repeated name or no name."""
    if types is None:
        return tuple(FOLDER_TYPES)
    names = (types,) if isinstance(types, str) else tuple(types)
    if not names or len(set(names)) != len(names) or any(name not in FOLDER_TYPES for name in names):
        raise UserError(f"types={list(names)!r} is not valid; give distinct names out of: {', '.join(FOLDER_TYPES)}")
    return names


def check_defects_per_type(config: SyntheticConfig, count: int | None) -> int:
    """Defective images per type and category: ``count``, or (None) as many defective samples as the Real-IAD
    build has per type, at least ``MIN_DEFECTS_PER_TYPE``."""
    if count is None:
        return max(MIN_DEFECTS_PER_TYPE, config.ng_train_per_type + config.test_ng_samples)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
        raise UserError(f"defects_per_type={count!r} is not valid; expected an integer in [1, 100000]")
    return count


def _folder_tasks(
    root: str, config: SyntheticConfig, category: str, seed: int, layout: str, types: Sequence[str], defects: int
) -> list[Task]:
    """One task per image of ``category``; normal samples are numbered 1.. across its normal folders."""
    suffix = ".jpg" if layout == "types" else ".png"
    mask_folder, mask_ending = _MASKS[layout]
    ok_folders = (
        [(NORMAL_FOLDER, config.train_samples + config.test_ok_samples)]
        if layout == "types"
        else [
            (f"{MVTEC_TRAIN}/{NORMAL_FOLDER}", config.train_samples),
            (f"{MVTEC_TEST}/{NORMAL_FOLDER}", config.test_ok_samples),
        ]
    )
    tasks: list[Task] = []
    number = 0
    for folder, count in ok_folders:
        for k in range(count):
            number += 1
            image = f"{category}/{folder}/{k:03d}{suffix}"
            tasks.append((root, category, NORMAL_CLASS, number, config.size, seed, image, None))
    for name in types:
        folder = name if layout == "types" else f"{MVTEC_TEST}/{name}"
        for k in range(defects):
            image = f"{category}/{folder}/{k:03d}{suffix}"
            mask = f"{category}/{mask_folder}/{name}/{k:03d}{mask_ending}.png"
            tasks.append((root, category, FOLDER_TYPES[name], k + 1, config.size, seed, image, mask))
    return tasks


def folder_tasks(
    root: Path, config: SyntheticConfig, seed: int, layout: str, types: Sequence[str], defects_per_type: int
) -> list[Task]:
    """Every image of a folder-layout build under ``root``, category by category."""
    return [
        task
        for category in config.categories
        for task in _folder_tasks(str(root), config, category, seed, layout, types, defects_per_type)
    ]


def write_view(
    root: str, category: str, kind: str, number: int, size: int, seed: int, image: str, mask: str | None
) -> None:
    """Render sample ``number`` and write one view at ``root/image`` (C1, or the first defective view) and its
    mask at ``root/mask`` (0 / 255 PNG)."""
    rendered = render_sample(category, kind, number, size=size, seed=seed)
    view = next((v for v, m in enumerate(rendered.masks) if m is not None), 0)
    path = Path(root) / image
    path.parent.mkdir(parents=True, exist_ok=True)
    options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    _write_encoded(path, cv2.cvtColor(rendered.images[view], cv2.COLOR_RGB2BGR), options)
    if mask is not None:
        (Path(root) / mask).parent.mkdir(parents=True, exist_ok=True)
        _write_encoded(Path(root) / mask, rendered.masks[view].astype(np.uint8) * 255, [])


def folder_counts(tasks: Sequence[Task]) -> dict[str, dict[str, int]]:
    """Category -> image folder (relative to the category: ``good``, ``crack``, ``test/crack``, ...) -> images, plus
    ``images`` and ``masks``."""
    counts: dict[str, dict[str, int]] = {}
    for _, category, _, _, _, _, image, mask in tasks:
        per = counts.setdefault(category, {"images": 0, "masks": 0})
        folder = image.split("/", 1)[1].rsplit("/", 1)[0]
        per[folder] = per.get(folder, 0) + 1
        per["images"] += 1
        per["masks"] += mask is not None
    return counts
