"""Real-IAD JSON index: find the split files, validate them, and turn their records into labelled ``Record`` s.

Layout (see ``docs/realiad-format.md``): ``<root>/<resolution>/<category>/...`` holds the images, and one JSON per
category sits in ``<root>/<json folder>/`` (flat) or ``<root>/realiad_jsons/<json folder>/`` (nested, as some
unpacked zips have it). Every problem with the data (missing folders or files, unknown codes, malformed records, paths
that leave the dataset root) raises ``RealIADFormatError`` before any training starts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.core.defect_types import DEFECT_CODES
from mtfcdd.core.errors import UserError

log = logging.getLogger("mtfcdd.data")

JSON_SETS = ("fuiad", "standard", "sv")
FUIAD_ALPHAS = (0.0, 0.1, 0.2, 0.4)
RESOLUTIONS = ("realiad_256", "realiad_512", "realiad_1024", "realiad_raw")
SPLITS = ("train", "test")
VAL_SPLIT = "validation"
"""An optional third list of a category JSON: the validation split a folder data set writes (mtfcdd.data.folder)."""
ON_MISSING = ("error", "skip")
RECORD_KEYS = frozenset({"category", "anomaly_class", "image_path", "mask_path"})
NESTED_PARENT = "realiad_jsons"
"""The extra folder level that unpacking the published zip can add above each JSON folder."""
_SHOW = 5
"""How many offending files an error message names."""


class RealIADFormatError(UserError, ValueError):
    """The dataset on disk does not match the Real-IAD format; the message names the file and what was expected."""


@dataclass(frozen=True)
class Record:
    """One image of the index.

    ``type_index`` is -1 for normal images (including NG views labelled OK), else the index of the defect code in
    the ``defect_codes`` the index was loaded with (``DEFECT_CODES`` by default; its sampler class:
    ``mtfcdd.sampling.balance.class_index``). ``sample`` is the sample folder
    relative to the resolution folder (``"audiojack/NG/HS/S0064"``), which tells apart the ``S0001`` reused under
    ``OK/`` and each ``NG/<CODE>/``; ``view`` is the camera (``"C1"``..``"C5"``).
    """

    image: Path
    mask: Path | None
    category: str
    anomaly_class: str
    type_index: int
    sample: str
    view: str


def _choices(values: Iterable[object]) -> str:
    return ", ".join(map(str, values))


def json_folder_name(json_set: str, alpha: float) -> str:
    """The JSON folder of a split set: ``realiad_jsons_fuiad_0.2``, ``realiad_jsons`` or ``realiad_jsons_sv``."""
    if json_set == "fuiad":
        return f"realiad_jsons_fuiad_{alpha:.1f}"
    return "realiad_jsons" if json_set == "standard" else "realiad_jsons_sv"


def check_index_args(
    *,
    json_set: str,
    alpha: float,
    resolution: str,
    defect_codes: Sequence[str],
    on_missing: str,
    code_choices: Sequence[str] | None = DEFECT_CODES,
) -> tuple[str, ...]:
    """Validate the index options (raises ``ConfigError``); returns ``defect_codes`` as a
    tuple: distinct codes out of ``code_choices`` (Real-IAD's; None: any, for a data set that brings its own
    vocabulary)."""
    check_choice("json_set", json_set, JSON_SETS)
    if json_set == "fuiad" and (isinstance(alpha, bool) or alpha not in FUIAD_ALPHAS):
        raise ConfigError(f"alpha={alpha!r} is not valid for json_set='fuiad'; choose one of: {_choices(FUIAD_ALPHAS)}")
    check_choice("resolution", resolution, RESOLUTIONS)
    check_choice("on_missing", on_missing, ON_MISSING)
    codes = tuple(defect_codes) if not isinstance(defect_codes, str) else (defect_codes,)
    if code_choices is None:
        unknown = [code for code in codes if not isinstance(code, str) or not code]
        expected = "distinct non-empty strings"
    else:
        unknown = [code for code in codes if code not in code_choices]
        expected = f"distinct codes out of: {_choices(code_choices)}"
    if not codes or unknown or len(set(codes)) != len(codes):
        raise ConfigError(
            f"defect_codes={list(codes)!r} is not valid; give {expected}"
            + (f" (unknown: {_choices(unknown)})" if unknown else "")
        )
    return codes


def find_json_dir(root: Path, json_set: str, alpha: float) -> tuple[Path, str]:
    """The folder holding the category JSONs and its layout (``"flat"`` or ``"nested"``).

    Raises ``RealIADFormatError`` naming the root, or every folder tried, when none holds ``*.json`` files.
    """
    if not root.is_dir():
        raise RealIADFormatError(
            f"Real-IAD root {root} does not exist or is not a folder. Point data.root (or REALIAD_ROOT) at the "
            "unpacked release (see docs/train-realiad.md, 'Getting Real-IAD'), or train on the generated stand-in set "
            "with data=synthetic"
        )
    name = json_folder_name(json_set, alpha)
    candidates = {"flat": root / name, "nested": root / NESTED_PARENT / name}
    for layout, folder in candidates.items():
        if folder.is_dir() and any(entry.name.endswith(".json") for entry in os.scandir(folder)):
            log.info("Real-IAD %s split files: %s layout, %s", json_set, layout, folder)
            return folder, layout
    tried = "; ".join(f"{layout}: {folder}" for layout, folder in candidates.items())
    raise RealIADFormatError(f"no {name} folder with category JSON files under {root} (tried {tried})")


def _category_files(json_dir: Path, categories: Sequence[str] | None) -> list[Path]:
    available = sorted(path.stem for path in json_dir.glob("*.json"))
    if categories is None:
        return [json_dir / f"{name}.json" for name in available]
    chosen = [categories] if isinstance(categories, str) else list(categories)
    unknown = [name for name in chosen if name not in available]
    if not chosen or unknown:
        raise RealIADFormatError(
            f"categories {chosen!r} not found in {json_dir}"
            + (f" (unknown: {_choices(unknown)})" if unknown else " (empty selection)")
            + f"; available: {_choices(available)}"
        )
    return [json_dir / f"{name}.json" for name in dict.fromkeys(chosen)]


def _safe_relative(text: str, where: Callable[[], str]) -> str:
    r"""``text`` as a relative POSIX path inside the dataset (``\`` read as ``/``); absolute paths and ``..`` are
    rejected, naming ``where()``."""
    path = text.replace("\\", "/")
    if path.startswith("/") or path[1:2] == ":" or ".." in path.split("/"):
        raise RealIADFormatError(f"{where()}: path {text!r} escapes the dataset root (absolute or '..' not allowed)")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RealIADFormatError(f"{path}: cannot read it as JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
        raise RealIADFormatError(f"{path}: expected an object with a 'meta' object and 'train'/'test' lists")
    for key in ("prefix", "normal_class"):
        if not isinstance(data["meta"].get(key), str):
            raise RealIADFormatError(f"{path}: missing or non-string meta.{key} (expected e.g. 'audiojack/' and 'OK')")
    return data


def _records_of(
    path: Path, data: Mapping[str, Any], split: str, image_root: Path, defect_codes: tuple[str, ...]
) -> list[Record]:
    """The validated records of one split of one category JSON (no file-existence check).

    ``meta.sample_per_image: true`` (the JSONs of ``mtfcdd.data.folder``): each image is a sample of its own
    (its path; no ``_<view>_<timestamp>`` in its name, ``view`` is ``""``), and ``anomaly_class`` alone tells normal
    from defective (a defective image may have no mask).
    """
    entries = data.get(split)
    if not isinstance(entries, list):
        raise RealIADFormatError(f"{path}: missing or non-list '{split}' (expected a list of records)")
    prefix = _safe_relative(data["meta"]["prefix"], lambda: f"{path} meta.prefix").strip("/")
    prefix = "" if prefix in ("", ".") else prefix + "/"
    normal_class = data["meta"]["normal_class"]
    per_image = data["meta"].get("sample_per_image") is True
    folders: dict[str, Path] = {}

    def under_root(relative: str) -> Path:
        # one Path per folder: joining a bare name is several times cheaper than parsing a whole relative path
        folder, _, name = relative.rpartition("/")
        if folder not in folders:
            folders[folder] = image_root / folder
        return folders[folder] / name

    records = []
    for index, entry in enumerate(entries):

        def where(index: int = index) -> str:
            return f"{path} {split}[{index}]"

        if not isinstance(entry, dict) or entry.keys() != RECORD_KEYS:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise RealIADFormatError(f"{where()}: record has keys {keys}; expected exactly {sorted(RECORD_KEYS)}")
        image_path, mask_path, anomaly_class = entry["image_path"], entry["mask_path"], entry["anomaly_class"]
        if not (
            isinstance(image_path, str)
            and image_path
            and isinstance(anomaly_class, str)
            and isinstance(entry["category"], str)
            and (mask_path is None or isinstance(mask_path, str))
        ):
            raise RealIADFormatError(
                f"{where()}: expected strings for category, anomaly_class and image_path, and a string or null "
                "mask_path"
            )
        image_rel = prefix + _safe_relative(image_path, where)
        sample, _, name = image_rel.rpartition("/")
        parts = name.rpartition(".")[0].split("_")
        if per_image:
            sample, view = image_rel, ""
        elif len(parts) < 2:
            raise RealIADFormatError(f"{where()}: image name {name!r} lacks the '_<view>_<timestamp>' ending")
        else:
            view = parts[-2]
        if anomaly_class == normal_class or (mask_path is None and not per_image):
            type_index, mask = -1, None
        elif anomaly_class in defect_codes:
            type_index = defect_codes.index(anomaly_class)
            mask = None if mask_path is None else under_root(prefix + _safe_relative(mask_path, where))
        else:
            raise RealIADFormatError(
                f"{where()}: unknown defect code {anomaly_class!r}; expected {normal_class!r} or one of: "
                f"{_choices(defect_codes)}"
            )
        records.append(
            Record(
                image=under_root(image_rel),
                mask=mask,
                category=entry["category"],
                anomaly_class=anomaly_class,
                type_index=type_index,
                sample=sample,
                view=view,
            )
        )
    return records


def _list_folders(folders: Sequence[str]) -> list[frozenset[str]]:
    """The file names in each folder (empty for a folder that does not exist)."""
    listings = []
    for folder in folders:
        try:
            listings.append(frozenset(os.listdir(folder)))
        except (FileNotFoundError, NotADirectoryError):
            listings.append(frozenset())
    return listings


def missing_files(paths: Iterable[Path], threads: int = 4) -> set[Path]:
    """The ``paths`` that do not exist, from one directory listing per distinct folder instead of one stat per file.

    On a network file system a listing is one round trip for the 5-10 files of a Real-IAD sample folder; the
    folders are listed in ``threads`` threads (I/O releases the GIL).
    """
    by_folder: dict[str, list[tuple[str, Path]]] = {}
    for path in paths:
        folder, name = os.path.split(path)
        by_folder.setdefault(folder, []).append((name, path))
    folders = list(by_folder)
    chunks = [folders[i::threads] for i in range(threads)]
    listings: dict[str, frozenset[str]] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for chunk, names in zip(chunks, pool.map(_list_folders, chunks)):
            listings.update(zip(chunk, names))
    return {path for folder, members in by_folder.items() for name, path in members if name not in listings[folder]}


def _drop_missing(records: list[Record], split: str, on_missing: str) -> list[Record]:
    """Check that every image and mask exists; raise (``on_missing="error"``) or drop and log (``"skip"``)."""
    absent = missing_files([r.image for r in records] + [r.mask for r in records if r.mask is not None])
    if not absent:
        return records
    shown = ", ".join(str(path) for path in sorted(absent)[:_SHOW])
    message = f"{len(absent)} image/mask files of the {split} split are missing, e.g. {shown}"
    if on_missing == "error":
        raise RealIADFormatError(f"{message}; fix the dataset or set data.on_missing=skip to leave those records out")
    kept = [r for r in records if r.image not in absent and r.mask not in absent]
    log.warning(
        "%s; skipped %d of %d %s records (on_missing=skip)", message, len(records) - len(kept), len(records), split
    )
    return kept


def load_splits(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] = SPLITS,
    json_set: str = "fuiad",
    alpha: float = 0.2,
    resolution: str = "realiad_256",
    categories: Sequence[str] | None = None,
    defect_codes: Sequence[str] = DEFECT_CODES,
    on_missing: str = "error",
    image_root: str | os.PathLike | None = None,
    code_choices: Sequence[str] | None = DEFECT_CODES,
) -> dict[str, list[Record]]:
    """Records of several splits (each of ``"train"``, ``"test"``) of a Real-IAD split set, reading each category
    JSON once.

    Args:
        root: dataset root holding the resolution folders and the JSON folders.
        splits: the JSON lists to read, each ``"train"``, ``"test"`` or ``"validation"``; at least one.
        json_set: ``"fuiad"`` (``realiad_jsons_fuiad_<alpha>``), ``"standard"`` (``realiad_jsons``) or ``"sv"``
            (``realiad_jsons_sv``); flat and nested layouts are both found.
        alpha: share of NG images in the fuiad training split (0.0, 0.1, 0.2 or 0.4); ignored by other sets.
        resolution: image folder (``realiad_256``, ``realiad_512``, ``realiad_1024`` or ``realiad_raw``).
        categories: category names (JSON stems) to read; None reads every JSON in the folder.
        defect_codes: the defect types, in channel order; ``type_index`` indexes this sequence.
        code_choices: the codes ``defect_codes`` may pick from: Real-IAD's; None for a data set that brings its own
            vocabulary (a folder data set's type names).
        on_missing: ``"error"`` raises when image or mask files are missing, ``"skip"`` drops those records.
        image_root: the folder the JSON paths are relative to; None: ``<root>/<resolution>``. A folder data set
            writes its split under a run directory (``<run>/split/realiad_jsons``, json_set ``standard``) and
            points this at the user's folder; its JSONs also hold a ``validation`` list (``splits`` may name it).

    Records keep the JSON order, categories sorted by name.
    """
    codes = check_index_args(
        json_set=json_set,
        alpha=alpha,
        resolution=resolution,
        defect_codes=defect_codes,
        on_missing=on_missing,
        code_choices=code_choices,
    )
    bad = [split for split in splits if split not in (*SPLITS, VAL_SPLIT)]
    if bad or not splits:
        valid = _choices((*SPLITS, VAL_SPLIT))
        raise ConfigError(f"split={_choices(bad) or 'none'} is not valid; choose from: {valid}")
    root = Path(root)
    json_dir, _ = find_json_dir(root, json_set, alpha)
    if image_root is not None and not Path(image_root).is_dir():
        raise RealIADFormatError(f"image folder {image_root} (image_root) does not exist or is not a folder")
    image_root = root / resolution if image_root is None else Path(image_root)
    if not image_root.is_dir():
        present = sorted(name for name in RESOLUTIONS if (root / name).is_dir())
        raise RealIADFormatError(
            f"image folder {image_root} does not exist; resolution folders present under {root}: "
            f"{_choices(present) or 'none'}"
        )
    files = _category_files(json_dir, categories)
    records: dict[str, list[Record]] = {split: [] for split in splits}
    for path in files:
        data = _read_json(path)
        for split in splits:
            records[split].extend(_records_of(path, data, split, image_root, codes))
    result = {split: _drop_missing(found, split, on_missing) for split, found in records.items()}
    log.info(
        "split index %s (%d categories, %s): %s",
        json_dir,
        len(files),
        resolution,
        ", ".join(f"{split} {len(found):,} images" for split, found in result.items()),
    )
    return result


def load_split(root: str | os.PathLike, *, split: str, **options: Any) -> list[Record]:
    """Records of one split (``"train"`` or ``"test"``); ``options`` as ``load_splits`` (same defaults)."""
    return load_splits(root, splits=(split,), **options)[split]
