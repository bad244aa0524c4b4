"""New images for prediction: find them (a folder, a file or a glob) and serve them as the evaluation transform does.

A file that cannot be decoded does not stop the others: its sample carries the reason in ``error`` (and a black
image), so that the prediction writer lists it in ``errors.csv``.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from mtfcdd.core.errors import UserError
from mtfcdd.data.dataset import read_image
from mtfcdd.data.realiad import RealIADFormatError
from mtfcdd.data.transforms import eval_transform

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class NoImagesError(UserError, FileNotFoundError):
    """The prediction input names no image file."""


def find_images(source: str) -> list[Path]:
    """Image files of ``source``: a file; every image below a folder (recursively); or the images a glob matches
    (``**`` recursive). Sorted; raises ``NoImagesError`` naming ``source`` when there are none."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    candidates = path.rglob("*") if path.is_dir() else (Path(p) for p in glob.glob(str(path), recursive=True))
    files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NoImagesError(
            f"input={source!r} matches no image file; expected a file, a folder or a glob of "
            f"{', '.join(IMAGE_SUFFIXES)} files"
        )
    return files


class ImageFileDataset(Dataset):
    """Samples ``{"image": float32 [3, S, S] RGB in [0, 1], "path": str, "error": str}`` of image files resized to
    ``image_size`` as the evaluation transform does; ``error`` is empty, or why the file could not be read."""

    def __init__(self, paths: Sequence[Path], image_size: int) -> None:
        self.paths = list(paths)
        self.image_size = image_size
        self.transform = eval_transform(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, object]:
        path = self.paths[index]
        try:
            image = network_input(read_image(path), self.transform)
        except RealIADFormatError as err:
            blank = torch.zeros(3, self.image_size, self.image_size)
            return {"image": blank, "path": str(path), "error": str(err)}
        return {"image": image, "path": str(path), "error": ""}


def network_input(rgb: np.ndarray, transform: A.Compose) -> torch.Tensor:
    """A decoded image RGB uint8 [H, W, 3] (``read_image``, ``decode_image``) -> the
    pipeline's raw input float32 [3, S, S] in [0, 1] through ``transform`` (``eval_transform``): predict's and
    the server's one preprocessing."""
    pixels = transform(image=rgb)["image"]
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
