"""Read a folder of images into a checked ``FolderIndex``: layout, vocabulary,
every image with its mask, the files skipped; a bad folder raises before any training."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mtfcdd.core.config import check_choice
from mtfcdd.data.folder.checks import Unreadable, image_size, list_files, mask_problem, match_masks
from mtfcdd.data.folder.layout import LAYOUTS, ImageFolder, find_folders
from mtfcdd.data.folder.records import (
    IMAGE_SUFFIXES,
    NORMAL_FOLDER,
    SHOW,
    FolderFormatError,
    FolderImage,
    FolderIndex,
    Skipped,
    raise_problems,
)
from mtfcdd.data.folder.vocabulary import resolve_types

ON_UNREADABLE = ("skip", "error")
"""``data.on_unreadable``: leave unreadable and non-image files out (listed), or stop."""


def _size_or_reason(path: Path) -> tuple[int, int] | str:
    try:
        return image_size(path)
    except Unreadable as err:
        return str(err)


def _mask_check(pair: tuple[Path, Path, tuple[int, int]]) -> tuple[str | None, str | None]:
    """(problem, reason the mask is unreadable) of one (mask, image, image size)."""
    try:
        return mask_problem(*pair), None
    except Unreadable as err:
        return None, str(err)


def _empty_folder_problem(folder: ImageFolder, skipped: Sequence[Skipped]) -> str:
    what = (
        f"category {folder.category} has no good images: {folder.path} holds"
        if folder.name == NORMAL_FOLDER
        else f"type folder {folder.path} holds"
    )
    left_out = [item for item in skipped if item.path.parent == folder.path]
    because = ""
    if left_out:
        because = f" ({len(left_out)} files skipped, e.g. {left_out[0].path.name}: {left_out[0].reason})"
    return f"{what} no readable image{because}; expected image files ({', '.join(IMAGE_SUFFIXES)})"


def read_folder(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    type_map: Mapping[str, str] | None = None,
    types: Sequence[str] | None = None,
    on_unreadable: str = "skip",
    threads: int = 8,
) -> FolderIndex:
    """The checked index of the image folder ``root``.

    Args:
        root: the folder (see ``mtfcdd.data.folder.layout`` for the layouts).
        layout: ``"auto"`` (detected), ``"types"`` or ``"mvtec"``.
        type_map: folder name (or ``<category>/<folder>``) -> type name, see
            ``resolve_types``.
        types: the type names in channel order (None: sorted), see the same.
        on_unreadable: ``"skip"`` leaves unreadable and non-image files out (``FolderIndex.skipped``; an image whose
            mask is unreadable goes with it), ``"error"`` raises naming them.
        threads: files checked at once (opening files is I/O: it releases the GIL).

    Raises ``FolderFormatError`` naming every problem: see
    ``find_folders`` and ``resolve_types``, and a folder without a readable
    image, a mask without its image, a mask of another size than its image, a mask that is not binary.
    """
    check_choice("data.layout", layout, LAYOUTS)
    check_choice("data.on_unreadable", on_unreadable, ON_UNREADABLE)
    root = Path(root)
    found = find_folders(root, layout)
    vocabulary, type_of = resolve_types(found.folders, root, type_map, types)
    problems: list[str] = []
    skipped: list[Skipped] = []
    listed: list[tuple[ImageFolder, Path, Path | None]] = []
    for folder in found.folders:
        files, left_out = list_files(folder.path)
        skipped += left_out
        masks: dict[Path, Path] = {}
        if folder.masks is not None:
            masks, mask_problems, left_out = match_masks(files, folder.path, folder.masks)
            problems += mask_problems
            skipped += left_out
        listed += [(folder, path, masks.get(path)) for path in files]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sizes = list(pool.map(_size_or_reason, [path for _, path, _ in listed]))
        pairs = [
            (mask, path, size)
            for (_, path, mask), size in zip(listed, sizes)
            if mask is not None and not isinstance(size, str)
        ]
        mask_results = dict(zip((mask for mask, _, _ in pairs), pool.map(_mask_check, pairs)))
    images: list[FolderImage] = []
    for (folder, path, mask), size in zip(listed, sizes):
        problem, mask_reason = mask_results.get(mask, (None, None))
        if isinstance(size, str):
            skipped.append(Skipped(path, size))
            if mask is not None:
                skipped.append(Skipped(mask, f"its image {path} is skipped"))
        elif mask_reason is not None:
            skipped += [Skipped(mask, mask_reason), Skipped(path, f"its mask {mask} cannot be read")]
        else:
            problems += [problem] if problem else []
            kind = None if folder.name == NORMAL_FOLDER else type_of[(folder.category, folder.name)]
            images.append(FolderImage(folder.category, kind, folder.name, path, mask, folder.pool))
    present = {image.image.parent for image in images}
    problems += [_empty_folder_problem(folder, skipped) for folder in found.folders if folder.path not in present]
    raise_problems(problems, root)
    if skipped and on_unreadable == "error":
        shown = "; ".join(f"{item.path}: {item.reason}" for item in skipped[:SHOW])
        raise FolderFormatError(
            f"{len(skipped)} files under {root} are not readable images, e.g. {shown}; remove them, or set "
            "data.on_unreadable=skip to leave them out (they are then listed in the run directory)"
        )
    return FolderIndex(
        root,
        found.layout,
        vocabulary,
        found.category_dirs,
        tuple(sorted(images, key=lambda image: image.image)),
        tuple(skipped),
    )
