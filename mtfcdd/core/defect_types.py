"""The Real-IAD defect types: code, name and figure colour, in the fixed channel order of multi-type models.

The one owner of these facts: the data module, the network builder, the evaluator's type names, the figures and
the export all read them from here. A run may use a subset (``data.defect_codes``); channel ``k`` of its heatmaps
is then the ``k``-th configured code, and everything that labels or colours a channel looks the type up by code or
name, never by position in the full list.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("multi", "single")
"""Heatmap channels of a run: ``multi`` = one per configured defect type; ``single`` = one any-defect channel."""

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DefectType:
    """One defect type: ``code`` as in Real-IAD's folder names, ``name`` (channel and column name), ``colour`` (RGB
    0-255, its colour in every figure)."""

    code: str
    name: str
    colour: RGB


DEFECT_TYPES: tuple[DefectType, ...] = (
    DefectType("AK", "pit", (255, 60, 60)),  # red
    DefectType("BX", "deformation", (255, 160, 0)),  # orange
    DefectType("CH", "abrasion", (240, 230, 40)),  # yellow
    DefectType("HS", "scratch", (60, 220, 60)),  # green
    DefectType("PS", "damage", (40, 200, 255)),  # cyan
    DefectType("QS", "missing_parts", (70, 100, 255)),  # blue
    DefectType("YW", "foreign_objects", (200, 80, 255)),  # violet
    DefectType("ZW", "contamination", (255, 90, 200)),  # pink
)
DEFECT_CODES: tuple[str, ...] = tuple(t.code for t in DEFECT_TYPES)
"""Real-IAD defect codes in the fixed channel order of multi-type models."""
DEFECT_NAMES: dict[str, str] = {t.code: t.name for t in DEFECT_TYPES}
"""Defect code -> type name."""
NORMAL_CLASS_INDEX = len(DEFECT_CODES)
"""Sampler class of normal images; defect images use their type index (0..7)."""
NUM_CLASSES = len(DEFECT_CODES) + 1
"""Sampler classes of ``data.balance=types``: the defect types, then normal."""
NORMAL_CLASS = "OK"
"""Real-IAD's ``anomaly_class`` of normal images."""
SINGLE_CHANNEL_NAME = "anomaly"
"""The one channel of a mode-single model."""
ANY_DEFECT_COLOUR: RGB = (255, 60, 60)
"""Colour of a channel that is no single type (mode single)."""

_COLOUR_BY_NAME: dict[str, RGB] = {t.name: t.colour for t in DEFECT_TYPES}


def channel_names(codes: tuple[str, ...] | list[str], mode: str) -> list[str]:
    """Heatmap channel names: one per configured defect code (mode multi) or ``["anomaly"]`` (mode single)."""
    return [SINGLE_CHANNEL_NAME] if mode == "single" else [DEFECT_NAMES[code] for code in codes]


def colour_of(name: str) -> RGB:
    """The figure colour of the defect type called ``name``; ``ANY_DEFECT_COLOUR`` for any other channel name."""
    return _COLOUR_BY_NAME.get(name, ANY_DEFECT_COLOUR)
