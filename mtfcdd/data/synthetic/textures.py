"""Real textures and photographs from scikit-image (shipped with the package, never downloaded) and the pixel grid."""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
import skimage.data

SKIMAGE_FILES: dict[str, str] = {
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "immunohistochemistry": "ihc.png",
}
"""scikit-image data images used here -> their file in the wheel's data folder (shipped, so no download)."""


@cache
def skimage_image(name: str) -> np.ndarray:
    """A scikit-image data image (same pixels as ``skimage.data.<name>()``) as float32 in [0, 1], (H, W) or
    (H, W, 3) RGB, read straight from the installed package (never downloaded)."""
    path = Path(skimage.data.__file__).parent / SKIMAGE_FILES[name]
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"{path}: scikit-image data file missing; reinstall scikit-image (>= 0.22)")
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    return image.astype(np.float32) / 255.0


@lru_cache(maxsize=32)
def _texture(name: str, size: int) -> np.ndarray:
    """Grey texture rescaled so that ``size`` px show a quarter of it, normalised to zero mean and unit std."""
    grey = skimage_image(name)
    scaled = cv2.resize(grey, (2 * size, 2 * size), interpolation=cv2.INTER_AREA)
    return (scaled - scaled.mean()) / (scaled.std() + 1e-6)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (size, size) float32."""
    coords = np.arange(size, dtype=np.float32)
    return np.meshgrid(coords, coords)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
