"""The seeded split of a folder's images into train / validation / test, stratified by category and type.

Each stratum (pool, category, type or normal) is shuffled by a generator seeded with ``seed`` and the stratum's name,
so a stratum's split depends only on its own files and the seed. Then:

- per-type layout (pool ``all``): ``test_fraction`` of each stratum goes to test, ``val_fraction`` of the rest to
  validation, the rest to training; each part with a share above 0 gets at least one image (the defaults leave about
  63 / 7 / 30 %; ``test_fraction`` 0 keeps no test images: the final model, trained on every labelled image);
- MVTec AD: ``train/good`` is the normal training set; of each ``test/<type>`` folder, ``train_defect_fraction``
  (the role of Real-IAD's alpha; at least one image when above 0) moves into training, with its masks;
  ``val_fraction`` of what remains, and of ``test/good``, goes to validation, the rest to test (``test_fraction``
  plays no part).

``train_defects_per_type`` then keeps at most that many defective training images per type (taken in turn from
each category, in the shuffled order); the others are left out (``unused``), so validation and test stay the same
for every value and a smaller training set is a subset of a larger one: the label-count sweep.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from mtfcdd.core.config import ConfigError
from mtfcdd.data.folder.records import FolderImage, FolderIndex, raise_problems

DEFAULT_TEST_FRACTION = 0.3
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TRAIN_DEFECT_FRACTION = 0.2
"""MVTec AD's share of each type's defective images moved into training when ``train_defect_fraction`` is None."""


@dataclass(frozen=True)
class FolderSplit:
    """The images of each split, sorted by path; ``unused``: defective training images left out by
    ``train_defects_per_type``; ``options``: the arguments that made it (plain values, for the split files)."""

    train: tuple[FolderImage, ...]
    val: tuple[FolderImage, ...]
    test: tuple[FolderImage, ...]
    unused: tuple[FolderImage, ...] = ()
    options: dict[str, object] = field(default_factory=dict)


def _fraction(key: str, value: object, low_open: bool, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 < value < 1 if low_open else 0 <= value < 1):
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ConfigError(
            f"data.{key}={value!r} is not valid; expected a number in {interval}" + (" or null" if allow_none else "")
        )


def _check_options(
    index: FolderIndex,
    seed: object,
    test_fraction: object,
    val_fraction: object,
    train_defect_fraction: object,
    train_defects_per_type: object,
) -> None:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"data.split_seed={seed!r} is not valid; expected an integer >= 0")
    _fraction("test_fraction", test_fraction, low_open=False)
    _fraction("val_fraction", val_fraction, low_open=False)
    _fraction("train_defect_fraction", train_defect_fraction, low_open=False, allow_none=True)
    if train_defect_fraction is not None and index.layout != "mvtec":
        raise ConfigError(
            f"data.train_defect_fraction={train_defect_fraction!r} applies to the mvtec layout (defective images "
            f"under test/ only); {index.root} has the {index.layout} layout, whose split already trains on "
            "defective images: leave it null"
        )
    count = train_defects_per_type
    if count is not None and (isinstance(count, bool) or not isinstance(count, Integral) or count < 1):
        raise ConfigError(f"data.train_defects_per_type={count!r} is not valid; expected an integer >= 1 or null")


def split_options(
    index: FolderIndex,
    *,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    train_defect_fraction: float | None = None,
    train_defects_per_type: int | None = None,
) -> dict[str, object]:
    """The arguments of ``split_folder`` checked and as its split files record them (plain values;
    ``train_defect_fraction`` resolved: ``DEFAULT_TRAIN_DEFECT_FRACTION`` for None in the MVTec layout, None in
    the others). Raises ``ConfigError`` for an invalid argument."""
    _check_options(index, seed, test_fraction, val_fraction, train_defect_fraction, train_defects_per_type)
    moved = DEFAULT_TRAIN_DEFECT_FRACTION if train_defect_fraction is None else train_defect_fraction
    return {
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "val_fraction": float(val_fraction),
        "train_defect_fraction": float(moved) if index.layout == "mvtec" else None,
        "train_defects_per_type": None if train_defects_per_type is None else int(train_defects_per_type),
    }


def _count(share: float, n: int, minimum: int, maximum: int) -> int:
    """``share`` of ``n`` rounded half up, within [minimum, maximum]."""
    return max(minimum, min(maximum, int(share * n + 0.5)))


def _shuffled(members: list[FolderImage], seed: int, name: str) -> list[FolderImage]:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    return [members[i] for i in rng.permutation(len(members))]


def _parts(members: list[FolderImage], fractions: Sequence[float]) -> tuple[list[int], str | None]:
    """Sizes of the parts of one stratum: ``fractions[k]`` of what the parts before it left (0: no part, else at
    least one image), the last part takes the rest; or a problem when there are too few images."""
    wanted = sum(1 for f in fractions if f > 0) + 1
    if len(members) < wanted:
        first = members[0]
        what = "normal images" if first.type is None else f"images of type {first.type!r}"
        folders = ", ".join(sorted({str(image.image.parent) for image in members}))
        return [], (
            f"{len(members)} {what} in category {first.category} ({folders}) are too few to split; expected "
            f"at least {wanted} (one for each of training, validation and test that has a share)"
        )
    sizes, left = [], len(members)
    for k, share in enumerate(fractions):
        later = sum(1 for f in fractions[k + 1 :] if f > 0) + 1
        size = _count(share, left, 1, left - later) if share > 0 else 0
        sizes.append(size)
        left -= size
    return sizes + [left], None


def _limit(train: list[FolderImage], per_type: int | None) -> tuple[list[FolderImage], list[FolderImage]]:
    """(kept, unused): at most ``per_type`` defective images per type, taken in turn from each category."""
    if per_type is None:
        return train, []
    by_type: dict[str, dict[str, list[FolderImage]]] = {}
    for image in train:
        if image.type is not None:
            by_type.setdefault(image.type, {}).setdefault(image.category, []).append(image)
    unused: list[FolderImage] = []
    for categories in by_type.values():
        queues = [categories[name] for name in sorted(categories)]
        turns = [queue[k] for k in range(max(map(len, queues))) for queue in queues if k < len(queue)]
        unused += turns[per_type:]
    dropped = {image.image for image in unused}
    return [image for image in train if image.image not in dropped], unused


def split_folder(index: FolderIndex, **arguments: Any) -> FolderSplit:
    """The split of ``index`` (see the module's description); the same arguments give the same split.

    ``arguments``: those of ``split_options`` (seed, test_fraction, val_fraction, train_defect_fraction,
    train_defects_per_type).

    ``train_defect_fraction`` None means ``DEFAULT_TRAIN_DEFECT_FRACTION`` in the MVTec layout; other layouts
    take none. Raises ``ConfigError`` for an invalid argument and
    ``FolderFormatError`` naming every stratum with too few images.
    """
    options = split_options(index, **arguments)
    seed, test_fraction, val_fraction = options["seed"], options["test_fraction"], options["val_fraction"]
    train_defects_per_type = options["train_defects_per_type"]
    moved = options["train_defect_fraction"] or 0.0
    strata: dict[tuple[str, str, str], list[FolderImage]] = {}
    for image in index.images:
        strata.setdefault((image.pool, image.category, image.type or ""), []).append(image)
    parts: dict[str, list[FolderImage]] = {"train": [], "val": [], "test": []}
    problems = []
    for (pool, category, kind), members in sorted(strata.items()):
        order = _shuffled(members, seed, f"{pool}/{category}/{kind}")
        if pool == "train":
            parts["train"] += order
            continue
        names, fractions = (
            (("test", "val", "train"), [test_fraction, val_fraction])
            if pool == "all"
            else (("train", "val", "test"), [moved if kind else 0.0, val_fraction])
        )
        sizes, problem = _parts(order, fractions)
        if problem:
            problems.append(problem)
            continue
        start = 0
        for name, size in zip(names, sizes):
            parts[name] += order[start : start + size]
            start += size
    raise_problems(problems, index.root, hint="lower data.val_fraction or add images")
    train, unused = _limit(parts["train"], train_defects_per_type)

    def ordered(images: list[FolderImage]) -> tuple[FolderImage, ...]:
        return tuple(sorted(images, key=lambda image: image.image))

    return FolderSplit(ordered(train), ordered(parts["val"]), ordered(parts["test"]), ordered(unused), options)
