"""Which classes the balanced training sampler draws uniformly (``data.balance``).

``types``: one class per defect type of the run's vocabulary (M types: ``type_index`` 0..M-1), then normal = M (the
paper: M = 8, 9 classes, so 8 of 9 draws are defective); ``binary``: 2 classes, any defect (0) and normal (1), half
each, as FCDD balances; ``auto``: ``AUTO_BALANCE`` of the mode. The balanced epoch (coupon collector) is computed
over these classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mtfcdd.core.config import ConfigError, check_choice

BALANCES = ("auto", "types", "binary")
# what ``balance="auto"`` means per mode (mode single: the one that measured better on the demo set, see
# docs/train-realiad.md)
AUTO_BALANCE = {"multi": "types", "single": "binary"}


class Labelled(Protocol):
    """A training record as the sampler sees it (e.g. ``mtfcdd.data.realiad.Record``): ``type_index`` -1 for
    normal images, else the defect type's index in the run's vocabulary."""

    type_index: int


def class_index(type_index: int, num_types: int) -> int:
    """The ``types`` sampler class of an image: its ``type_index``, or ``num_types`` (normal, after the types)."""
    return type_index if type_index >= 0 else num_types


def num_sampler_classes(balance: str, num_types: int) -> int:
    """Sampler classes under ``balance`` (``types``: ``num_types`` + 1; ``binary``: 2)."""
    return num_types + 1 if balance == "types" else 2


def resolve_balance(balance: str, mode: str) -> str:
    """``types`` or ``binary`` for the config value ``balance`` in ``mode``; unknown values fail naming the key."""
    check_choice("data.balance", balance, BALANCES)
    return AUTO_BALANCE[mode] if balance == "auto" else balance


def sampler_classes(records: Sequence[Labelled], balance: str, num_types: int) -> list[int]:
    """The sampler class of every record under ``balance`` (``types`` or ``binary``, see the module docstring) in a
    vocabulary of ``num_types`` defect types."""
    if balance == "types":
        return [class_index(r.type_index, num_types) for r in records]
    if balance == "binary":
        return [int(r.type_index < 0) for r in records]
    raise ConfigError(f"data.balance={balance!r} is not valid here; expected types or binary")
