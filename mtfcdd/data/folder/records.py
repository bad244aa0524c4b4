"""What reading a folder yields: its images with their types and masks, the files skipped, and the folder error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mtfcdd.core.errors import UserError

NORMAL_FOLDER = "good"
"""The folder of normal images in both layouts, and the ``anomaly_class`` of normal images in the split JSONs."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File endings read as images (case-insensitive), as ``mtfcdd.data.images`` finds prediction inputs."""
POOLS = ("train", "test", "all")
"""Where an image may go: ``train`` (MVTec's train/good: training only), ``test`` (MVTec's test/: validation, test
or, by ``train_defect_fraction``, training), ``all`` (the per-type layout: any split)."""
SHOW = 5
"""How many problems or files an error message names."""


class FolderFormatError(UserError, ValueError):
    """The image folder does not have the expected layout or content; the message names the path and what was
    expected."""


def raise_problems(problems: Sequence[str], root: Path, hint: str = "") -> None:
    """Raise one ``FolderFormatError`` naming the first ``SHOW`` ``problems`` (and how many there are)."""
    if not problems:
        return
    shown = "; ".join(problems[:SHOW]) + (f"; ... ({len(problems) - SHOW} more)" if len(problems) > SHOW else "")
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    raise FolderFormatError(f"{count} in the image folder {root}: {shown}" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class Skipped:
    """A file left out: ``path`` and ``reason`` (not an image, unreadable, truncated, ...)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class FolderImage:
    """One image: ``category``; ``type`` its vocabulary name (None for normal images); ``folder`` the name of the
    folder it lies in (``"good"``, ``"broken_large"``, ...); ``image`` and ``mask`` (None: no mask) as paths under
    the root; ``pool`` one of ``POOLS``. Its path is its identity (``000.png`` repeats across folders)."""

    category: str
    type: str | None
    folder: str
    image: Path
    mask: Path | None
    pool: str


@dataclass(frozen=True)
class FolderIndex:
    """A checked folder: ``root``; ``layout`` (``"types"`` or ``"mvtec"``); ``types`` the vocabulary (type names in
    channel order); ``categories`` with the folder each one's paths are relative to (``category_dirs``, the root
    itself for a per-type folder without a category level); ``images`` sorted by path; ``skipped`` the files left
    out."""

    root: Path
    layout: str
    types: tuple[str, ...]
    category_dirs: dict[str, Path]
    images: tuple[FolderImage, ...]
    skipped: tuple[Skipped, ...]
