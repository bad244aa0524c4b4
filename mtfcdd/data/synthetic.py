"""A synthetic data set in the exact Real-IAD layout, for offline runs and tests.

``python -m mtfcdd.data.synthetic --out DIR [--preset tiny|demo] ...`` writes::

    DIR/realiad_256/<category>/OK/S0001/<category>_0001_OK_C1_<timestamp>.jpg           (views C1..C5)
    DIR/realiad_256/<category>/NG/<CODE>/S0001/<category>_0001_NG_<CODE>_C1_<ts>.jpg   + same-stem .png mask
    DIR/realiad_jsons/<category>.json                  standard split (train: OK samples only)
    DIR/realiad_jsons_sv/<category>.json               single view (C1)
    DIR/realiad_jsons_fuiad_<a>/<category>.json        a in 0.0, 0.1, 0.2, 0.4
    DIR/synthetic_realiad.json                         marker: generator version, parameters, counts

With ``layout="nested"`` the JSON folders sit one level lower, in ``DIR/realiad_jsons/`` (as some unpacked zips
have them). The image folder is always called ``realiad_256`` (the folder the pipeline reads); its images are
``size`` px square. audiojack NG files carry the release's double underscore (``audiojack__0001_NG_...``).

Every sample is one object (a category-specific shape family: plate with components, disc, ring, hex nut, bar) on
a real texture from scikit-image, seen in 5 views with their own pose, foreshortening, crop and lighting. An NG
sample carries one defect, fixed on the object, visible in a random non-empty subset of its views; the other views
are clean and labelled ``OK`` with ``mask_path: null``. The eight defect types look distinct (pits, bulged or
dented outline, speckled abrasion, thin scratches, chipped edge, missing component, pasted foreign object,
translucent smear). A mask marks exactly the pixels the defect changed (before JPEG coding) and covers
``MASK_AREA`` of the image.

fuiad splits: the train set has ``train_samples`` samples (x5 views) at every alpha; ``round(alpha *
train_samples)`` of them are NG samples (nested across alphas, the types interleaved so that every type appears
as early as possible) and the rest OK samples. The test set (``test_ok_samples`` OK samples and
``test_ng_samples`` per type) is the same for every alpha and disjoint from every train set.

Everything follows from the seed (numpy Generators keyed by seed, category, sample and view; timestamps too):
the same parameters give byte-identical files. A build goes to a temporary sibling folder renamed into place at
the end, so an interrupted build leaves nothing at ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage.data

from mtfcdd.data.realiad import DEFECT_CODES, FUIAD_ALPHAS, NESTED_PARENT, NORMAL_CLASS, json_folder_name
from mtfcdd.errors import UserError, exit_on_user_error

log = logging.getLogger("mtfcdd.data")

GENERATOR_VERSION = 2
"""Bumped whenever the output for given parameters changes; a cached build of another version is rebuilt."""
MARKER_NAME = "synthetic_realiad.json"
IMAGE_FOLDER = "realiad_256"
VIEWS = ("C1", "C2", "C3", "C4", "C5")
LAYOUTS = ("flat", "nested")
MASK_AREA = (0.005, 0.045)
"""Bounds on the share of the image a defect mask covers, enforced per defective view (typically 1-3 %)."""
DEFECTIVE_VIEW_WEIGHTS = (0.05, 0.15, 0.3, 0.3, 0.2)
"""Probability that an NG sample shows its defect in 1, 2, 3, 4 or 5 of its views (mean 3.45 of 5)."""
JPEG_QUALITY = 95
_MIN_SIZE, _MAX_SIZE = 48, 1024
_OBJECT_RADIUS = 0.3
"""Object radius (canonical unit) as a share of the image side."""
_CHANGE_LEVELS = 3
"""A defect pixel must differ from the clean render by at least this many 8-bit levels in some channel."""
_BASE_TIME = datetime(2023, 9, 1, 8, 0, 0)

Polygon = np.ndarray
"""(K, 2) float64 vertices, in the canonical object frame (unit = object radius) unless said otherwise."""


# ----------------------------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate (per category: ``train_samples`` + test samples, each 5 views of ``size`` x ``size`` px)."""

    categories: tuple[str, ...]
    size: int = 256
    train_samples: int = 150
    test_ok_samples: int = 16
    test_ng_samples: int = 4
    """NG test samples per defect type."""

    def __post_init__(self) -> None:
        names = (self.categories,) if isinstance(self.categories, str) else tuple(self.categories)
        object.__setattr__(self, "categories", names)  # lists (e.g. from a config) become a tuple
        unknown = [name for name in self.categories if name not in CATEGORY_STYLES]
        if not self.categories or unknown or len(set(self.categories)) != len(self.categories):
            raise UserError(
                f"categories={list(self.categories)!r} is not valid; give distinct names out of: "
                f"{', '.join(CATEGORY_STYLES)}"
            )
        checks = {
            "size": (self.size, _MIN_SIZE, _MAX_SIZE),
            "train_samples": (self.train_samples, 10, 100_000),
            "test_ok_samples": (self.test_ok_samples, 1, 100_000),
            "test_ng_samples": (self.test_ng_samples, 1, 100_000),
        }
        for key, (value, low, high) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"{key}={value!r} is not valid; expected an integer in [{low}, {high}]")

    @property
    def ng_train_per_type(self) -> int:
        """NG samples per type kept for training: enough for the largest alpha."""
        return math.ceil(round(max(FUIAD_ALPHAS) * self.train_samples) / len(DEFECT_CODES))

    def ng_train_count(self, alpha: float) -> int:
        """NG samples in the fuiad train set at ``alpha`` (the rest of ``train_samples`` are OK samples)."""
        return round(alpha * self.train_samples)


# ----------------------------------------------------------------------------------------------------------------
# Category styles: shape family, colours, components, background


@dataclass(frozen=True)
class PartSpec:
    """A component of an object: a circle (``size = (r,)``) or a rectangle (``size = (half_w, half_h)``)."""

    centre: tuple[float, float]
    size: tuple[float, ...]
    colour: tuple[float, float, float]
    detail: str = "none"
    """Marking drawn on the part: none, cross (screw slot), hole (socket), stripes (printed text)."""


@dataclass(frozen=True)
class CategoryStyle:
    """How a category looks: shape family, colours, components and background (canonical units)."""

    family: str
    """disc, ring, plate, hexnut or bar."""
    colour: tuple[float, float, float]
    parts: tuple[PartSpec, ...]
    background: str
    """A scikit-image texture that ships with the package (no download)."""
    background_tint: tuple[float, float, float]
    dome: float = 0.0
    """Radial darkening towards the rim (0 = flat object)."""
    extent: tuple[float, float] = (1.0, 1.0)
    """Half width and half height of plates and bars."""


