"""Writing in the Real-IAD layout: file and folder names, image and mask files, the split plan and split JSONs."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtfcdd.core.defect_types import DEFECT_CODES, NORMAL_CLASS
from mtfcdd.data.realiad import FUIAD_ALPHAS, NESTED_PARENT, json_folder_name
from mtfcdd.data.synthetic.config import SyntheticConfig
from mtfcdd.data.synthetic.sample import VIEWS, _rng, render_sample

IMAGE_FOLDER = "realiad_256"
LAYOUTS = ("flat", "nested")
JPEG_QUALITY = 95
_BASE_TIME = datetime(2023, 9, 1, 8, 0, 0)


def _timestamps(seed: int, category: str, kind: str, number: int) -> list[str]:
    """One capture time per view (YYYYmmddHHMMSS): a random day-time in 60 days, then a few seconds per view."""
    rng = _rng(seed, category, kind, number, 4)
    moment = _BASE_TIME + timedelta(seconds=int(rng.integers(0, 60 * 24 * 3600)))
    stamps = []
    for _ in VIEWS:
        moment += timedelta(seconds=int(rng.integers(2, 10)))
        stamps.append(moment.strftime("%Y%m%d%H%M%S"))
    return stamps


def sample_folder(category: str, kind: str, number: int) -> str:
    """The sample folder inside the category folder: ``OK/S0001`` or ``NG/<CODE>/S0001``."""
    return f"OK/S{number:04d}" if kind == NORMAL_CLASS else f"NG/{kind}/S{number:04d}"


def image_name(category: str, kind: str, number: int, view: str, timestamp: str) -> str:
    """Image file name, with the release's double underscore in audiojack NG names."""
    if kind == NORMAL_CLASS:
        return f"{category}_{number:04d}_OK_{view}_{timestamp}.jpg"
    separator = "__" if category == "audiojack" else "_"
    return f"{category}{separator}{number:04d}_NG_{kind}_{view}_{timestamp}.jpg"


def _write_encoded(path: Path, image: np.ndarray, options: list[int]) -> None:
    """Encode ``image`` in the format of ``path``'s suffix (cv2; BGR or grey) and write the bytes."""
    ok, data = cv2.imencode(path.suffix, image, options)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode a {image.shape} {image.dtype} image as {path.suffix}")
    path.write_bytes(data.tobytes())


def _write_sample(
    category_dir: str, category: str, kind: str, number: int, size: int, seed: int
) -> list[dict[str, Any]]:
    """Render one sample, write its views (and masks) under ``category_dir``; return its 5 JSON records."""
    rendered = render_sample(category, kind, number, size=size, seed=seed)
    folder = sample_folder(category, kind, number)
    category_dir = Path(category_dir)
    (category_dir / folder).mkdir(parents=True)
    records = []
    for view, stamp, image, mask in zip(
        VIEWS, _timestamps(seed, category, kind, number), rendered.images, rendered.masks
    ):
        name = image_name(category, kind, number, view, stamp)
        _write_encoded(
            category_dir / folder / name,
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        )
        mask_path = None
        if mask is not None:
            mask_path = f"{folder}/{name[:-4]}.png"
            _write_encoded(category_dir / mask_path, mask.astype(np.uint8) * 255, [])
        records.append(
            {
                "category": category,
                "anomaly_class": NORMAL_CLASS if mask is None else kind,
                "image_path": f"{folder}/{name}",
                "mask_path": mask_path,
            }
        )
    return records


# ----------------------------------------------------------------------------------------------------------------
# Splits


@dataclass(frozen=True)
class _SplitPlan:
    """Which samples of one category go where. Samples are ``(kind, number)``; train lists are in take order."""

    ok_train: tuple[tuple[str, int], ...]
    ok_test: tuple[tuple[str, int], ...]
    ng_train: tuple[tuple[str, int], ...]
    """NG training samples, types interleaved (type order shuffled), so that a prefix covers the types evenly."""
    ng_test: tuple[tuple[str, int], ...]

    @property
    def samples(self) -> tuple[tuple[str, int], ...]:
        return self.ok_train + self.ok_test + self.ng_train + self.ng_test


