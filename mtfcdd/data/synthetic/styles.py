"""How each category looks: shape family, colours, components and background (canonical units)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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


# fmt: off
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
# fmt: on
"""The categories the generator can draw, in default order (audiojack first, for its file-name quirk)."""
