"""The eight defect looks: a sampler draws the defect on the object (canonical frame, once per sample); a painter
renders it in a view and returns the altered image and the region it may change."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from mtfcdd.data.synthetic.geometry import (
    _SHIFT,
    Polygon,
    _blob,
    _fixed_point,
    _outward_normals,
    _raster,
    _rotation,
    _to_pixels,
)
from mtfcdd.data.synthetic.scene import _albedo, _coverage, _Layers, _Object, _View
from mtfcdd.data.synthetic.textures import _grid, skimage_image

_FOREIGN_IMAGES = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry")
_SMEAR_COLOURS = np.array(
    [(0.42, 0.20, 0.02), (0.10, 0.62, 0.08), (0.52, 0.08, 0.62), (0.05, 0.28, 0.85), (0.90, 0.72, 0.02)]
)
"""Saturated smear colours: brown (oil), green, purple, blue, yellow."""
_FOREIGN_COLOURS = np.array(
    [
        (0.05, 0.85, 0.95),
        (0.95, 0.10, 0.75),
        (0.10, 0.90, 0.15),
        (0.98, 0.55, 0.05),
        (0.45, 0.10, 0.95),
        (0.05, 0.05, 0.05),
    ]
)
_WIRE_COLOURS = np.array(
    [(0.85, 0.45, 0.15), (0.05, 0.05, 0.05), (0.10, 0.75, 0.95), (0.95, 0.95, 0.92), (0.90, 0.10, 0.10)]
)
"""Hair or wire colours: copper, black, cyan insulation, white, red insulation."""
_GLUE_COLOURS = np.array([(0.95, 0.88, 0.62), (0.86, 0.87, 0.92)])
"""Pale adhesive residue left where a component was torn off: cream or whitish (the one farther from the body)."""


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
    gaps = np.array(
        [
            min(
                (
                    -cv2.pointPolygonTest(part.poly.astype(np.float32), (float(p[0]), float(p[1])), True)
                    for part in obj.parts
                ),
                default=np.inf,
            )
            for p in outline
        ]
    )
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
    return (
        inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2],
        inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2],
    )


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


def _paint_deformation(
    p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator
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


def _paint_abrasion(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
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


def _paint_scratch(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
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


def _paint_damage(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
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
    albedo = np.where(pad[None], albedo * (1 - cover) + glue[:, None, None] * cover, albedo)
    rim = np.zeros((size, size), np.uint8)
    cv2.polylines(rim, [_fixed_point(part.poly, view.matrix)], True, 255, max(1, round(size / 128)), cv2.LINE_8, _SHIFT)
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
        return {
            "wire": local @ _rotation(angle).T + centre,
            "width": rng.uniform(0.055, 0.07),
            "colour": _far_colour(_WIRE_COLOURS, obj.colour, rng),
        }
    radius = rng.uniform(0.2, 0.26)
    params: DefectParams = {"poly": _blob(rng, centre, (radius, radius * rng.uniform(0.65, 1.0)), angle, 0.3, n=9)}
    if rng.random() < 0.5:
        params["colour"] = _far_colour(_FOREIGN_COLOURS, obj.colour, rng)
    else:
        params["image"] = _FOREIGN_IMAGES[int(rng.integers(len(_FOREIGN_IMAGES)))]
        params["offset"] = rng.uniform(0.2, 0.6, 2)
    return params


def _paint_foreign(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
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
        crop = source[int(top) : int(top) + side, int(left) : int(left) + side]
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


def _paint_smear(p: DefectParams, layers: _Layers, view: _View, obj: _Object, rng: np.random.Generator) -> Painted:
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
