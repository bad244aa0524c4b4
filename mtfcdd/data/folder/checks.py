"""File checks of an image folder: which files are images, their sizes (headers only), masks matched to their images
and checked (size, binary values), and the list of skipped files as CSV.

Images are opened lazily (PIL reads the header, not the pixels) and their last bytes looked at for the end marker of
PNG and JPEG files, so checking thousands of files costs little; masks are read whole to check their values.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.data.folder.records import IMAGE_SUFFIXES, Skipped

MASK_SUFFIX = ".png"
MASK_STEM_ENDING = "_mask"
"""A mask is ``<image stem>.png`` or ``<image stem>_mask.png``."""
_TAIL = 32
"""Bytes at the end of a file searched for its end marker."""
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}


class Unreadable(Exception):
    """A file that cannot serve as an image or a mask; the message is the reason."""


def list_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """The image files directly in ``folder`` (by ending, sorted by name) and the entries skipped: other files
    and sub-folders (hidden names are not read)."""
    files, skipped = [], []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            skipped.append(Skipped(path, f"a folder inside an image folder (images are read from {folder} itself)"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(Skipped(path, f"not an image file (expected a name ending in {', '.join(IMAGE_SUFFIXES)})"))
        elif "\\" in entry.name:
            skipped.append(Skipped(path, "its name holds a backslash, which split files read as a folder separator"))
        else:
            files.append(path)
    return files, skipped


def _ends_cleanly(path: Path, image_format: str | None) -> bool:
    marker = _END_MARKERS.get(image_format or "")
    if marker is None:
        return True
    with open(path, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - _TAIL))
        return marker in handle.read()


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the file's header; raises ``Unreadable`` for a file PIL cannot identify,
    floating-point pixels, or a PNG / JPEG cut short (no end marker)."""
    try:
        with Image.open(path) as image:
            size, mode, image_format = image.size, image.mode, image.format
        complete = _ends_cleanly(path, image_format)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise Unreadable(f"not a readable image ({err})") from err
    if mode == "F":
        raise Unreadable("floating-point pixels (mode F); expected 8- or 16-bit integers")
    if not complete:
        raise Unreadable(f"truncated {image_format} file (no end marker)")
    return size


def mask_values(path: Path) -> tuple[tuple[int, int], np.ndarray]:
    """(width, height) and the sorted distinct pixel values of a mask; colour masks count a pixel by its largest
    colour channel (alpha ignored), as ``mtfcdd.data.dataset.read_mask`` does. Raises ``Unreadable``."""
    try:
        with Image.open(path) as mask:
            pixels = np.asarray(mask.convert("L") if mask.mode == "P" else mask)
            size = mask.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise Unreadable(f"not a readable mask ({err})") from err
    if pixels.ndim == 3:
        pixels = pixels[..., : 1 if pixels.shape[2] <= 2 else 3].max(axis=2)
    return size, np.unique(pixels)


def mask_problem(mask: Path, image: Path, size: tuple[int, int]) -> str | None:
    """What is wrong with ``mask`` as the mask of ``image`` (``size`` pixels), or None; raises ``Unreadable``."""
    mask_size, values = mask_values(mask)
    if mask_size != size:
        return (
            f"mask {mask} is {mask_size[0]}x{mask_size[1]} pixels but its image {image} is {size[0]}x{size[1]}; "
            "expected the same size"
        )
    if len(values) == 1 and values[0] == 0:
        return f"mask {mask} has no defective pixel (all 0); expected 0 and one other value (e.g. 255), or no mask file"
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        return (
            f"mask {mask} is not binary: it holds {len(values)} distinct values ({shown}); expected 0 for normal "
            "pixels and one other value (e.g. 255) for defective ones"
        )
    return None


def match_masks(
    images: Sequence[Path], image_folder: Path, folder: Path
) -> tuple[dict[Path, Path], list[str], list[Skipped]]:
    """Each image's mask in ``folder`` (``<stem>.png``, else ``<stem>_mask.png``), the problems (a mask without
    its image in ``image_folder``, an image with two masks, a mask that fits two images) and the entries of
    ``folder`` skipped."""
    by_stem: dict[str, list[Path]] = {}
    for image in images:
        by_stem.setdefault(image.stem, []).append(image)
    masks: dict[Path, Path] = {}
    problems: list[str] = []
    skipped: list[Skipped] = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or path.suffix.lower() != MASK_SUFFIX:
            skipped.append(Skipped(path, "not a mask file (expected <image stem>.png or <image stem>_mask.png)"))
            continue
        stem = path.stem
        if stem not in by_stem and stem.endswith(MASK_STEM_ENDING):
            stem = stem[: -len(MASK_STEM_ENDING)]
        owners = by_stem.get(stem, [])
        if not owners:
            problems.append(f"mask {path} has no image: expected {image_folder}/{stem}.<ext>")
        elif len(owners) > 1:
            problems.append(
                f"mask {path} fits {len(owners)} images ({', '.join(p.name for p in owners)}); "
                "expected one image per file stem"
            )
        elif owners[0] in masks:
            problems.append(f"image {owners[0]} has two masks, {masks[owners[0]]} and {path}; expected one")
        else:
            masks[owners[0]] = path
    return masks, problems, skipped


def write_skipped(path: Path, skipped: Sequence[Skipped]) -> Path:
    """Write the skipped files as CSV (columns ``path``, ``reason``) to ``path``, atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows([str(item.path), item.reason] for item in skipped)
    return write_bytes_atomic(path, text.getvalue().encode("utf-8"))
