"""Image files of every kind predict and the server decode: RGB and RGBA PNG, gray JPEG, 16-bit TIFF and PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_image_kinds(root: Path, rng: np.random.Generator) -> list[Path]:
    """Writes rgb.png, gray.jpg, rgba.png, deep16.tif and gray16.png (random pixels) under ``root``."""
    kinds = {
        "rgb.png": rng.integers(0, 256, (60, 80, 3), dtype=np.uint8),
        "gray.jpg": rng.integers(0, 256, (50, 50), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (40, 30, 4), dtype=np.uint8),
        "deep16.tif": rng.integers(0, 65536, (64, 64, 3), dtype=np.uint16),
        "gray16.png": rng.integers(0, 65536, (32, 48), dtype=np.uint16),
    }
    for name, pixels in kinds.items():
        cv2.imwrite(str(root / name), pixels)
    return [root / name for name in kinds]