CATEGORY_STYLES: dict[str, CategoryStyle] = {
    "audiojack": CategoryStyle(
        family="plate", colour=(0.55, 0.57, 0.62), extent=(0.95, 0.62), background="gravel",
        background_tint=(0.42, 0.40, 0.36),
        parts=(
            PartSpec((-0.45, 0.0), (0.24,), (0.82, 0.80, 0.72), "hole"),
            PartSpec((0.35, 0.33), (0.16, 0.075), (0.86, 0.70, 0.30)),
            PartSpec((0.35, -0.33), (0.16, 0.075), (0.86, 0.70, 0.30)),
            PartSpec((0.42, 0.0), (0.2, 0.11), (0.93, 0.93, 0.90), "stripes"),
        ),
    ),
    "bottle_cap": CategoryStyle(
        family="disc", colour=(0.78, 0.20, 0.17), dome=0.25, background="brick",
        background_tint=(0.80, 0.74, 0.62),
        parts=(
            PartSpec((0.0, 0.0), (0.28,), (0.92, 0.90, 0.86), "stripes"),
            PartSpec((0.62, 0.05), (0.12,), (0.15, 0.22, 0.55)),
            PartSpec((-0.35, 0.52), (0.12,), (0.15, 0.22, 0.55)),
        ),
    ),
    "mint": CategoryStyle(
        family="ring", colour=(0.70, 0.88, 0.76), dome=0.1, background="grass",
        background_tint=(0.35, 0.30, 0.42),
        parts=tuple(
            PartSpec((0.75 * math.cos(a), 0.75 * math.sin(a)), (0.12,), (0.97, 0.97, 0.95))
            for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)
        ),
    ),
    "plastic_nut": CategoryStyle(
        family="hexnut", colour=(0.88, 0.74, 0.28), background="gravel", background_tint=(0.40, 0.48, 0.58),
        parts=(
            PartSpec((0.62, 0.36), (0.12,), (0.48, 0.36, 0.20), "cross"),
            PartSpec((-0.62, -0.36), (0.12,), (0.48, 0.36, 0.20), "cross"),
        ),
    ),
    "woodstick": CategoryStyle(
        family="bar", colour=(0.74, 0.56, 0.34), extent=(1.0, 0.27), background="brick",
        background_tint=(0.55, 0.58, 0.62),
        parts=(
            PartSpec((-0.35, 0.0), (0.08, 0.27), (0.55, 0.14, 0.12)),
            PartSpec((0.5, 0.0), (0.08, 0.27), (0.15, 0.30, 0.50)),
        ),
    ),
    "pcb": CategoryStyle(
        family="plate", colour=(0.18, 0.48, 0.28), extent=(0.95, 0.7), background="grass",
        background_tint=(0.62, 0.55, 0.48),
        parts=(
            PartSpec((-0.3, 0.1), (0.3, 0.22), (0.12, 0.12, 0.14), "stripes"),
            PartSpec((0.45, 0.3), (0.17,), (0.30, 0.42, 0.75), "cross"),
            PartSpec((0.72, -0.45), (0.11,), (0.78, 0.78, 0.80), "cross"),
            PartSpec((-0.72, -0.45), (0.11,), (0.78, 0.78, 0.80), "cross"),
        ),
    ),
    "button_battery": CategoryStyle(
        family="disc", colour=(0.74, 0.75, 0.78), dome=0.3, background="gravel", background_tint=(0.50, 0.36, 0.30),
        parts=(
            PartSpec((0.0, 0.0), (0.38, 0.16), (0.28, 0.28, 0.34), "stripes"),
            PartSpec((0.0, 0.6), (0.13,), (0.85, 0.30, 0.25), "cross"),
        ),
    ),
    "eraser": CategoryStyle(
        family="bar", colour=(0.93, 0.80, 0.80), extent=(1.0, 0.34), background="brick",
        background_tint=(0.38, 0.42, 0.50),
        parts=(
            PartSpec((0.4, 0.0), (0.22, 0.3), (0.20, 0.35, 0.72), "stripes"),
            PartSpec((-0.5, 0.0), (0.12,), (0.45, 0.45, 0.50)),
        ),
    ),
}
"""The categories the generator can draw, in default order (audiojack first, for its file-name quirk)."""

PRESETS: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(
        categories=("audiojack", "bottle_cap"), size=64, train_samples=20, test_ok_samples=2, test_ng_samples=1
    ),
    "demo": SyntheticConfig(
        categories=("audiojack", "bottle_cap", "mint", "plastic_nut", "woodstick"),
        size=256, train_samples=150, test_ok_samples=16, test_ng_samples=4,
    ),
}

SKIMAGE_FILES: dict[str, str] = {
    "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png",
    "coffee": "coffee.png", "chelsea": "chelsea.png", "astronaut": "astronaut.png", "rocket": "rocket.jpg",
    "immunohistochemistry": "ihc.png",
}
"""scikit-image data images used here -> their file in the wheel's data folder (shipped, so no download)."""
_MATERIAL_TEXTURE = "gravel"
_FOREIGN_IMAGES = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry")
_SMEAR_COLOURS = np.array(
    [(0.42, 0.20, 0.02), (0.10, 0.62, 0.08), (0.52, 0.08, 0.62), (0.05, 0.28, 0.85), (0.90, 0.72, 0.02)]
)
"""Saturated smear colours: brown (oil), green, purple, blue, yellow."""
_FOREIGN_COLOURS = np.array(
    [(0.05, 0.85, 0.95), (0.95, 0.10, 0.75), (0.10, 0.90, 0.15), (0.98, 0.55, 0.05), (0.45, 0.10, 0.95),
     (0.05, 0.05, 0.05)]
)
_WIRE_COLOURS = np.array([(0.85, 0.45, 0.15), (0.05, 0.05, 0.05), (0.10, 0.75, 0.95), (0.95, 0.95, 0.92),
                          (0.90, 0.10, 0.10)])
"""Hair or wire colours: copper, black, cyan insulation, white, red insulation."""
_GLUE_COLOURS = np.array([(0.95, 0.88, 0.62), (0.86, 0.87, 0.92)])
"""Pale adhesive residue left where a component was torn off: cream or whitish (the one farther from the body)."""


@lru_cache(maxsize=None)
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


# ----------------------------------------------------------------------------------------------------------------
# Geometry


def _circle(centre: Sequence[float], radius: float, n: int = 64) -> Polygon:
    angle = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle)], axis=1)


def _rect(centre: Sequence[float], half: Sequence[float]) -> Polygon:
    (cx, cy), (hx, hy) = centre, half
    return np.array([(cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)])


def _rounded_rect(half: Sequence[float], corner: float) -> Polygon:
    (hx, hy), arc = half, np.linspace(0.0, np.pi / 2, 12)
    points = []
    for (sx, sy), start in (((1, 1), 0.0), ((-1, 1), np.pi / 2), ((-1, -1), np.pi), ((1, -1), 1.5 * np.pi)):
        centre = (sx * (hx - corner), sy * (hy - corner))
        points.append(np.stack([centre[0] + corner * np.cos(arc + start), centre[1] + corner * np.sin(arc + start)], 1))
    return np.concatenate(points)


