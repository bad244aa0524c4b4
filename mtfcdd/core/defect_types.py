"""A run's defect types (its vocabulary): code, name and figure colour of each, in the channel order of its models.

The vocabulary is data, not code: each data module brings its own (``data=realiad`` and the synthetic set: Real-IAD's
8 types, ``REALIAD_VOCABULARY``, or the subset ``data.defect_codes`` picks; a folder data set: its folder
names), train writes it into the run config (``data.vocabulary``, hence into every checkpoint), and everything that
counts, names or colours a channel reads it from there (``vocabulary_of``). Channel ``k`` of a multi-type
model's heatmaps is type ``k`` of its vocabulary; the sampler's classes are the types, then normal.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtfcdd.core.config import ConfigError

MODES = ("multi", "single")
"""Heatmap channels of a run: ``multi`` = one per defect type of its vocabulary; ``single`` = one any-defect channel."""

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DefectType:
    """One defect type: ``code`` as in the data (Real-IAD's ``AK``, a folder name such as ``crack``), ``name``
    (channel and column name), ``colour`` (RGB 0-255, its colour in every figure)."""

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
"""Real-IAD's 8 defect types, in the fixed channel order of its multi-type models."""

PALETTE: tuple[RGB, ...] = (
    *(t.colour for t in DEFECT_TYPES),
    (0, 255, 200),  # aquamarine
    (190, 150, 130),  # tan
    (180, 160, 255),  # lavender
    (200, 230, 140),  # pale lime
    (230, 90, 120),  # rose
    (200, 110, 40),  # rust
    (0, 130, 220),  # azure
    (200, 170, 60),  # ochre
    (80, 190, 100),  # mid green
    (255, 170, 210),  # light pink
    (0, 190, 190),  # teal
    (200, 230, 230),  # pale cyan
)
"""Colours of types that bring none, by position: Real-IAD's 8, then 12 more; any two differ by at least 30 in CIE76
Delta E (bright enough for the black-to-colour heatmap colormap). Beyond 20 types: ``palette_colour``."""

NORMAL_CLASS = "OK"
"""Real-IAD's ``anomaly_class`` of normal images."""
SINGLE_CHANNEL_NAME = "anomaly"
"""The one channel of a mode-single model."""
ANY_DEFECT_COLOUR: RGB = (255, 60, 60)
"""Colour of a channel that is no single type (mode single)."""


def palette_colour(position: int) -> RGB:
    """``PALETTE[position]``; past its end, hues spaced by the golden angle (deterministic, less distinct)."""
    if position < len(PALETTE):
        return PALETTE[position]
    hue = (position - len(PALETTE)) * 0.618033988749895 % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.55 + 0.3 * (position % 2), 1.0)
    return round(red * 255), round(green * 255), round(blue * 255)


