"""Albumentations pipelines: training augmentation (Section 4.3 of the paper) and evaluation preprocessing.

Both end with a resize to ``image_size`` x ``image_size`` (bilinear for images, nearest for masks) and a conversion
to float RGB in [0, 1]; the inference pipeline normalises with the backbone's mean and std. Training adds, on a share
``p`` of the images, one block of rotation, translation (in pixels of the image as read, before the resize) and
brightness / contrast changes; with ``dihedral``, every training image also gets one of the 8 flips and
90-degree rotations of the square, drawn uniformly (for parts that look the same under them: cells, wafers, fabrics).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from numbers import Real

import albumentations as A
import cv2
import numpy as np

from mtfcdd.core.config import ConfigError


@dataclass(frozen=True)
class Augment:
    """Training augmentation knobs (the config's ``data.augment``).

    p: probability that an image gets the augmentation block (all of it, else none of it).
    rotate_deg: rotation drawn uniformly from [-rotate_deg, rotate_deg] degrees.
    translate_px: shift drawn per axis uniformly from [-translate_px, translate_px] whole pixels, at the resolution
        read.
    brightness, contrast: RandomBrightnessContrast limits (fractions of the full range / of the contrast).
    dihedral: every image also gets one of the 8 symmetries of the square (flips, 90-degree rotations), uniformly.
    """

    p: float = 0.5
    rotate_deg: float = 15.0
    translate_px: int = 20
    brightness: float = 0.2
    contrast: float = 0.2
    dihedral: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dihedral, bool):
            raise ConfigError(f"data.augment.dihedral={self.dihedral!r} is not valid; expected true or false")
        for field in fields(self):
            if field.name == "dihedral":
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
                raise ConfigError(f"data.augment.{field.name}={value!r} is not valid; expected a non-negative number")
        if self.p > 1:
            raise ConfigError(f"data.augment.p={self.p!r} is not valid; expected a probability in [0, 1]")
        if int(self.translate_px) != self.translate_px:
            raise ConfigError(f"data.augment.translate_px={self.translate_px!r} is not valid; expected whole pixels")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> Augment:
        """Defaults overridden by ``values``; unknown keys are rejected by name."""
        values = dict(values or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"data.augment has unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]


def check_image_size(image_size: int) -> None:
    """Raise ``ConfigError`` unless the size is a positive integer."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"data.image_size={image_size!r} is not valid; expected a positive integer (pixels)")


def check_normalisation(mean: Sequence[float], std: Sequence[float]) -> None:
    """Raise ``ConfigError`` unless mean/std are 3 numbers each (std > 0)."""
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3 or not all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"data.{name}={list(values)!r} is not valid; expected 3 numbers (R, G, B)")
    if min(std) <= 0:
        raise ConfigError(f"data.std={list(std)!r} is not valid; every value must be positive")


def _resize_to_unit_range(image_size: int) -> list[A.BasicTransform]:
    check_image_size(image_size)
    return [
        A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
        A.ToFloat(max_value=255.0),
    ]


def eval_transform(image_size: int) -> A.Compose:
    """Resize + scale: RGB uint8 [H, W, 3] (+ mask) -> float32 [S, S, 3] in [0, 1] (+ mask [S, S])."""
    return A.Compose(_resize_to_unit_range(image_size))


def train_transform(image_size: int, augment: Augment, seed: int | None = None) -> A.Compose:
    """With probability ``augment.p``: rotate + translate, then brightness/contrast; with ``augment.dihedral`` one of
    the square's 8 symmetries; then resize + scale to [0, 1].

    ``seed`` seeds the pipeline's random generators (see ``reseed``); the training loader reseeds it for every
    draw (``mtfcdd.resume.loader.SeededDraws``).
    """
    block = A.Compose(
        [
            A.Affine(
                rotate=(-augment.rotate_deg, augment.rotate_deg),
                translate_px=(-int(augment.translate_px), int(augment.translate_px)),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=1.0,
            ),
            A.RandomBrightnessContrast(brightness_limit=augment.brightness, contrast_limit=augment.contrast, p=1.0),
        ],
        p=augment.p,
    )
    symmetries = [A.D4(p=1.0)] if augment.dihedral else []
    transform = A.Compose([block, *symmetries, *_resize_to_unit_range(image_size)])
    reseed(transform, seed)
    return transform


def reseed(transform: A.BaseCompose, seed: int | Sequence[int] | None) -> None:
    """Give every step of ``transform`` one shared pair of random generators seeded from ``seed`` (an int or a
    sequence of ints, as ``numpy.random.SeedSequence`` takes; None: OS entropy).

    Albumentations ignores the global numpy/python seeds, and its own ``seed=`` gives each step a separate generator
    with the same seed, so that the draws of different steps are correlated.
    """
    numpy_seed, python_seed = np.random.SeedSequence(seed).spawn(2)
    transform.set_random_state(np.random.default_rng(numpy_seed), random.Random(int(python_seed.generate_state(1)[0])))
