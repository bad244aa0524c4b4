"""Polygons in the canonical object frame and their rasterisation into a view."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Polygon = np.ndarray
"""(K, 2) float64 vertices, in the canonical object frame (unit = object radius) unless said otherwise."""


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


def _blob(
    rng: np.random.Generator,
    centre: Sequence[float],
    radii: tuple[float, float],
    angle: float,
    roughness: float,
    n: int = 48,
) -> Polygon:
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


def _fill(canvas: np.ndarray, polys: Sequence[Polygon], matrix: np.ndarray, value: float, smooth: bool = True) -> None:
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