def _plan_splits(config: SyntheticConfig, category: str, seed: int) -> _SplitPlan:
    rng = np.random.default_rng([seed, zlib.crc32(category.encode()), 99])
    ok_order = rng.permutation(config.train_samples + config.test_ok_samples) + 1
    ok_test = sorted(ok_order[: config.test_ok_samples].tolist())
    per_type_train, ng_test = {}, []
    for code in DEFECT_CODES:
        order = rng.permutation(config.ng_train_per_type + config.test_ng_samples) + 1
        ng_test += [(code, n) for n in sorted(order[: config.test_ng_samples].tolist())]
        per_type_train[code] = order[config.test_ng_samples :].tolist()
    type_order = [DEFECT_CODES[i] for i in rng.permutation(len(DEFECT_CODES))]
    ng_train = [(code, per_type_train[code][r]) for r in range(config.ng_train_per_type) for code in type_order]
    return _SplitPlan(
        ok_train=tuple((NORMAL_CLASS, n) for n in ok_order[config.test_ok_samples :].tolist()),
        ok_test=tuple((NORMAL_CLASS, n) for n in ok_test),
        ng_train=tuple(ng_train),
        ng_test=tuple(ng_test),
    )


def _split_sets(config: SyntheticConfig, plan: _SplitPlan) -> dict[str, tuple[list[tuple[str, int]], ...]]:
    """JSON folder name -> (train samples, test samples, views kept)."""
    test = list(plan.ok_test + plan.ng_test)
    all_ng = sorted(plan.ng_train + plan.ng_test, key=lambda s: (DEFECT_CODES.index(s[0]), s[1]))
    sets = {
        json_folder_name("standard", 0.0): (list(plan.ok_train), list(plan.ok_test) + all_ng, list(VIEWS)),
        json_folder_name("sv", 0.0): (list(plan.ok_train), list(plan.ok_test) + all_ng, [VIEWS[0]]),
    }
    for alpha in FUIAD_ALPHAS:
        ng = config.ng_train_count(alpha)
        train = list(plan.ng_train[:ng]) + list(plan.ok_train[: config.train_samples - ng])
        sets[json_folder_name("fuiad", alpha)] = (train, test, list(VIEWS))
    return sets


def _json_dir(out: Path, folder: str, layout: str) -> Path:
    return out / folder if layout == "flat" else out / NESTED_PARENT / folder


def _sort_key(sample: tuple[str, int]) -> tuple[int, int]:
    kind, number = sample
    return (-1 if kind == NORMAL_CLASS else DEFECT_CODES.index(kind), number)


def _write_jsons(
    out: Path,
    config: SyntheticConfig,
    category: str,
    plan: _SplitPlan,
    records: dict[tuple[str, int], list[dict[str, Any]]],
    layout: str,
) -> dict[str, int]:
    """Write one category's split JSONs from its samples' records; return its image counts per split."""
    counts: dict[str, int] = {}
    for folder, (train, test, views) in _split_sets(config, plan).items():
        content: dict[str, Any] = {"meta": {"prefix": f"{category}/", "normal_class": NORMAL_CLASS}}
        for split, samples in (("train", train), ("test", test)):
            content[split] = [
                record
                for sample in sorted(samples, key=_sort_key)
                for view, record in zip(VIEWS, records[sample])
                if view in views
            ]
            counts[f"{folder}/{split}"] = len(content[split])
            counts[f"{folder}/{split}_from_ng"] = sum(r["image_path"].startswith("NG/") for r in content[split])
            counts[f"{folder}/{split}_anomalous"] = sum(r["mask_path"] is not None for r in content[split])
        target = _json_dir(out, folder, layout)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{category}.json").write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    counts["images"] = sum(len(r) for r in records.values())
    counts["masks"] = sum(r["mask_path"] is not None for rs in records.values() for r in rs)
    return counts
