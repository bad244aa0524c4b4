"""One sample rendered in memory: its five views, the clean views, the defect masks and the object masks."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from mtfcdd.core.defect_types import DEFECT_CODES, NORMAL_CLASS
from mtfcdd.data.synthetic.defects import DEFECT_DRAWERS
from mtfcdd.data.synthetic.scene import _make_object, _make_view, _render_layers
from mtfcdd.data.synthetic.styles import CATEGORY_STYLES
from mtfcdd.data.synthetic.textures import _to_uint8

VIEWS = ("C1", "C2", "C3", "C4", "C5")
MASK_AREA = (0.005, 0.045)
"""Bounds on the share of the image a defect mask covers, enforced per defective view (typically 1-3 %)."""
DEFECTIVE_VIEW_WEIGHTS = (0.05, 0.15, 0.3, 0.3, 0.2)
"""Probability that an NG sample shows its defect in 1, 2, 3, 4 or 5 of its views (mean 3.45 of 5)."""

_CHANGE_LEVELS = 3
"""A defect pixel must differ from the clean render by at least this many 8-bit levels in some channel."""


def _rng(seed: int, category: str, kind: str, number: int, *stream: int) -> np.random.Generator:
    """The generator of one random stream of one sample; streams never share state, so samples are independent."""
    kind_id = 0 if kind == NORMAL_CLASS else 1 + DEFECT_CODES.index(kind)
    return np.random.default_rng([seed, zlib.crc32(category.encode()), kind_id, number, *stream])


def _channels_last(image: np.ndarray) -> np.ndarray:
    """(3, S, S) -> contiguous (S, S, 3)."""
    return cv2.merge(list(image))


@dataclass(frozen=True)
class RenderedSample:
    """The 5 views of one sample: RGB uint8 (S, S, 3) images, the same views without the defect, bool (S, S)
    masks of the defective views (None for views that show no defect, and for every view of an OK sample), and
    bool (S, S) object masks of the clean views (object pixels, holes excluded)."""

    images: tuple[np.ndarray, ...]
    cleans: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray | None, ...]
    foreground: tuple[np.ndarray, ...]


def render_sample(category: str, kind: str, number: int, *, size: int, seed: int) -> RenderedSample:
    """Render sample ``number`` of ``category``; ``kind`` is ``"OK"`` or a defect code.

    The defect is drawn again (up to 30 tries) until its mask covers ``MASK_AREA`` of every defective view.
    """
    style = CATEGORY_STYLES[category]
    shape_rng = _rng(seed, category, kind, number, 0)
    obj = _make_object(style, shape_rng)
    sample_angle = shape_rng.uniform(0.0, 2 * np.pi)
    views = [_make_view(i, sample_angle, size, _rng(seed, category, kind, number, 1, i)) for i in range(len(VIEWS))]
    layers = [_render_layers(obj, style, view, size) for view in views]
    cleans = [_to_uint8(layer.clean) for layer in layers]
    foreground = tuple(layer.body_alpha > 0.5 for layer in layers)
    if kind == NORMAL_CLASS:
        images = tuple(_channels_last(clean) for clean in cleans)
        return RenderedSample(images, images, (None,) * len(VIEWS), foreground)
    defect_rng = _rng(seed, category, kind, number, 2)
    count = 1 + int(defect_rng.choice(len(VIEWS), p=DEFECTIVE_VIEW_WEIGHTS))
    defective = sorted(defect_rng.choice(len(VIEWS), count, replace=False).tolist())
    sampler, painter = DEFECT_DRAWERS[kind]
    low, high = (round(share * size * size) for share in MASK_AREA)
    for attempt in range(30):
        params = sampler(obj, defect_rng)
        images, masks = list(cleans), [None] * len(VIEWS)
        for v in defective:
            view_rng = _rng(seed, category, kind, number, 3, v, attempt)
            altered, region = painter(params, layers[v], views[v], obj, view_rng)
            altered = _to_uint8(altered)
            changed = np.abs(altered.astype(np.int16) - cleans[v]).max(axis=0) >= _CHANGE_LEVELS
            masks[v] = region & changed
            images[v] = np.where(masks[v][None], altered, cleans[v])
        if all(low <= masks[v].sum() <= high for v in defective):
            return RenderedSample(
                tuple(_channels_last(image) for image in images),
                tuple(_channels_last(clean) for clean in cleans),
                tuple(masks),
                foreground,
            )
    raise RuntimeError(
        f"{category} {kind} sample {number}: no defect with a mask of {MASK_AREA[0]:.2%}-{MASK_AREA[1]:.2%} of the "
        f"image in 30 tries at {size} px"
    )


def rendered_views(count: int, offset: int, seed: int, size: int = 256) -> list[np.ndarray]:
    """``count`` RGB uint8 (S, S, 3) views rendered in memory, like a training set (every category in turn, one
    sample in five defective, the types in turn), starting at sample ``offset``: disjoint sets for disjoint ranges."""
    categories = list(CATEGORY_STYLES)
    views: list[np.ndarray] = []
    number = offset
    while len(views) < count:
        category = categories[number % len(categories)]
        kind = DEFECT_CODES[(number // 5) % len(DEFECT_CODES)] if number % 5 == 4 else NORMAL_CLASS
        views.extend(render_sample(category, kind, number + 1, size=size, seed=seed).images[: count - len(views)])
        number += 1
    return views
