"""What to generate: ``SyntheticConfig`` (categories, image size, sample counts) and its presets."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtfcdd.core.defect_types import DEFECT_CODES
from mtfcdd.core.errors import UserError
from mtfcdd.data.realiad import FUIAD_ALPHAS
from mtfcdd.data.synthetic.styles import CATEGORY_STYLES

_MIN_SIZE, _MAX_SIZE = 48, 1024


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


PRESETS: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(
        categories=("audiojack", "bottle_cap"), size=64, train_samples=20, test_ok_samples=2, test_ng_samples=1
    ),
    "demo": SyntheticConfig(
        categories=("audiojack", "bottle_cap", "mint", "plastic_nut", "woodstick"),
        size=256,
        train_samples=150,
        test_ok_samples=16,
        test_ng_samples=4,
    ),
}
