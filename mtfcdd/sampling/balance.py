"""Which classes the balanced training sampler draws uniformly (``data.balance``).

``types``: the paper's 9 classes (8 defect types by ``class_index``, then normal = 8), so 8 of 9 draws are defective;
``binary``: 2 classes, any defect (0) and normal (1), half each, as FCDD balances; ``auto``: :data:`AUTO_BALANCE`
of the mode. The balanced epoch (coupon collector) is computed over these classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.core.defect_types import NORMAL_CLASS_INDEX, NUM_CLASSES

BALANCES = ("auto", "types", "binary")
# what ``balance="auto"`` means per mode (mode single: the one that measured better on the demo set, see README)
AUTO_BALANCE = {"multi": "types", "single": "binary"}
# sampler classes per balance
NUM_SAMPLER_CLASSES = {"types": NUM_CLASSES, "binary": 2}


class Labelled(Protocol):
    """A training record as the sampler sees it (e.g. :class:`mtfcdd.data.realiad.Record`)."""

    class_index: int


def resolve_balance(balance: str, mode: str) -> str:
    """``types`` or ``binary`` for the config value ``balance`` in ``mode``; unknown values fail naming the key."""
    check_choice("data.balance", balance, BALANCES)
    return AUTO_BALANCE[mode] if balance == "auto" else balance


def sampler_classes(records: Sequence[Labelled], balance: str) -> list[int]:
    """The sampler class of every record under ``balance`` (``types`` or ``binary``, see the module docstring)."""
    if balance == "types":
        return [r.class_index for r in records]
    if balance == "binary":
        return [int(r.class_index == NORMAL_CLASS_INDEX) for r in records]
    raise ConfigError(f"data.balance={balance!r} is not valid here; expected types or binary")
