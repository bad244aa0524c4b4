"""Images for int8 calibration and for measuring an engine's deviation from fp32 where no training set is at hand
(with one, the data module serves them; ``mtfcdd.inference.calibration.int8_calibration_images`` picks the
source).

Sources: ``synthetic`` (views rendered in memory by the synthetic Real-IAD generator: objects on real scikit-image
textures, mostly OK samples with some defects, like a training set), ``skimage`` (scikit-image's photographs,
cropped at random), or ``dir`` (every ``.jpg``/``.jpeg``, else non-mask ``.png``, below a folder, e.g. Real-IAD's
``realiad_256``). Images are resized bilinearly to ``size``: raw RGB in [0, 1], what the inference pipeline takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtfcdd.core.config import ConfigError, check_choice

SOURCES = ("synthetic", "skimage", "dir")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "coins", "camera", "moon")


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 or float (H, W[, C]) -> float32 [3, H, W] in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    array = array[..., :3]
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / scale).permute(2, 0, 1)


def _synthetic_images(count: int, offset: int, seed: int) -> list[torch.Tensor]:
    from mtfcdd.data.synthetic import rendered_views

    return [_to_tensor(view) for view in rendered_views(count, offset, seed)]


def _skimage_images(count: int, offset: int, seed: int) -> list[torch.Tensor]:
    from skimage import data

    photos = [_to_tensor(getattr(data, name)()) for name in SKIMAGE_PHOTOS]
    rng = np.random.default_rng([seed, offset])
    images = []
    for index in range(count):
        photo = photos[(offset + index) % len(photos)]
        height, width = photo.shape[-2:]
        side = int(min(height, width) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = photo[:, top : top + side, left : left + side]
        images.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    return images


def _dir_images(root: str | Path, count: int, offset: int) -> list[torch.Tensor]:
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"int8_images.root={str(root)!r}: the calibration image folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        files = sorted(p for p in root.rglob("*.png") if "mask" not in p.name.lower())
    if len(files) < offset + count:
        raise ConfigError(f"int8_images.root={str(root)!r} holds {len(files)} images; {offset + count} are needed")
    step = max(1, (len(files) - offset) // count)  # spread over the folder (categories, views)
    chosen = files[offset::step][:count]
    return [_to_tensor(np.asarray(Image.open(path).convert("RGB"))) for path in chosen]


def load_images(
    count: int,
    size: int | Sequence[int],
    source: str = "synthetic",
    offset: int = 0,
    seed: int = 0,
    root: str | Path | None = None,
) -> torch.Tensor:
    """``count`` raw images [count, 3, H, W] float32 in [0, 1]. ``offset`` selects a disjoint set (calibration at 0,
    evaluation of deviations at another offset)."""
    check_choice("int8_images.source", source, SOURCES)
    if source == "synthetic":
        images = _synthetic_images(count, offset, seed)
    elif source == "skimage":
        images = _skimage_images(count, offset, seed)
    else:
        if root is None:
            raise ConfigError("int8_images.source=dir needs a folder (int8_images.root=...)")
        images = _dir_images(root, count, offset)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    resized = [
        F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        for image in images
    ]
    return torch.cat(resized).clamp_(0.0, 1.0)
