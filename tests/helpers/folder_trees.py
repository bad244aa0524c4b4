"""Small image folders for tests, in the per-type and the MVTec AD layouts (numpy + PIL, a few kB each)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

TYPES = ("crack", "dent", "rust")
"""Three type names that are not Real-IAD's."""
TWELVE_TYPES = tuple(f"type{k:02d}" for k in range(12))
SIZE = (24, 16)
"""(width, height) of every image."""


def write_image(path: Path, seed: int, size: tuple[int, int] = SIZE) -> Path:
    """A random RGB PNG (or JPEG, by ending) of ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = SIZE, values: Sequence[int] = (0, 255)) -> Path:
    """A one-channel PNG mask of ``size``: ``values[0]`` around a rectangle of ``values[1]`` (and of further
    ``values`` in its corners, to make it non-binary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0]), values[0], dtype=np.uint8)
    pixels[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4] = (
        values[1] if len(values) > 1 else values[0]
    )
    for k, value in enumerate(values[2:]):
        pixels[k, k] = value
    Image.fromarray(pixels).save(path)
    return path


def _write_type_folder(folder: Path, masks: Path | None, count: int, seed: int, mask_ending: str) -> None:
    for k in range(count):
        write_image(folder / f"{k:03d}.png", seed * 1000 + k)
        if masks is not None and k % 2 == 0:  # masks for some images only
            write_mask(masks / f"{k:03d}{mask_ending}.png")


def make_types_tree(
    root: Path,
    types: Sequence[str] = TYPES,
    categories: Sequence[str] | None = None,
    good: int = 8,
    per_type: int = 6,
    masks: bool = True,
    mask_ending: str = "",
) -> Path:
    """``root/[<category>/]good/``, ``<type>/`` and (``masks``) ``masks/<type>/<stem><mask_ending>.png`` for every
    other image; ``categories`` None: no category level."""
    for c, category in enumerate(categories or [None]):
        base = root if category is None else root / category
        _write_type_folder(base / "good", None, good, 100 * c, mask_ending)
        for t, name in enumerate(types):
            _write_type_folder(
                base / name, base / "masks" / name if masks else None, per_type, 100 * c + t + 1, mask_ending
            )
    return root


def make_mvtec_tree(
    root: Path,
    categories: Sequence[str] = ("bottle", "cable"),
    types: Sequence[str] = TYPES,
    train_good: int = 8,
    test_good: int = 6,
    per_type: int = 6,
) -> Path:
    """MVTec AD: ``<category>/train/good/``, ``test/good/``, ``test/<type>/`` and ``ground_truth/<type>/`` with a
    ``<stem>_mask.png`` for every defective image; file names ``000.png`` ... repeat across folders."""
    for c, category in enumerate(categories):
        base = root / category
        _write_type_folder(base / "train" / "good", None, train_good, 100 * c, "")
        _write_type_folder(base / "test" / "good", None, test_good, 100 * c + 50, "")
        for t, name in enumerate(types):
            folder, masks = base / "test" / name, base / "ground_truth" / name
            for k in range(per_type):
                write_image(folder / f"{k:03d}.png", (100 * c + t + 1) * 1000 + k)
                write_mask(masks / f"{k:03d}_mask.png")
        (base / "license.txt").write_text("not read\n")
    (root / "readme.txt").write_text("not read\n")
    return root
