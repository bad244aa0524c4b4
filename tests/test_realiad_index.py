"""The Real-IAD JSON index: layouts, labels, quirks, and every way bad data must fail early and by name.

``write_realiad`` builds tiny Real-IAD-format trees (also used by test_dataset.py and test_datamodule.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtfcdd.core.config import ConfigError
from mtfcdd.core.defect_types import DEFECT_CODES, REALIAD_VOCABULARY
from mtfcdd.data.realiad import RealIADFormatError, Record, check_index_args, load_split, load_splits, missing_files
from mtfcdd.sampling.balance import class_index

VIEWS = ("C1", "C2")
# category -> split -> list of (folder kind, sample number, per-view anomaly class ("OK" or the sample's code))
LAYOUT: dict[str, dict[str, list[tuple[str, int, tuple[str, ...]]]]] = {
    "audiojack": {
        "train": [
            ("OK", 1, ("OK", "OK")),
            ("OK", 2, ("OK", "OK")),
            ("OK", 3, ("OK", "OK")),
            ("HS", 1, ("HS", "HS")),
            ("HS", 2, ("HS", "OK")),
            ("AK", 4, ("AK", "AK")),
        ],
        "test": [("OK", 5, ("OK", "OK")), ("HS", 7, ("HS", "OK")), ("BX", 1, ("BX", "BX"))],
    },
    "pcb": {
        "train": [
            ("OK", 1, ("OK", "OK")),
            ("OK", 2, ("OK", "OK")),
            ("AK", 1, ("AK", "AK")),
            ("AK", 2, ("AK", "AK")),
            ("ZW", 3, ("ZW", "ZW")),
        ],
        "test": [("OK", 3, ("OK", "OK")), ("ZW", 4, ("OK", "ZW"))],
    },
    "toy_brick": {
        "train": [("OK", 1, ("OK", "OK")), ("QS", 1, ("QS", "QS"))],
        "test": [("OK", 2, ("OK", "OK")), ("QS", 2, ("QS", "QS"))],
    },
}
JSON_FOLDERS = {"fuiad": "realiad_jsons_fuiad_{alpha:.1f}", "standard": "realiad_jsons", "sv": "realiad_jsons_sv"}


def expected_counts(split: str, categories: list[str] | None = None) -> dict[str, int]:
    """Images per anomaly class ("OK" for normal views) in LAYOUT, counted independently of the loader."""
    counts: dict[str, int] = {}
    for category, splits in LAYOUT.items():
        if categories is None or category in categories:
            for _, _, views in splits[split]:
                for label in views:
                    counts[label] = counts.get(label, 0) + 1
    return counts


def _file_stem(category: str, kind: str, number: int, view: str) -> str:
    # audiojack NG files carry a double underscore, as in the real release
    if kind == "OK":
        return f"{category}_{number:04d}_OK_{view}_20231021130235"
    underscore = "__" if category == "audiojack" else "_"
    return f"{category}{underscore}{number:04d}_NG_{kind}_{view}_20231004133152"


def write_realiad(
    root: Path,
    *,
    layout: str = "flat",
    json_set: str = "fuiad",
    alpha: float = 0.2,
    resolution: str = "realiad_256",
    size: int = 16,
    categories: tuple[str, ...] = tuple(LAYOUT),
) -> Path:
    """A Real-IAD-format tree under ``root``: ``size`` x ``size`` JPEG images, PNG masks, one JSON per category."""
    folder = JSON_FOLDERS[json_set].format(alpha=alpha)
    json_dir = root / "realiad_jsons" / folder if layout == "nested" else root / folder
    json_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for category in categories:
        data: dict = {"meta": {"prefix": f"{category}/", "normal_class": "OK"}, "train": [], "test": []}
        for split, samples in LAYOUT[category].items():
            for kind, number, views in samples:
                sample_dir = f"OK/S{number:04d}" if kind == "OK" else f"NG/{kind}/S{number:04d}"
                for view, label in zip(VIEWS, views):
                    stem = f"{sample_dir}/{_file_stem(category, kind, number, view)}"
                    image_file = root / resolution / category / f"{stem}.jpg"
                    image_file.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(image_file), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
                    mask_path = None
                    if label != "OK":
                        mask_path = f"{stem}.png"
                        mask = np.zeros((size, size), np.uint8)
                        mask[size // 4 : size // 2, size // 4 : size // 2] = 255
                        cv2.imwrite(str(root / resolution / category / mask_path), mask)
                    data[split].append(
                        {
                            "category": category,
                            "anomaly_class": label,
                            "image_path": f"{stem}.jpg",
                            "mask_path": mask_path,
                        }
                    )
        (json_dir / f"{category}.json").write_text(json.dumps(data))
    return root


def json_file(root: Path, category: str, json_set: str = "fuiad", alpha: float = 0.2) -> Path:
    return root / JSON_FOLDERS[json_set].format(alpha=alpha) / f"{category}.json"


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _label_counts(records: list[Record]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        name = "OK" if r.type_index < 0 else DEFECT_CODES[r.type_index]
        counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_realiad(tmp_path / "Real-IAD")


def test_flat_fuiad_index_labels_views_samples_and_logs_layout(tree, caplog):
    with caplog.at_level(logging.INFO, logger="mtfcdd.data"):
        splits = load_splits(tree, alpha=0.2)
    assert "flat layout" in caplog.text and "realiad_jsons_fuiad_0.2" in caplog.text
    for split in ("train", "test"):
        assert _label_counts(splits[split]) == expected_counts(split)
        assert splits[split] == load_split(tree, split=split, alpha=0.2)
    records = splits["train"] + splits["test"]
    for r in records:
        assert r.image.is_file()
        assert r.view in VIEWS and f"_{r.view}_" in r.image.name
        assert r.sample == str(r.image.parent.relative_to(tree / "realiad_256"))
        assert class_index(r.type_index, len(DEFECT_CODES)) == (8 if r.type_index < 0 else r.type_index)
        if r.type_index < 0:
            assert r.mask is None
        else:
            assert r.mask == r.image.with_suffix(".png") and r.anomaly_class == DEFECT_CODES[r.type_index]
    # S0001 is reused under OK/ and NG/<CODE>/: distinct samples
    audiojack = {r.sample for r in splits["train"] if r.category == "audiojack"}
    assert {"audiojack/OK/S0001", "audiojack/NG/HS/S0001"} <= audiojack
    # audiojack's double underscore: the view still comes from the right
    double = [r for r in records if "__" in r.image.name]
    assert double and {r.view for r in double} == set(VIEWS)
    # an NG view labelled OK is normal, without a mask
    ng_ok = [r for r in records if "/NG/" in r.image.as_posix() and r.anomaly_class == "OK"]
    assert len(ng_ok) == 3 and all(r.type_index == -1 and r.mask is None for r in ng_ok)
    assert [r.category for r in splits["train"]] == sorted(r.category for r in splits["train"])


def test_defect_names_follow_the_fixed_code_order():
    assert DEFECT_CODES == ("AK", "BX", "CH", "HS", "PS", "QS", "YW", "ZW")
    assert REALIAD_VOCABULARY.codes == DEFECT_CODES
    assert (
        [REALIAD_VOCABULARY.name_of(c) for c in DEFECT_CODES]
        == list(REALIAD_VOCABULARY.names)
        == ["pit", "deformation", "abrasion", "scratch", "damage", "missing_parts", "foreign_objects", "contamination"]
    )


@pytest.mark.parametrize(
    ("json_set", "layout", "folder"),
    [
        ("fuiad", "nested", "realiad_jsons/realiad_jsons_fuiad_0.1"),
        ("standard", "flat", "realiad_jsons"),
        ("standard", "nested", "realiad_jsons/realiad_jsons"),
        ("sv", "flat", "realiad_jsons_sv"),
        ("sv", "nested", "realiad_jsons/realiad_jsons_sv"),
    ],
)
def test_every_json_set_in_flat_and_nested_layouts(tmp_path, caplog, json_set, layout, folder):
    root = write_realiad(tmp_path, layout=layout, json_set=json_set, alpha=0.1, categories=("pcb",))
    with caplog.at_level(logging.INFO, logger="mtfcdd.data"):
        test = load_split(root, split="test", json_set=json_set, alpha=0.1)
    assert f"{layout} layout, {root / folder}" in caplog.text
    assert _label_counts(test) == expected_counts("test", ["pcb"])


def test_alpha_zero_and_other_resolutions(tmp_path):
    root = write_realiad(tmp_path, alpha=0.0, resolution="realiad_512", categories=("pcb",))
    train = load_split(root, split="train", alpha=0.0, resolution="realiad_512")
    assert all("realiad_512" in r.image.parts for r in train)
    with pytest.raises(RealIADFormatError, match=r"realiad_256 does not exist.*present under .*: realiad_512"):
        load_split(root, split="train", alpha=0.0)


def test_category_subset_and_unknown_category_lists_available(tree):
    train = load_split(tree, split="train", categories=["pcb", "audiojack"])
    assert {r.category for r in train} == {"pcb", "audiojack"}
    assert _label_counts(train) == expected_counts("train", ["pcb", "audiojack"])
    with pytest.raises(RealIADFormatError, match=r"unknown: zipper.*available: audiojack, pcb, toy_brick"):
        load_split(tree, split="train", categories=["pcb", "zipper"])


def test_chosen_defect_codes_set_the_type_index(tmp_path):
    root = write_realiad(tmp_path, categories=("toy_brick",))
    train = load_split(root, split="train", defect_codes=("QS", "AK"))
    assert {r.type_index for r in train if r.anomaly_class == "QS"} == {0}
    with pytest.raises(RealIADFormatError, match=r"unknown defect code 'QS'.*one of: AK"):
        load_split(root, split="train", defect_codes=("AK",))


def test_missing_root_names_it_and_the_synthetic_alternative(tmp_path):
    with pytest.raises(RealIADFormatError, match="data=synthetic") as err:
        load_split(tmp_path / "nowhere", split="train")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_missing_json_folder_lists_every_layout_tried(tmp_path):
    root = write_realiad(tmp_path, alpha=0.2, categories=("pcb",))
    with pytest.raises(RealIADFormatError) as err:
        load_split(root, split="train", alpha=0.4)
    message = str(err.value)
    assert str(root / "realiad_jsons_fuiad_0.4") in message
    assert str(root / "realiad_jsons" / "realiad_jsons_fuiad_0.4") in message


def test_missing_files_raise_with_count_and_names_or_are_skipped(tree, caplog):
    train = load_split(tree, split="train")
    gone = [r for r in train if r.mask is not None][:2]
    gone[0].image.unlink()
    gone[1].mask.unlink()
    with pytest.raises(RealIADFormatError, match=r"^2 image/mask files of the train split are missing") as err:
        load_split(tree, split="train")
    assert gone[0].image.name in str(err.value) and gone[1].mask.name in str(err.value)
    with caplog.at_level(logging.WARNING, logger="mtfcdd.data"):
        kept = load_split(tree, split="train", on_missing="skip")
    assert "skipped 2 of" in caplog.text
    assert len(kept) == len(train) - 2 and not {gone[0].image, gone[1].image} & {r.image for r in kept}


def test_missing_files_lists_one_folder_at_a_time(tmp_path):
    (tmp_path / "a").mkdir()
    present = [tmp_path / "a" / f"{i}.jpg" for i in range(3)]
    for path in present:
        path.touch()
    absent = [tmp_path / "a" / "x.jpg", tmp_path / "no-folder" / "y.jpg"]
    assert missing_files(present + absent) == set(absent)


def test_existence_check_handles_many_files_in_few_folders(tmp_path):
    """30,000 lookups in 200 folders, one missing file among them (speed: experiments/bench_index_and_sampling.py)."""
    folders = [tmp_path / f"S{i:04d}" for i in range(200)]
    paths = []
    for folder in folders:
        folder.mkdir()
        for view in range(5):
            (folder / f"{view}.jpg").touch()
            paths.append(folder / f"{view}.jpg")
    many = paths * 30  # 30,000 lookups in 200 folders
    assert missing_files(many) == set()
    paths[777].unlink()
    assert missing_files(many) == {paths[777]}


def test_unknown_defect_code_names_code_and_file(tree):
    path = json_file(tree, "pcb")
    edit_json(path, lambda d: d["train"][6].update(anomaly_class="XX"))
    with pytest.raises(RealIADFormatError, match=r"unknown defect code 'XX'") as err:
        load_split(tree, split="train")
    assert f"{path} train[6]" in str(err.value)


@pytest.mark.parametrize("change", ["drop", "extra"])
def test_wrong_record_keys_name_file_index_and_expected_keys(tree, change):
    path = json_file(tree, "audiojack")

    def edit(data: dict) -> None:
        if change == "drop":
            del data["test"][3]["mask_path"]
        else:
            data["test"][3]["defect"] = "HS"

    edit_json(path, edit)
    with pytest.raises(RealIADFormatError) as err:
        load_split(tree, split="test")
    message = str(err.value)
    assert f"{path} test[3]" in message
    assert "expected exactly ['anomaly_class', 'category', 'image_path', 'mask_path']" in message


@pytest.mark.parametrize("key", ["prefix", "normal_class"])
def test_missing_meta_key_names_file_and_key(tree, key):
    path = json_file(tree, "pcb")
    edit_json(path, lambda d: d["meta"].pop(key))
    with pytest.raises(RealIADFormatError, match=rf"{path}: missing or non-string meta\.{key}"):
        load_split(tree, split="train")


def test_unreadable_json_is_named(tree):
    path = json_file(tree, "pcb")
    path.write_text("{not json")
    with pytest.raises(RealIADFormatError, match=rf"{path}: cannot read it as JSON"):
        load_split(tree, split="train")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("image_path", "../../../etc/passwd"),
        ("image_path", "/etc/passwd"),
        ("mask_path", "OK/../../../secret.png"),
        ("image_path", "C:\\data\\x_C1_1.jpg"),
        ("prefix", "../elsewhere/"),
    ],
)
def test_paths_escaping_the_root_are_rejected_with_the_file_named(tree, where, value):
    path = json_file(tree, "pcb")

    def edit(data: dict) -> None:
        if where == "prefix":
            data["meta"]["prefix"] = value
        else:
            data["train"][6][where] = value  # an NG record: both paths are used

    edit_json(path, edit)
    with pytest.raises(RealIADFormatError, match="escapes the dataset root") as err:
        load_split(tree, split="train")
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.3}, r"alpha=0.3 is not valid for json_set='fuiad'; choose one of: 0.0, 0.1, 0.2, 0.4"),
        ({"json_set": "mvtec"}, r"json_set='mvtec' is not valid"),
        ({"resolution": "realiad_128"}, r"resolution='realiad_128' is not valid.*realiad_raw"),
        ({"on_missing": "ignore"}, r"on_missing='ignore' is not valid; choose one of: error, skip"),
        ({"defect_codes": ("AK", "AK")}, r"give distinct codes"),
        ({"defect_codes": ("AK", "ZZ")}, r"unknown: ZZ"),
        ({"split": "val"}, r"split=val is not valid"),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path, kwargs, message):
    options = {"split": "train", **kwargs}
    with pytest.raises(ConfigError, match=message):
        load_split(tmp_path, **options)


def test_a_data_set_with_its_own_types_passes_its_codes():
    """Real-IAD's codes by default; ``code_choices=None`` (a data set that brings its vocabulary) takes any distinct
    codes, still rejecting repeated or empty ones."""
    options = {"json_set": "standard", "alpha": 0.2, "resolution": "realiad_256", "on_missing": "error"}
    with pytest.raises(ConfigError, match=r"unknown: crack"):
        check_index_args(**options, defect_codes=("crack", "AK"))
    assert check_index_args(**options, defect_codes=["crack", "dent"], code_choices=None) == ("crack", "dent")
    for bad in (("crack", "crack"), ("crack", ""), ()):
        with pytest.raises(ConfigError, match=r"give distinct non-empty strings"):
            check_index_args(**options, defect_codes=bad, code_choices=None)