def _colour(value: object, where: str) -> RGB:
    """``value`` (3 integers 0-255) as an RGB tuple; a ``ConfigError`` naming ``where`` otherwise."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or len(value) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise ConfigError(f"{where}={value!r} is not a colour; expected [r, g, b], integers 0-255")
    return int(value[0]), int(value[1]), int(value[2])


@dataclass(frozen=True)
class Vocabulary:
    """The defect types of a run, in channel order: at least one, distinct codes and distinct names."""

    types: tuple[DefectType, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types))
        codes, names = self.codes, self.names
        if not codes:
            raise ConfigError("data.vocabulary is empty; expected at least one defect type")
        for what, values in (("code", codes), ("name", names)):
            bad = [v for v in values if not isinstance(v, str) or not v]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if bad or repeated:
                raise ConfigError(
                    f"defect type {what}s {list(values)!r} are not valid; expected distinct non-empty strings"
                    + (f" (repeated: {', '.join(repeated)})" if repeated else "")
                )
        for t in self.types:
            _colour(t.colour, f"colour of defect type {t.code!r}")

    @property
    def codes(self) -> tuple[str, ...]:
        """The type codes (as the data labels images), in channel order."""
        return tuple(t.code for t in self.types)

    @property
    def names(self) -> tuple[str, ...]:
        """The type names (channel, column and figure names), in channel order."""
        return tuple(t.name for t in self.types)

    @property
    def colours(self) -> tuple[RGB, ...]:
        """The type colours (RGB 0-255), in channel order."""
        return tuple(t.colour for t in self.types)

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[DefectType]:
        return iter(self.types)

    def index(self, code: str) -> int:
        """Channel of the type with ``code``; a ``ConfigError`` naming the valid codes otherwise."""
        codes = self.codes
        if code not in codes:
            raise ConfigError(f"defect code {code!r} is not in the run's vocabulary: {', '.join(codes)}")
        return codes.index(code)

    def name_of(self, code: str) -> str:
        """The name of the type with ``code``."""
        return self.types[self.index(code)].name

    def colour(self, name: str) -> RGB:
        """The colour of the type called ``name`` (else of the type coded ``name``); ``ANY_DEFECT_COLOUR`` for any
        other channel name (the any-defect channel)."""
        by_name = {t.name: t.colour for t in self.types}
        return by_name.get(name) or {t.code: t.colour for t in self.types}.get(name, ANY_DEFECT_COLOUR)

    def channel_names(self, mode: str) -> list[str]:
        """Heatmap channel names: the type names (mode multi) or ``["anomaly"]`` (mode single)."""
        return [SINGLE_CHANNEL_NAME] if mode == "single" else list(self.names)

    def channel_colours(self, mode: str) -> list[RGB]:
        """Heatmap channel colours: the type colours (mode multi) or ``[ANY_DEFECT_COLOUR]`` (mode single)."""
        return [ANY_DEFECT_COLOUR] if mode == "single" else list(self.colours)

    def to_config(self) -> list[dict[str, Any]]:
        """Plain data for a config or checkpoint: ``[{code, name, colour: [r, g, b]}, ...]``."""
        return [{"code": t.code, "name": t.name, "colour": list(t.colour)} for t in self.types]

    @classmethod
    def from_config(cls, entries: Sequence[Mapping[str, Any]]) -> Vocabulary:
        """The inverse of ``to_config``; a ``ConfigError`` naming ``data.vocabulary`` when malformed."""
        if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
            raise ConfigError(f"data.vocabulary={entries!r} is not valid; expected a list of {{code, name, colour}}")
        types = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or set(entry) != {"code", "name", "colour"}:
                raise ConfigError(
                    f"data.vocabulary[{position}]={entry!r} is not valid; expected keys code, name and colour"
                )
            colour = _colour(list(entry["colour"]), f"data.vocabulary[{position}].colour")
            types.append(DefectType(entry["code"], entry["name"], colour))
        return cls(tuple(types))

    @classmethod
    def from_codes(
        cls,
        codes: Sequence[str],
        names: Mapping[str, str] | None = None,
        colours: Mapping[str, Sequence[int]] | None = None,
    ) -> Vocabulary:
        """The vocabulary of ``codes`` in that order.

        A Real-IAD code keeps its name and colour; any other code is its own name and takes the next colour of
        ``PALETTE`` that no type of this vocabulary has yet, by position (so ``[crack, dent, rust]``: the first
        three palette colours). ``names`` and ``colours`` (code -> name, code -> ``[r, g, b]``; the config's
        ``data.type_names`` / ``data.type_colours``) override them per type; a key that is no code of ``codes``
        raises ``ConfigError``.
        """
        codes = [codes] if isinstance(codes, str) else list(codes)
        names, colours = dict(names or {}), dict(colours or {})
        for key, overrides in (("data.type_names", names), ("data.type_colours", colours)):
            unknown = [code for code in overrides if code not in codes]
            if unknown:
                raise ConfigError(
                    f"{key} names {', '.join(map(str, unknown))}, not a defect type of this run; "
                    f"expected some of: {', '.join(map(str, codes))}"
                )
        known = {t.code: t for t in DEFECT_TYPES}
        fixed = {code: _colour(list(colour), f"data.type_colours.{code}") for code, colour in colours.items()}
        fixed.update({code: known[code].colour for code in codes if code in known and code not in fixed})
        taken = set(fixed.values())
        free = (colour for colour in map(palette_colour, range(len(PALETTE) + len(codes))) if colour not in taken)
        types = []
        for code in codes:
            default_name = known[code].name if code in known else code
            colour = fixed[code] if code in fixed else next(free)
            types.append(DefectType(code, names.get(code, default_name), colour))
        return cls(tuple(types))


REALIAD_VOCABULARY = Vocabulary(DEFECT_TYPES)
"""Real-IAD's 8 types: the default of ``data=realiad`` and of the synthetic set."""
DEFECT_CODES: tuple[str, ...] = REALIAD_VOCABULARY.codes
"""Real-IAD's defect codes in its channel order (the codes ``data.defect_codes`` picks from)."""


def vocabulary_of(cfg: Any) -> Vocabulary:
    """The vocabulary of a run config (or a checkpoint's): ``data.vocabulary`` (written by train) when present,
    else built from ``data.defect_codes`` (checkpoints older than the key; Real-IAD's 8 when that is unset too)."""
    data = cfg.get("data") if cfg is not None else None
    data = {} if data is None else data
    entries = data.get("vocabulary")
    if entries is not None:
        return Vocabulary.from_config(entries)
    codes = data.get("defect_codes")
    if codes is None:
        return REALIAD_VOCABULARY
    return Vocabulary.from_codes(list(codes), names=data.get("type_names"), colours=data.get("type_colours"))
