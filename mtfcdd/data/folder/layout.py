"""The two folder layouts: tell which one a tree has, and find its image folders and their mask folders.

Per-type folders (``types``)::

    DIR/[<category>/]good/*.png                     normal images
    DIR/[<category>/]<type>/*.png                   defective images of one type
    DIR/[<category>/]masks/<type>/<stem>.png        optional masks (or <stem>_mask.png)

Without the category level the tree is one category, named after DIR. MVTec AD (``mvtec``)::

    DIR/<category>/train/good/*.png                 normal training images
    DIR/<category>/test/good/*.png, test/<type>/    normal and defective test images
    DIR/<category>/ground_truth/<type>/<stem>_mask.png

Hidden entries (names starting with ``.``) and files beside the folders (licences, read-mes) are not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtfcdd.data.folder.records import NORMAL_FOLDER, FolderFormatError, raise_problems

LAYOUTS = ("auto", "types", "mvtec")
"""``data.layout``: detected from the tree, or forced."""
MASK_FOLDER = "masks"
"""The per-type layout's folder of masks, beside ``good/`` and the type folders."""
MVTEC_TRAIN, MVTEC_TEST, MVTEC_MASKS = "train", "test", "ground_truth"


@dataclass(frozen=True)
class ImageFolder:
    """A folder of images: its ``category``, ``name`` (``"good"`` or the type folder's name), ``path``, ``pool``
    (see ``POOLS``) and ``masks``, the folder of its masks when there is one."""

    category: str
    name: str
    path: Path
    pool: str
    masks: Path | None = None


@dataclass(frozen=True)
class Layout:
    """A tree's ``layout`` name, its categories with their folders (``category_dirs``) and its image ``folders``."""

    layout: str
    category_dirs: dict[str, Path]
    folders: tuple[ImageFolder, ...]


def subfolders(path: Path) -> list[Path]:
    """The visible folders directly in ``path``, sorted by name (none when ``path`` is not a folder)."""
    if not path.is_dir():
        return []
    return sorted(
        (entry for entry in path.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )


def detect_layout(root: Path) -> str:
    """``"types"`` when ``root/good/`` exists or a category folder holds ``good/``; ``"mvtec"`` when a category
    folder holds ``train/`` or ``test/`` (checked first). Raises ``FolderFormatError`` naming ``root`` when
    neither fits."""
    if (root / NORMAL_FOLDER).is_dir():
        return "types"
    children = subfolders(root)
    if any((child / MVTEC_TRAIN).is_dir() or (child / MVTEC_TEST).is_dir() for child in children):
        return "mvtec"
    if any((child / NORMAL_FOLDER).is_dir() for child in children):
        return "types"
    raise FolderFormatError(
        f"cannot tell the layout of the image folder {root}: expected {root}/good/ beside one folder per defect type, "
        f"{root}/<category>/good/ (the same per category), or {root}/<category>/train/good/ and test/ (MVTec AD)"
    )


def _mask_folder_problems(masks: Path, image_folders: set[str]) -> list[str]:
    return [
        f"mask folder {folder} has no image folder {folder.parent.parent / folder.name}/; expected the masks of "
        "the images of a defect type, in a folder named after it"
        for folder in subfolders(masks)
        if folder.name not in image_folders
    ]


def _types_layout(root: Path) -> tuple[dict[str, Path], list[ImageFolder], list[str]]:
    single = (root / NORMAL_FOLDER).is_dir()
    category_dirs = {root.resolve().name: root} if single else {child.name: child for child in subfolders(root)}
    folders: list[ImageFolder] = []
    problems = [] if category_dirs else [f"{root} holds no category folder; expected {root}/<category>/good/"]
    for category, folder in category_dirs.items():
        if not (folder / NORMAL_FOLDER).is_dir():
            problems.append(f"category {category} has no good images: expected the folder {folder / NORMAL_FOLDER}/")
        else:
            folders.append(ImageFolder(category, NORMAL_FOLDER, folder / NORMAL_FOLDER, "all"))
        masks = folder / MASK_FOLDER
        types = [child for child in subfolders(folder) if child.name not in (NORMAL_FOLDER, MASK_FOLDER)]
        for child in types:
            mask_dir = masks / child.name
            folders.append(ImageFolder(category, child.name, child, "all", mask_dir if mask_dir.is_dir() else None))
        problems += _mask_folder_problems(masks, {child.name for child in types})
    return category_dirs, folders, problems


def _mvtec_layout(root: Path) -> tuple[dict[str, Path], list[ImageFolder], list[str]]:
    category_dirs = {child.name: child for child in subfolders(root)}
    folders: list[ImageFolder] = []
    problems = [] if category_dirs else [f"{root} holds no category folder; expected {root}/<category>/train/good/"]
    for category, folder in category_dirs.items():
        train, test, masks = folder / MVTEC_TRAIN, folder / MVTEC_TEST, folder / MVTEC_MASKS
        if not (train / NORMAL_FOLDER).is_dir():
            problems.append(f"category {category} has no good images: expected the folder {train / NORMAL_FOLDER}/")
        else:
            folders.append(ImageFolder(category, NORMAL_FOLDER, train / NORMAL_FOLDER, "train"))
        problems += [
            f"{child}: the MVTec AD layout keeps defective images in {test}/<type>/; expected {train}/good/ alone"
            for child in subfolders(train)
            if child.name != NORMAL_FOLDER
        ]
        if not (test / NORMAL_FOLDER).is_dir():
            problems.append(f"category {category} has no good test images: expected the folder {test / NORMAL_FOLDER}/")
        else:
            folders.append(ImageFolder(category, NORMAL_FOLDER, test / NORMAL_FOLDER, "test"))
        types = [child for child in subfolders(test) if child.name != NORMAL_FOLDER]
        for child in types:
            mask_dir = masks / child.name
            folders.append(ImageFolder(category, child.name, child, "test", mask_dir if mask_dir.is_dir() else None))
        problems += _mask_folder_problems(masks, {child.name for child in types})
    return category_dirs, folders, problems


def find_folders(root: Path, layout: str = "auto") -> Layout:
    """The image folders of ``root`` in ``layout`` (``"auto"``: ``detect_layout``).

    Raises one ``FolderFormatError`` naming every structural problem: a missing root, a category without a
    ``good/`` folder, a mask folder without its image folder, a defect folder under MVTec's ``train/``.
    """
    if not root.is_dir():
        raise FolderFormatError(
            f"data.root={str(root)!r} does not exist or is not a folder; expected a folder of images"
        )
    name = detect_layout(root) if layout == "auto" else layout
    category_dirs, folders, problems = (_types_layout if name == "types" else _mvtec_layout)(root)
    raise_problems(problems, root, hint=f"read as the {name} layout" + (" (detected)" if layout == "auto" else ""))
    return Layout(name, category_dirs, tuple(folders))
