"""One object instance, its five camera views and the rendered layers of a view (background, body, shading, light)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from mtfcdd.data.synthetic.geometry import (
    _SHIFT,
    Polygon,
    _circle,
    _fill,
    _fixed_point,
    _raster,
    _rect,
    _resample,
    _rotation,
    _rounded_rect,
)
from mtfcdd.data.synthetic.styles import CategoryStyle
from mtfcdd.data.synthetic.textures import _grid, _texture, _to_uint8

_OBJECT_RADIUS = 0.3
"""Object radius (canonical unit) as a share of the image side."""

_MATERIAL_TEXTURE = "gravel"


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
        pad = (
            _circle(centre, spec.size[0] * scale + 0.07)
            if round_part
            else _rounded_rect(np.asarray(spec.size) * scale + 0.05, 0.05) + centre
        )
        parts.append(_Part(poly, jitter_colour(spec.colour), markings, gain, pad))
    return _Object(
        outer=_resample(outer * stretch if style.family in ("disc", "ring", "hexnut") else outer, 256),
        holes=holes,
        colour=jitter_colour(style.colour),
        dome=style.dome,
        parts=tuple(parts),
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
    patch = texture[offset[1] : offset[1] + size, offset[0] : offset[0] + size]
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
    shadow = cv2.warpAffine(
        shadow, np.float32([[1, 0, shift * view.light_dir[0]], [0, 1, shift * view.light_dir[1]]]), (small, small)
    )
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