def _resample(poly: Polygon, n: int) -> Polygon:
    """``n`` points equally spaced by arc length along the closed polygon."""
    closed = np.vstack([poly, poly[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    target = np.linspace(0.0, arc[-1], n, endpoint=False)
    return np.stack([np.interp(target, arc, closed[:, 0]), np.interp(target, arc, closed[:, 1])], axis=1)


def _outward_normals(poly: Polygon) -> np.ndarray:
    """Unit normals pointing away from the interior, for a closed polygon of either orientation."""
    tangent = np.roll(poly, -1, axis=0) - np.roll(poly, 1, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    signed_area = 0.5 * np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    return normal if signed_area > 0 else -normal


def _rotation(angle: float) -> np.ndarray:
    """2x2 matrix rotating by ``angle`` radians (counter-clockwise in x-right, y-up axes)."""
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _blob(rng: np.random.Generator, centre: Sequence[float], radii: tuple[float, float], angle: float,
          roughness: float, n: int = 48) -> Polygon:
    """A closed irregular blob: an ellipse with smoothly varying radius (relative amplitude ``roughness``)."""
    knots = 1.0 + roughness * rng.uniform(-1.0, 1.0, 8)
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    wobble = np.interp(t, np.linspace(0.0, 2 * np.pi, 9), np.append(knots, knots[0]))
    local = np.stack([radii[0] * wobble * np.cos(t), radii[1] * wobble * np.sin(t)], axis=1)
    return local @ _rotation(angle).T + np.asarray(centre)


def _to_pixels(poly: Polygon, matrix: np.ndarray) -> np.ndarray:
    return poly @ matrix[:, :2].T + matrix[:, 2]


_SHIFT = 4
"""Fractional bits of the pixel coordinates handed to cv2's polygon filler."""


def _fixed_point(poly: Polygon, matrix: np.ndarray) -> np.ndarray:
    """Canonical polygon -> int32 pixel coordinates with ``_SHIFT`` fractional bits."""
    return np.round(_to_pixels(poly, matrix) * (1 << _SHIFT)).astype(np.int32)


def _fill(canvas: np.ndarray, polys: Sequence[Polygon], matrix: np.ndarray, value: float, smooth: bool = True
          ) -> None:
    """Paint the union of canonical polygons onto a uint8 (S, S) canvas, in place (anti-aliased if ``smooth``)."""
    for poly in polys:
        cv2.fillPoly(canvas, [_fixed_point(poly, matrix)], value, cv2.LINE_AA if smooth else cv2.LINE_8, _SHIFT)


def _raster(polys: Sequence[Polygon], matrix: np.ndarray, size: int, smooth: bool = True) -> np.ndarray:
    """Coverage of the union of canonical polygons in a ``size`` px image: float32 (S, S) in [0, 1].

    ``smooth`` anti-aliases the edges; otherwise a pixel is in or out.
    """
    canvas = np.zeros((size, size), np.uint8)
    _fill(canvas, polys, matrix, 255, smooth)
    return canvas.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------------------------
# Objects and views


@dataclass(frozen=True)
class _Part:
    """A component of one object instance (canonical frame)."""

    poly: Polygon
    colour: np.ndarray
    markings: tuple[Polygon, ...]
    marking_gain: float
    pad: Polygon
    """The part's footprint grown by a rim of adhesive: what shows (pale residue) where the part is missing."""


@dataclass(frozen=True)
class _Object:
    """One object instance (canonical frame): body outline, holes, colour, components."""

    outer: Polygon
    """Dense outline (arc-length resampled), so that deformations stay smooth."""
    holes: tuple[Polygon, ...]
    colour: np.ndarray
    dome: float
    parts: tuple[_Part, ...]


def _make_object(style: CategoryStyle, rng: np.random.Generator) -> _Object:
    """One instance of a category: the style with small random changes of proportions and colours."""
    def jitter_colour(colour: Sequence[float]) -> np.ndarray:
        return np.clip(np.asarray(colour) * rng.uniform(0.92, 1.08) + rng.uniform(-0.03, 0.03, 3), 0.02, 0.98)

    stretch = rng.uniform(0.95, 1.05)
    if style.family in ("disc", "ring"):
        outer = _circle((0.0, 0.0), 1.0, 256)
    elif style.family == "hexnut":
        outer = _circle((0.0, 0.0), 1.0, 6)
    else:
        half = (style.extent[0], style.extent[1] * stretch)
        outer = _rounded_rect(half, min(half) * (0.25 if style.family == "plate" else 0.8))
    holes = ()
    if style.family == "ring":
        holes = (_circle((0.0, 0.0), 0.5 * stretch, 96),)
    elif style.family == "hexnut":
        holes = (_circle((0.0, 0.0), 0.45 * stretch, 96),)
    parts = []
    for spec in style.parts:
        centre = np.asarray(spec.centre) + rng.uniform(-0.02, 0.02, 2)
        scale = rng.uniform(0.95, 1.05)
        round_part = len(spec.size) == 1
        poly = _circle(centre, spec.size[0] * scale) if round_part else _rect(centre, np.asarray(spec.size) * scale)
        extent = spec.size[0] * scale if round_part else min(spec.size) * scale
        markings: tuple[Polygon, ...] = ()
        gain = 0.4
        if spec.detail == "cross":
            angle = rng.uniform(0, np.pi)
            bar = np.array([[-1, -0.12], [1, -0.12], [1, 0.12], [-1, 0.12]]) * extent * 0.75
            markings = tuple(bar @ _rotation(a).T + centre for a in (angle, angle + np.pi / 2))
        elif spec.detail == "hole":
            markings, gain = (_circle(centre, extent * 0.5),), 0.15
        elif spec.detail == "stripes":
            width = spec.size[0] * scale * (0.7 if round_part else 0.8)
            rows = np.linspace(-0.5, 0.5, 3) * extent
            markings = tuple(_rect(centre + (0.0, dy), (width * rng.uniform(0.6, 1.0), extent * 0.08)) for dy in rows)
            gain = 2.6 if np.mean(spec.colour) < 0.4 else 0.35
        pad = (_circle(centre, spec.size[0] * scale + 0.07) if round_part
               else _rounded_rect(np.asarray(spec.size) * scale + 0.05, 0.05) + centre)
        parts.append(_Part(poly, jitter_colour(spec.colour), markings, gain, pad))
    return _Object(
        outer=_resample(outer * stretch if style.family in ("disc", "ring", "hexnut") else outer, 256),
        holes=holes, colour=jitter_colour(style.colour), dome=style.dome, parts=tuple(parts),
    )


@dataclass(frozen=True)
class _View:
    """One camera view of a sample: pose, lighting and background crop."""

    matrix: np.ndarray
    """2x3 affine map canonical -> pixel."""
    light: np.ndarray
    """(1, S, S) float32 multiplicative illumination."""
    light_dir: np.ndarray
    background_offset: tuple[int, int]
    material_offset: tuple[int, int]
    flip: bool

    @property
    def unit_px(self) -> float:
        """Mean length in px of the canonical unit (the object radius) in this view."""
        return float(np.linalg.norm(self.matrix[:, :2], axis=0).mean())


def _make_view(index: int, sample_angle: float, size: int, rng: np.random.Generator) -> _View:
    """Camera ``index`` (0 = C1, top view; 1..4 = side views with foreshortening): pose, crop and lighting."""
    zoom = rng.uniform(0.9, 1.1)
    angle = sample_angle + rng.uniform(-0.5, 0.5)
    squash = 1.0 if index == 0 else rng.uniform(0.74, 0.86)
    tilt_dir = (index - 1) * np.pi / 2 + rng.uniform(-0.3, 0.3)
    tilt = _rotation(tilt_dir)
    linear = tilt @ np.diag([squash, 1.0]) @ tilt.T @ _rotation(angle) * (_OBJECT_RADIUS * size * zoom)
    centre = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    light_dir = rng.normal(size=2)
    light_dir /= np.linalg.norm(light_dir)
    x, y = _grid(size)
    gradient = ((x - size / 2) * float(light_dir[0]) + (y - size / 2) * float(light_dir[1])) / size
    vignette = ((x - float(centre[0])) ** 2 + (y - float(centre[1])) ** 2) / size**2
    light = float(rng.uniform(0.85, 1.1)) * (1.0 + float(rng.uniform(0.1, 0.3)) * gradient - 0.25 * vignette)
    return _View(
        matrix=np.hstack([linear, centre[:, None]]),
        light=light[None].astype(np.float32),
        light_dir=light_dir,
        background_offset=tuple(int(v) for v in rng.integers(0, size, 2)),
        material_offset=tuple(int(v) for v in rng.integers(0, size, 2)),
        flip=bool(rng.integers(2)),
    )


@dataclass
class _Layers:
    """The parts of one rendered view, kept apart so that defects can re-compose them.

    Images are channel-first float32 (3, S, S) RGB in [0, 1]; maps are (1, S, S) or (S, S).
    """

    background: np.ndarray
    """Background with the object's shadow, unlit."""
    body_alpha: np.ndarray
    """(S, S) coverage of the object."""
    albedo: np.ndarray
    """Object colours (body, components, markings), defined everywhere."""
    shading: np.ndarray
    """(1, S, S) shading of the object's surface."""
    light: np.ndarray
    """(1, S, S) illumination of the whole scene."""
    surface: np.ndarray
    """(S, S) bool: the object's own surface (inside the body, off components and holes)."""
    clean: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.clean = self.compose()

    def compose(self, body_alpha: np.ndarray | None = None, albedo: np.ndarray | None = None) -> np.ndarray:
        """The lit view, optionally with another object outline or other object colours."""
        alpha = (self.body_alpha if body_alpha is None else body_alpha)[None]
        image = (self.albedo if albedo is None else albedo) * self.shading
        image -= self.background
        image *= alpha
        image += self.background
        image *= self.light
        return np.clip(image, 0.0, 1.0, out=image)

    @property
    def lit_background(self) -> np.ndarray:
        return np.clip(self.background * self.light, 0.0, 1.0)


def _shading(view: _View, size: int, dome: float, grain: np.ndarray) -> np.ndarray:
    """(1, S, S) unlit shading of the object's surface: directional light, dome falloff, material grain."""
    x, y = _grid(size)
    cx, cy = (float(v) for v in view.matrix[:, 2])
    radius = view.unit_px
    lx, ly = (float(v) for v in view.light_dir)
    along = ((x - cx) * lx + (y - cy) * ly) / radius
    rim = ((x - cx) ** 2 + (y - cy) ** 2) / radius**2
    return ((1.0 + 0.12 * along - dome * rim) * (1.0 + 0.05 * grain))[None]


def _crop(texture: np.ndarray, offset: tuple[int, int], size: int, flip: bool) -> np.ndarray:
    patch = texture[offset[1]:offset[1] + size, offset[0]:offset[0] + size]
    return patch[:, ::-1] if flip else patch


def _coverage(obj: _Object, view: _View, size: int, outer: Polygon | None = None) -> np.ndarray:
    """(S, S) coverage of the body (``outer`` replaces its outline), holes left open."""
    canvas = np.zeros((size, size), np.uint8)
    _fill(canvas, [obj.outer if outer is None else outer], view.matrix, 255)
    _fill(canvas, obj.holes, view.matrix, 0)
    return canvas.astype(np.float32) / 255.0


def _albedo(obj: _Object, view: _View, size: int, missing: int | None = None) -> np.ndarray:
    """(3, S, S) object colours: the body colour everywhere, components and their markings on top.

    Component ``missing`` is left out: the bare body colour shows where it was.
    """
    canvas = np.empty((3, size, size), np.uint8)
    layers: list[tuple[Sequence[Polygon], np.ndarray]] = []
    for index, part in enumerate(obj.parts):
        if index != missing:
            layers += [((part.poly,), part.colour), (part.markings, part.colour * part.marking_gain)]
    points = [[_fixed_point(poly, view.matrix) for poly in polys] for polys, _ in layers]
    values = [_to_uint8(colour).tolist() for _, colour in layers]
    for channel, base in enumerate(_to_uint8(obj.colour).tolist()):
        canvas[channel] = base
        for contours, value in zip(points, values):
            for contour in contours:
                cv2.fillPoly(canvas[channel], [contour], value[channel], cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) / 255.0


def _render_layers(obj: _Object, style: CategoryStyle, view: _View, size: int) -> _Layers:
    tint = np.asarray(style.background_tint, np.float32)
    ground = _crop(_texture(style.background, size), view.background_offset, size, view.flip)
    body_alpha = _coverage(obj, view, size)
    # soft shadow cast away from the light, computed at a quarter of the resolution
    small = max(size // 4, 8)
    shift = -0.04 * small
    shadow = cv2.resize(body_alpha, (small, small), interpolation=cv2.INTER_AREA)
    shadow = cv2.warpAffine(shadow, np.float32([[1, 0, shift * view.light_dir[0]], [0, 1, shift * view.light_dir[1]]]),
                            (small, small))
    shadow = cv2.resize(cv2.GaussianBlur(shadow, (0, 0), 0.025 * small), (size, size), interpolation=cv2.INTER_LINEAR)
    background = ((1.0 + 0.18 * ground) * (1.0 - 0.45 * shadow))[None] * tint[:, None, None]
    grain = _crop(_texture(_MATERIAL_TEXTURE, size), view.material_offset, size, False)
    parts = _raster([part.poly for part in obj.parts], view.matrix, size)
    return _Layers(
        background=background,
        body_alpha=body_alpha,
        albedo=_albedo(obj, view, size),
        shading=_shading(view, size, obj.dome, grain),
        light=view.light,
        surface=(body_alpha > 0.99) & (parts == 0),
    )


# ----------------------------------------------------------------------------------------------------------------
# Defects: a sampler draws the defect on the object (canonical frame, once per sample); a painter renders it in a
# view and returns the altered image and the region it may change.

DefectParams = dict[str, Any]
Painted = tuple[np.ndarray, np.ndarray]
"""(altered view (3, S, S) float in [0, 1], region (S, S) bool where it may differ from the clean view)."""


def _inside(obj: _Object, point: np.ndarray, margin: float, part_margin: float) -> bool:
    """Whether ``point`` lies on the body at least ``margin`` from its outline and holes, away from components."""
    pt = (float(point[0]), float(point[1]))
    if cv2.pointPolygonTest(obj.outer.astype(np.float32), pt, True) < margin:
        return False
    if any(cv2.pointPolygonTest(hole.astype(np.float32), pt, True) > -margin for hole in obj.holes):
        return False
    return all(cv2.pointPolygonTest(part.poly.astype(np.float32), pt, True) < -part_margin for part in obj.parts)


def _surface_point(obj: _Object, rng: np.random.Generator, margin: float, part_margin: float = 0.05) -> np.ndarray:
    low, high = obj.outer.min(axis=0), obj.outer.max(axis=0)
    for _ in range(500):
        point = rng.uniform(low, high)
        if _inside(obj, point, margin, part_margin):
            return point
    raise RuntimeError(f"no free surface point with margin {margin} on the object; the category style is too crowded")


def _edge_point(obj: _Object, rng: np.random.Generator, clearance: float) -> int:
    """Index of an outline vertex at least ``clearance`` from every component (less where the style is crowded)."""
    outline = obj.outer.astype(np.float32)
    gaps = np.array([
        min((-cv2.pointPolygonTest(part.poly.astype(np.float32), (float(p[0]), float(p[1])), True)
             for part in obj.parts), default=np.inf)
        for p in outline
    ])
    for wanted in (clearance, clearance / 2, 0.0):
        free = np.flatnonzero(gaps >= wanted)
        if free.size:
            return int(rng.choice(free))
    raise RuntimeError("no outline point clear of the components; the category style is too crowded")


def _thickness(obj: _Object, vertex: int) -> float:
    """How deep the body reaches inwards from outline vertex ``vertex`` (to the far outline or a hole)."""
    start, inward = obj.outer[vertex], -_outward_normals(obj.outer)[vertex]
    for depth in np.arange(0.02, 2.5, 0.02):
        if not _inside(obj, start + depth * inward, 0.0, -np.inf):
            return float(depth)
    return 2.5


def _far_colour(palette: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the two palette colours farthest from ``colour``."""
    order = np.argsort(-np.linalg.norm(palette - colour, axis=1))
    return palette[order[rng.integers(2)]]


def _canonical_grid(view: _View, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical coordinates (X, Y) of every pixel centre of the view, each (S, S) float32."""
    x, y = _grid(size)
    inverse = cv2.invertAffineTransform(view.matrix)
    return (inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2],
            inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2])


def _polygon_area(poly: Polygon) -> float:
    return float(abs(cv2.contourArea(poly.astype(np.float32))))


def _sample_pit(obj: _Object, rng: np.random.Generator) -> DefectParams:
    centres: list[np.ndarray] = []
    radii = []
    for _ in range(int(rng.integers(4, 7))):
        radius = rng.uniform(0.08, 0.11)
        for _ in range(50):
            point = _surface_point(obj, rng, margin=0.13)
            if all(np.linalg.norm(point - c) > 2.3 * max(radius, r) for c, r in zip(centres, radii)):
                centres.append(point)
                radii.append(radius)
                break
    return {"centres": centres, "radii": radii}


def _paint_pit(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
    size = layers.clean.shape[1]
    x, y = _grid(size)
    depth = np.ones((size, size), np.float32)
    for centre, radius in zip(p["centres"], p["radii"]):
        cx, cy = (float(v) for v in _to_pixels(np.asarray([centre]), view.matrix)[0])
        r_px = max(radius * view.unit_px, 1.0)
        depth = np.minimum(depth, np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / r_px)
    region = (depth < 1.0) & layers.surface
    factor = 0.25 + 0.5 * depth**2
    return layers.clean * factor[None], region


def _sample_deformation(obj: _Object, rng: np.random.Generator) -> DefectParams:
    vertex = _edge_point(obj, rng, clearance=0.4)
    sign = float(rng.choice([-1.0, 1.0]))
    height = rng.uniform(0.16, 0.22)
    if sign < 0:  # a dent never reaches through the body
        height = min(height, 0.5 * _thickness(obj, vertex))
    return {"vertex": vertex, "height": sign * height, "width": rng.uniform(0.2, 0.28)}


def _paint_deformation(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
                       ) -> Painted:
    """The outline bulges out or dents in smoothly; the bent surface next to it catches or loses light."""
    size = layers.clean.shape[1]
    outline = obj.outer
    steps = np.linalg.norm(np.diff(np.vstack([outline, outline[:1]]), axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)[:-1]])
    perimeter = steps.sum()
    distance = np.abs(arc - arc[p["vertex"]])
    distance = np.minimum(distance, perimeter - distance)
    bump = p["height"] * np.exp(-0.5 * (distance / p["width"]) ** 2)
    normals = _outward_normals(outline)
    deformed = outline + normals * bump[:, None]
    alpha = _coverage(obj, view, size, outer=deformed)
    # the bent band: within about one bump width of the moved outline
    x, y = _canonical_grid(view, size)
    tip = deformed[p["vertex"]] - normals[p["vertex"]] * 0.5 * abs(p["height"])
    bend = np.exp(-0.5 * ((x - tip[0]) ** 2 + (y - tip[1]) ** 2) / (0.9 * p["width"]) ** 2)
    bend = np.where(bend > 0.3, bend, 0.0).astype(np.float32)
    shade = 1.0 + (0.35 if p["height"] > 0 else -0.4) * bend
    image = layers.compose(body_alpha=alpha)
    image = np.where(alpha[None] > 0.5, image * shade[None], image)
    moved = cv2.dilate((np.abs(alpha - layers.body_alpha) > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return image, moved | ((bend > 0) & (alpha > 0.5))


def _sample_abrasion(obj: _Object, rng: np.random.Generator) -> DefectParams:
    centre = _surface_point(obj, rng, margin=0.12)
    return {"poly": _blob(rng, centre, (rng.uniform(0.25, 0.35), rng.uniform(0.12, 0.17)), rng.uniform(0, np.pi), 0.2)}


def _paint_abrasion(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
                   ) -> Painted:
    size = layers.clean.shape[1]
    region = (_raster([p["poly"]], view.matrix, size, smooth=False) > 0) & layers.surface
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.7)
    factor = np.where(noise > 0, 1.35 + 0.25 * rng.random((size, size)), 0.5 + 0.15 * rng.random((size, size)))
    grey = layers.clean.mean(axis=0, keepdims=True)
    return (0.4 * layers.clean + 0.6 * grey) * factor[None].astype(np.float32), region


def _sample_scratch(obj: _Object, rng: np.random.Generator) -> DefectParams:
    lines = []
    base_angle = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(3, 6))):
        start = _surface_point(obj, rng, margin=0.1)
        angle, length, bend = base_angle + rng.uniform(-0.6, 0.6), rng.uniform(0.8, 1.4), rng.uniform(-0.2, 0.2)
        direction = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        t = np.linspace(-0.5, 0.5, 16)[:, None]
        lines.append(start + length * t * direction + bend * (1 - 4 * t**2) * normal)
    return {"lines": lines, "bright": bool(rng.integers(2))}


def _paint_scratch(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
                  ) -> Painted:
    size = layers.clean.shape[1]
    canvas = np.zeros((size, size), np.uint8)
    points = [np.round(_to_pixels(line, view.matrix)).astype(np.int32) for line in p["lines"]]
    cv2.polylines(canvas, points, False, 255, max(1, round(size / 96)), cv2.LINE_8)
    region = (canvas > 0) & layers.surface
    altered = layers.clean * 0.25 + 0.72 if p["bright"] else layers.clean * 0.3
    return altered, region


def _sample_damage(obj: _Object, rng: np.random.Generator) -> DefectParams:
    """A jagged notch broken out of the edge, with cracks running from it into the body."""
    vertex = _edge_point(obj, rng, clearance=0.3)
    normal = _outward_normals(obj.outer)[vertex]
    tangent = np.array([-normal[1], normal[0]])
    origin = obj.outer[vertex]
    half = rng.uniform(0.3, 0.4)
    depth = min(rng.uniform(0.25, 0.33), 0.55 * _thickness(obj, vertex))
    t = np.sort(rng.uniform(-0.9, 0.9, int(rng.integers(7, 11)))) * half
    d = depth * np.sqrt(1 - (t / half) ** 2) * rng.uniform(0.45, 1.1, t.size)
    along = np.concatenate([[-half, -half], t, [half, half]])
    inward = np.concatenate([[-0.3, 0.0], d, [0.0, -0.3]])
    poly = origin + along[:, None] * tangent - inward[:, None] * normal
    cracks = []
    for start in rng.choice(t.size, size=min(t.size, int(rng.integers(2, 4))), replace=False):
        point, heading = poly[2 + start], math.atan2(-normal[1], -normal[0]) + rng.uniform(-0.7, 0.7)
        path = [point]
        for _ in range(int(rng.integers(4, 8))):
            heading += rng.uniform(-0.6, 0.6)
            point = point + rng.uniform(0.04, 0.07) * np.array([math.cos(heading), math.sin(heading)])
            path.append(point)
        cracks.append(np.asarray(path))
    return {"poly": poly, "cracks": cracks}


def _paint_damage(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
                 ) -> Painted:
    size = layers.clean.shape[1]
    body = layers.body_alpha > 0
    bite = (_raster([p["poly"]], view.matrix, size, smooth=False) > 0) & body
    fracture = cv2.dilate(bite.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    fracture &= ~bite & body
    canvas = np.zeros((size, size), np.uint8)
    points = [np.round(_to_pixels(crack, view.matrix)).astype(np.int32) for crack in p["cracks"]]
    cv2.polylines(canvas, points, False, 255, max(1, round(size / 128)), cv2.LINE_8)
    cracks = (canvas > 0) & (layers.body_alpha > 0.5) & ~bite
    altered = np.where(bite[None], layers.lit_background, layers.clean * np.where(cracks, 0.3, 0.55)[None])
    return altered, bite | fracture | cracks


def _sample_missing(obj: _Object, rng: np.random.Generator) -> DefectParams:
    """One component torn off, the larger ones more likely."""
    areas = np.array([_polygon_area(part.pad) for part in obj.parts])
    return {"part": int(rng.choice(len(obj.parts), p=areas / areas.sum()))}


def _paint_missing(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
    """Where the component was: bare body under a pale, blotchy film of adhesive, and the part's imprinted rim."""
    size = layers.clean.shape[1]
    part = obj.parts[p["part"]]
    footprint = _raster([part.poly], view.matrix, size) > 0
    footprint = cv2.dilate(footprint.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    pad = (_raster([part.pad], view.matrix, size, smooth=False) > 0) & (layers.surface | footprint)
    pad &= layers.body_alpha > 0.99
    blotch = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.01 * size + 0.5)
    cover = (0.5 + 0.35 * np.tanh(blotch / (blotch.std() + 1e-6)))[None]
    albedo = _albedo(obj, view, size, missing=p["part"])
    glue = _GLUE_COLOURS[np.argmax(np.linalg.norm(_GLUE_COLOURS - obj.colour, axis=1))].astype(np.float32)
    albedo = np.where(pad[None], albedo * (1 - cover) + glue[:, None, None] * cover,
                      albedo)
    rim = np.zeros((size, size), np.uint8)
    cv2.polylines(rim, [_fixed_point(part.poly, view.matrix)], True, 255, max(1, round(size / 128)), cv2.LINE_8,
                  _SHIFT)
    albedo = np.where((rim > 0)[None] & pad[None], albedo * 0.7, albedo)
    return layers.compose(albedo=albedo.astype(np.float32)), footprint | pad


def _sample_foreign(obj: _Object, rng: np.random.Generator) -> DefectParams:
    """A pasted object lying on the part: a curled hair or wire, or a chip of another material."""
    centre = _surface_point(obj, rng, margin=0.15, part_margin=-1.0)
    angle = rng.uniform(0, np.pi)
    if rng.random() < 0.5:
        length, amplitude = rng.uniform(1.4, 2.0), rng.uniform(0.08, 0.16)
        t = np.linspace(-0.5, 0.5, 40)
        curl = amplitude * np.sin(2 * np.pi * rng.uniform(0.8, 1.6) * t + rng.uniform(0, 2 * np.pi))
        local = np.stack([length * t, curl], axis=1)
        return {"wire": local @ _rotation(angle).T + centre, "width": rng.uniform(0.055, 0.07),
                "colour": _far_colour(_WIRE_COLOURS, obj.colour, rng)}
    radius = rng.uniform(0.2, 0.26)
    params: DefectParams = {"poly": _blob(rng, centre, (radius, radius * rng.uniform(0.65, 1.0)), angle, 0.3, n=9)}
    if rng.random() < 0.5:
        params["colour"] = _far_colour(_FOREIGN_COLOURS, obj.colour, rng)
    else:
        params["image"] = _FOREIGN_IMAGES[int(rng.integers(len(_FOREIGN_IMAGES)))]
        params["offset"] = rng.uniform(0.2, 0.6, 2)
    return params


def _paint_foreign(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
                  ) -> Painted:
    size = layers.clean.shape[1]
    if "wire" in p:
        width = max(2, round(p["width"] * view.unit_px))
        body, core = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
        points = [np.round(_to_pixels(p["wire"], view.matrix)).astype(np.int32)]
        cv2.polylines(body, points, False, 255, width, cv2.LINE_8)
        cv2.polylines(core, points, False, 255, max(1, width // 3), cv2.LINE_8)
        colour = p["colour"].astype(np.float32)[:, None, None]
        paste = np.where(core[None] > 0, 0.5 * colour + 0.5, colour * 0.85)
        return np.clip(paste * layers.light, 0.0, 1.0), body > 0
    region = _raster([p["poly"]], view.matrix, size, smooth=False) > 0
    if "colour" in p:
        paste = np.broadcast_to(p["colour"].astype(np.float32)[:, None, None], layers.clean.shape)
    else:
        source = skimage_image(p["image"])
        side = int(min(source.shape[:2]) * 0.35)
        top, left = (np.asarray(source.shape[:2]) - side) * p["offset"]
        crop = source[int(top):int(top) + side, int(left):int(left) + side]
        paste = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    edge = region & ~(cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    return np.clip(paste * layers.light * np.where(edge, 0.45, 1.0)[None], 0.0, 1.0), region


def _sample_smear(obj: _Object, rng: np.random.Generator) -> DefectParams:
    """A brushed streak of coloured dirt: parallel strokes of uneven length and opacity."""
    return {
        "centre": _surface_point(obj, rng, margin=0.15, part_margin=-1.0),
        "angle": rng.uniform(0, np.pi),
        "half_length": rng.uniform(0.32, 0.45),
        "half_width": rng.uniform(0.14, 0.2),
        "ends": rng.uniform(0.5, 1.0, 10),
        "shift": rng.uniform(-0.12, 0.12, 10),
        "strokes": rng.uniform(0.0, 1.0, 14),
        "colour": _far_colour(_SMEAR_COLOURS, obj.colour, rng),
        "opacity": rng.uniform(0.6, 0.75),
    }


def _paint_smear(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
                ) -> Painted:
    size = layers.clean.shape[1]
    x, y = _canonical_grid(view, size)
    dx, dy = x - float(p["centre"][0]), y - float(p["centre"][1])
    c, s = math.cos(p["angle"]), math.sin(p["angle"])
    across = (-s * dx + c * dy) / p["half_width"]
    knots = np.linspace(-1.0, 1.0, p["ends"].size)
    reach = p["half_length"] * np.interp(across, knots, p["ends"]) * np.sqrt(np.clip(1 - across**2, 0, 1)) ** 0.3
    along = np.abs(c * dx + s * dy - np.interp(across, knots, p["shift"]))
    inside = (np.abs(across) < 1.0) & (along < reach)
    strokes = np.interp(across, np.linspace(-1.0, 1.0, p["strokes"].size), p["strokes"])
    taper = np.clip(3.0 * (1.0 - along / np.maximum(reach, 1e-6)), 0.0, 1.0)
    opacity = (p["opacity"] * (0.55 + 0.45 * strokes) * (0.4 + 0.6 * taper)).astype(np.float32)[None]
    region = inside & (layers.body_alpha > 0.99)
    tint = np.clip(p["colour"].astype(np.float32)[:, None, None] * layers.light, 0.0, 1.0)
    return layers.clean * (1 - opacity) + tint * opacity, region


Sampler = Callable[[_Object, np.random.Generator], DefectParams]
Painter = Callable[[DefectParams, _Layers, _View, _Object, np.random.Generator], Painted]

DEFECT_DRAWERS: dict[str, tuple[Sampler, Painter]] = {
    "AK": (_sample_pit, _paint_pit),
    "BX": (_sample_deformation, _paint_deformation),
    "CH": (_sample_abrasion, _paint_abrasion),
    "HS": (_sample_scratch, _paint_scratch),
    "PS": (_sample_damage, _paint_damage),
    "QS": (_sample_missing, _paint_missing),
    "YW": (_sample_foreign, _paint_foreign),
    "ZW": (_sample_smear, _paint_smear),
}
"""Defect code -> (sampler on the object, painter in a view)."""


# ----------------------------------------------------------------------------------------------------------------
# Samples


def _rng(seed: int, category: str, kind: str, number: int, *stream: int) -> np.random.Generator:
    """The generator of one random stream of one sample; streams never share state, so samples are independent."""
    kind_id = 0 if kind == NORMAL_CLASS else 1 + DEFECT_CODES.index(kind)
    return np.random.default_rng([seed, zlib.crc32(category.encode()), kind_id, number, *stream])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


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
                tuple(_channels_last(image) for image in images), tuple(_channels_last(clean) for clean in cleans),
                tuple(masks), foreground,
            )
    raise RuntimeError(
        f"{category} {kind} sample {number}: no defect with a mask of {MASK_AREA[0]:.2%}-{MASK_AREA[1]:.2%} of the "
        f"image in 30 tries at {size} px"
    )


def _timestamps(seed: int, category: str, kind: str, number: int) -> list[str]:
    """One capture time per view (YYYYmmddHHMMSS): a random day-time in 60 days, then a few seconds per view."""
    rng = _rng(seed, category, kind, number, 4)
    moment = _BASE_TIME + timedelta(seconds=int(rng.integers(0, 60 * 24 * 3600)))
    stamps = []
    for _ in VIEWS:
        moment += timedelta(seconds=int(rng.integers(2, 10)))
        stamps.append(moment.strftime("%Y%m%d%H%M%S"))
    return stamps


def sample_folder(category: str, kind: str, number: int) -> str:
    """The sample folder inside the category folder: ``OK/S0001`` or ``NG/<CODE>/S0001``."""
    return f"OK/S{number:04d}" if kind == NORMAL_CLASS else f"NG/{kind}/S{number:04d}"


def image_name(category: str, kind: str, number: int, view: str, timestamp: str) -> str:
    """Image file name, with the release's double underscore in audiojack NG names."""
    if kind == NORMAL_CLASS:
        return f"{category}_{number:04d}_OK_{view}_{timestamp}.jpg"
    separator = "__" if category == "audiojack" else "_"
    return f"{category}{separator}{number:04d}_NG_{kind}_{view}_{timestamp}.jpg"


def _write_encoded(path: Path, image: np.ndarray, options: list[int]) -> None:
    """Encode ``image`` in the format of ``path``'s suffix (cv2; BGR or grey) and write the bytes."""
    ok, data = cv2.imencode(path.suffix, image, options)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode a {image.shape} {image.dtype} image as {path.suffix}")
    path.write_bytes(data.tobytes())


def _write_sample(category_dir: str, category: str, kind: str, number: int, size: int, seed: int
                  ) -> list[dict[str, Any]]:
    """Render one sample, write its views (and masks) under ``category_dir``; return its 5 JSON records."""
    rendered = render_sample(category, kind, number, size=size, seed=seed)
    folder = sample_folder(category, kind, number)
    category_dir = Path(category_dir)
    (category_dir / folder).mkdir(parents=True)
    records = []
    for view, stamp, image, mask in zip(VIEWS, _timestamps(seed, category, kind, number), rendered.images,
                                        rendered.masks):
        name = image_name(category, kind, number, view, stamp)
        _write_encoded(category_dir / folder / name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        mask_path = None
        if mask is not None:
            mask_path = f"{folder}/{name[:-4]}.png"
            _write_encoded(category_dir / mask_path, mask.astype(np.uint8) * 255, [])
        records.append({
            "category": category,
            "anomaly_class": NORMAL_CLASS if mask is None else kind,
            "image_path": f"{folder}/{name}",
            "mask_path": mask_path,
        })
    return records


# ----------------------------------------------------------------------------------------------------------------
# Splits


@dataclass(frozen=True)
class _SplitPlan:
    """Which samples of one category go where. Samples are ``(kind, number)``; train lists are in take order."""

    ok_train: tuple[tuple[str, int], ...]
    ok_test: tuple[tuple[str, int], ...]
    ng_train: tuple[tuple[str, int], ...]
    """NG training samples, types interleaved (type order shuffled), so that a prefix covers the types evenly."""
    ng_test: tuple[tuple[str, int], ...]

    @property
    def samples(self) -> tuple[tuple[str, int], ...]:
        return self.ok_train + self.ok_test + self.ng_train + self.ng_test


def _plan_splits(config: SyntheticConfig, category: str, seed: int) -> _SplitPlan:
    rng = np.random.default_rng([seed, zlib.crc32(category.encode()), 99])
    ok_order = rng.permutation(config.train_samples + config.test_ok_samples) + 1
    ok_test = sorted(ok_order[: config.test_ok_samples].tolist())
    per_type_train, ng_test = {}, []
    for code in DEFECT_CODES:
        order = rng.permutation(config.ng_train_per_type + config.test_ng_samples) + 1
        ng_test += [(code, n) for n in sorted(order[: config.test_ng_samples].tolist())]
        per_type_train[code] = order[config.test_ng_samples:].tolist()
    type_order = [DEFECT_CODES[i] for i in rng.permutation(len(DEFECT_CODES))]
    ng_train = [(code, per_type_train[code][r]) for r in range(config.ng_train_per_type) for code in type_order]
    return _SplitPlan(
        ok_train=tuple((NORMAL_CLASS, n) for n in ok_order[config.test_ok_samples:].tolist()),
        ok_test=tuple((NORMAL_CLASS, n) for n in ok_test),
        ng_train=tuple(ng_train),
        ng_test=tuple(ng_test),
    )


def _split_sets(config: SyntheticConfig, plan: _SplitPlan) -> dict[str, tuple[list[tuple[str, int]], ...]]:
    """JSON folder name -> (train samples, test samples, views kept)."""
    test = list(plan.ok_test + plan.ng_test)
    all_ng = sorted(plan.ng_train + plan.ng_test, key=lambda s: (DEFECT_CODES.index(s[0]), s[1]))
    sets = {
        json_folder_name("standard", 0.0): (list(plan.ok_train), list(plan.ok_test) + all_ng, list(VIEWS)),
        json_folder_name("sv", 0.0): (list(plan.ok_train), list(plan.ok_test) + all_ng, [VIEWS[0]]),
    }
    for alpha in FUIAD_ALPHAS:
        ng = config.ng_train_count(alpha)
        train = list(plan.ng_train[:ng]) + list(plan.ok_train[: config.train_samples - ng])
        sets[json_folder_name("fuiad", alpha)] = (train, test, list(VIEWS))
    return sets


def _json_dir(out: Path, folder: str, layout: str) -> Path:
    return out / folder if layout == "flat" else out / NESTED_PARENT / folder


def _sort_key(sample: tuple[str, int]) -> tuple[int, int]:
    kind, number = sample
    return (-1 if kind == NORMAL_CLASS else DEFECT_CODES.index(kind), number)


def _write_jsons(out: Path, config: SyntheticConfig, category: str, plan: _SplitPlan,
                 records: dict[tuple[str, int], list[dict[str, Any]]], layout: str) -> dict[str, int]:
    """Write one category's split JSONs from its samples' records; return its image counts per split."""
    counts: dict[str, int] = {}
    for folder, (train, test, views) in _split_sets(config, plan).items():
        content: dict[str, Any] = {"meta": {"prefix": f"{category}/", "normal_class": NORMAL_CLASS}}
        for split, samples in (("train", train), ("test", test)):
            content[split] = [
                record for sample in sorted(samples, key=_sort_key) for view, record in zip(VIEWS, records[sample])
                if view in views
            ]
            counts[f"{folder}/{split}"] = len(content[split])
            counts[f"{folder}/{split}_from_ng"] = sum(r["image_path"].startswith("NG/") for r in content[split])
            counts[f"{folder}/{split}_anomalous"] = sum(r["mask_path"] is not None for r in content[split])
        target = _json_dir(out, folder, layout)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{category}.json").write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    counts["images"] = sum(len(r) for r in records.values())
    counts["masks"] = sum(r["mask_path"] is not None for rs in records.values() for r in rs)
    return counts


# ----------------------------------------------------------------------------------------------------------------
# Building and caching


def _resolve(preset: str | SyntheticConfig) -> SyntheticConfig:
    if isinstance(preset, SyntheticConfig):
        return preset
    if preset not in PRESETS:
        raise UserError(f"preset={preset!r} is not valid; choose one of: {', '.join(PRESETS)}")
    return PRESETS[preset]


def _parameters(config: SyntheticConfig, seed: int, layout: str) -> dict[str, Any]:
    """What the marker records and a cached build must match."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed={seed!r} is not valid; expected a non-negative integer")
    if layout not in LAYOUTS:
        raise UserError(f"layout={layout!r} is not valid; choose one of: {', '.join(LAYOUTS)}")
    settings = asdict(config)
    settings["categories"] = list(config.categories)
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "layout": layout, "config": settings}


def read_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a synthetic build at ``root`` (parameters and counts), or None when there is none."""
    path = Path(root) / MARKER_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable synthetic-build marker ({err}); delete {path.parent} to rebuild") from err


def _check_replaceable(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MARKER_NAME).is_file())):
        raise UserError(
            f"{out} exists and is not a synthetic Real-IAD build (no {MARKER_NAME}); refusing to overwrite it. "
            "Choose another output folder or empty it"
        )


def _install(tmp: Path, out: Path, parameters: dict[str, Any]) -> None:
    """Move the finished build ``tmp`` to ``out``, replacing an earlier synthetic build there.

    If another process installed a build with the same parameters meanwhile, that one is kept and ``tmp`` dropped.
    """
    marker = read_marker(out) if out.is_dir() else None
    if marker is not None and marker.get("parameters") == parameters:
        shutil.rmtree(tmp)
        return
    _check_replaceable(out)
    old = None
    if out.is_dir() and marker is not None:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "build")
    elif out.is_dir():
        out.rmdir()
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def _default_workers(samples: int) -> int:
    """In-process for small builds (no start-up cost), else one process per available core (at most 4)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if samples < 200 else min(cores, 4)


def _write_samples(tasks: list[tuple[str, str, str, int, int, int]], workers: int) -> list[list[dict[str, Any]]]:
    """Run :func:`_write_sample` on every task, in ``workers`` spawned processes (in order; 1 = in-process)."""
    if workers <= 1:
        return [_write_sample(*task) for task in tasks]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_write_sample, *zip(*tasks), chunksize=8))


def build_synthetic(out: str | os.PathLike, preset: str | SyntheticConfig = "demo", *, seed: int = 0,
                    layout: str = "flat", workers: int | None = None) -> dict[str, Any]:
    """Generate the set at ``out`` (replacing an earlier synthetic build there); return the marker it wrote.

    The files are written to a temporary sibling folder that is renamed to ``out`` once complete; on any error
    the temporary folder is removed and ``out`` is left as it was. Refuses to touch an ``out`` that holds
    anything but an earlier synthetic build. ``workers`` processes render in parallel (None: see
    ``_default_workers``); the output does not depend on it.
    """
    config = _resolve(preset)
    parameters = _parameters(config, seed, layout)
    out = Path(out).absolute()
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        plans = {category: _plan_splits(config, category, seed) for category in config.categories}
        tasks = [
            (str(tmp / IMAGE_FOLDER / category), category, kind, number, config.size, seed)
            for category, plan in plans.items() for kind, number in plan.samples
        ]
        workers = _default_workers(len(tasks)) if workers is None else workers
        log.info("synthetic Real-IAD: rendering %d samples (x%d views) with %d process(es)",
                 len(tasks), len(VIEWS), workers)
        written = iter(_write_samples(tasks, workers))
        counts = {}
        for category, plan in plans.items():
            records = {sample: next(written) for sample in plan.samples}
            counts[category] = _write_jsons(tmp, config, category, plan, records, layout)
        totals: dict[str, int] = {}
        for per_category in counts.values():
            for key, value in per_category.items():
                totals[key] = totals.get(key, 0) + value
        marker = {"parameters": parameters, "totals": totals, "per_category": counts}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        _install(tmp, out, parameters)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic Real-IAD written to %s in %.1f s (%d images, %d masks)",
             out, time.perf_counter() - started, totals["images"], totals["masks"])
    return marker


def ensure_synthetic(root: str | os.PathLike, preset: str | SyntheticConfig = "demo", seed: int = 0,
                     layout: str = "flat", *, workers: int | None = None) -> Path:
    """The synthetic set at ``root``, built unless a build with the same parameters and generator version is there.

    ``preset`` is a name out of ``PRESETS`` or a :class:`SyntheticConfig`; ``workers`` as in
    :func:`build_synthetic`. Returns ``root``.
    """
    parameters = _parameters(_resolve(preset), seed, layout)
    root = Path(root)
    marker = read_marker(root) if root.is_dir() else None
    if marker is not None and marker.get("parameters") == parameters:
        log.info("synthetic Real-IAD at %s is up to date (generator v%d)", root, GENERATOR_VERSION)
        return root
    if marker is not None:
        log.info("synthetic Real-IAD at %s was built with other parameters; rebuilding", root)
    build_synthetic(root, preset, seed=seed, layout=layout, workers=workers)
    return root


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _parse_categories(values: Sequence[str]) -> tuple[str, ...]:
    names = [name for value in values for name in value.split(",") if name]
    if len(names) == 1 and names[0].isdigit():
        count = int(names[0])
        if not 1 <= count <= len(CATEGORY_STYLES):
            raise UserError(f"--categories {count}: expected a count in [1, {len(CATEGORY_STYLES)}] or names")
        return tuple(CATEGORY_STYLES)[:count]
    return tuple(names)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mtfcdd.data.synthetic",
        description="Write a synthetic data set in the exact Real-IAD layout (images, masks, split JSONs).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (the data set root)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="sizes to start from (default demo)")
    parser.add_argument("--categories", nargs="+", metavar="N|NAME",
                        help=f"a count (the first N) or names out of: {', '.join(CATEGORY_STYLES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=LAYOUTS, default="flat",
                        help="flat: DIR/realiad_jsons_fuiad_0.1/; nested: DIR/realiad_jsons/realiad_jsons_fuiad_0.1/")
    parser.add_argument("--size", type=int, help="image side in px")
    parser.add_argument("--train-samples", type=int, help="train samples per category (x5 views), every alpha")
    parser.add_argument("--test-ok-samples", type=int, help="OK test samples per category")
    parser.add_argument("--test-ng-samples", type=int, help="NG test samples per category and defect type")
    parser.add_argument("--workers", type=int, help="rendering processes (default: 1 for small sets, else the cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even when an identical build is there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_user_error():
        overrides = {
            key: getattr(args, key) for key in ("size", "train_samples", "test_ok_samples", "test_ng_samples")
            if getattr(args, key) is not None
        }
        if args.categories:
            overrides["categories"] = _parse_categories(args.categories)
        config = replace(PRESETS[args.preset], **overrides)
        if args.force:
            build_synthetic(args.out, config, seed=args.seed, layout=args.layout, workers=args.workers)
        else:
            ensure_synthetic(args.out, config, seed=args.seed, layout=args.layout, workers=args.workers)
        marker = read_marker(args.out)
        totals = marker["totals"]
        print(f"{args.out}: {totals['images']} images, {totals['masks']} masks, "
              f"{len(config.categories)} categories ({', '.join(config.categories)}), {config.size} px")
        for alpha in FUIAD_ALPHAS:
            folder = json_folder_name("fuiad", alpha)
            print(f"  {folder}: train {totals[folder + '/train']} ({totals[folder + '/train_from_ng']} from NG), "
                  f"test {totals[folder + '/test']} ({totals[folder + '/test_anomalous']} anomalous)")


if __name__ == "__main__":
    main(sys.argv[1:])
