"""The folder data layer: layouts, vocabulary, checks of a bad folder, the seeded split and its Real-IAD JSON files."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from helpers.folder_trees import TWELVE_TYPES, TYPES, make_mvtec_tree, make_types_tree, write_image, write_mask
from mtfcdd.core.config import ConfigError
from mtfcdd.core.errors import UserError
from mtfcdd.data.folder import FolderFormatError, read_folder, split_folder, write_split
from mtfcdd.data.folder.checks import write_skipped
from mtfcdd.data.folder.realiad_json import split_documents
from mtfcdd.data.realiad import RealIADFormatError, load_splits


def _strata(images) -> Counter:
    return Counter((image.category, image.type) for image in images)


def _paths(images) -> list[Path]:
    return [image.image for image in images]


# ---------------------------------------------------------------------------------------------------- layouts


def test_a_types_tree_without_categories_is_one_category_named_after_the_folder(tmp_path):
    root = make_types_tree(tmp_path / "bracket")
    index = read_folder(root)
    assert index.layout == "types"
    assert index.types == TYPES
    assert index.category_dirs == {"bracket": root}
    assert Counter(image.type for image in index.images) == {None: 8, "crack": 6, "dent": 6, "rust": 6}
    masked = [image for image in index.images if image.mask is not None]
    assert len(masked) == 9 and all(image.mask == root / "masks" / image.folder / image.image.name for image in masked)
    assert {image.pool for image in index.images} == {"all"}
    assert index.skipped == ()


def test_a_types_tree_with_categories_and_mask_ending(tmp_path):
    root = make_types_tree(tmp_path / "d", categories=["gear", "shaft"], mask_ending="_mask")
    index = read_folder(root)
    assert index.layout == "types" and set(index.category_dirs) == {"gear", "shaft"}
    assert {image.category for image in index.images} == {"gear", "shaft"}
    assert all(image.mask.name == f"{image.image.stem}_mask.png" for image in index.images if image.mask)
    assert sum(image.mask is not None for image in index.images) == 18


def test_mvtec_tree_is_detected_and_repeated_file_names_stay_apart(tmp_path):
    root = make_mvtec_tree(tmp_path / "mvtec")
    index = read_folder(root)
    assert index.layout == "mvtec" and index.types == TYPES
    zeros = [image for image in index.images if image.image.name == "000.png"]
    assert len(zeros) == 2 * 5 and len(set(_paths(zeros))) == 10  # train/good, test/good, 3 types; 2 categories
    pools = Counter((image.pool, image.type is None) for image in index.images)
    assert pools == {("train", True): 16, ("test", True): 12, ("test", False): 36}
    assert all(
        image.mask == root / image.category / "ground_truth" / image.folder / f"{image.image.stem}_mask.png"
        for image in index.images
        if image.type
    )


def test_forced_layout_and_undetectable_tree(tmp_path):
    root = make_mvtec_tree(tmp_path / "mvtec")
    with pytest.raises(FolderFormatError, match=re.escape(f"{root / 'bottle' / 'good'}/")) as err:
        read_folder(root, layout="types")
    assert "read as the types layout" in str(err.value)
    (tmp_path / "loose" / "a").mkdir(parents=True)
    with pytest.raises(FolderFormatError, match=r"cannot tell the layout of the image folder .*loose.*MVTec AD"):
        read_folder(tmp_path / "loose")
    with pytest.raises(FolderFormatError, match=r"data.root=.*nowhere.* does not exist"):
        read_folder(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="data.layout='flat' is not valid"):
        read_folder(root, layout="flat")


# ---------------------------------------------------------------------------------------------------- vocabulary


def test_type_map_merges_folders_and_types_fix_the_channel_order(tmp_path):
    root = make_mvtec_tree(tmp_path / "m", types=("broken_large", "broken_small", "scratch"))
    index = read_folder(root, type_map={"broken_large": "broken", "broken_small": "broken"})
    assert index.types == ("broken", "scratch")
    assert Counter(image.folder for image in index.images if image.type == "broken") == {
        "broken_large": 12,
        "broken_small": 12,
    }
    ordered = read_folder(
        root, type_map={"broken_large": "broken", "broken_small": "broken"}, types=["scratch", "broken"]
    )
    assert ordered.types == ("scratch", "broken")
    # a <category>/<folder> key maps one category's folder alone; unmapped names stay types of their own
    per_category = read_folder(root, type_map={"cable/scratch": "cut"})
    assert per_category.types == ("broken_large", "broken_small", "cut", "scratch")
    assert {image.category for image in per_category.images if image.type == "cut"} == {"cable"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"type_map": {"crak": "crack"}},
            r"data.type_map key 'crak' names no type folder; expected one of: crack, dent",
        ),
        ({"type_map": {"zinc/crack": "x"}}, r"data.type_map key 'zinc/crack' names no type folder"),
        ({"type_map": {"crack": "good"}}, r"data.type_map maps 'crack' onto 'good', the normal images"),
        (
            {"types": ["crack", "dent", "rust", "hole"]},
            r"data.types entry 'hole' names no type folder .*crack, dent, rust",
        ),
        ({"types": ["crack", "dent"]}, r"type 'rust' \(folders p/rust\) is not in data.types=\['crack', 'dent'\]"),
        ({"types": ["crack", "crack"]}, r"expected distinct, non-empty type names"),
    ],
)
def test_vocabulary_errors_name_the_entry(tmp_path, options, message):
    root = make_types_tree(tmp_path / "p")
    with pytest.raises(FolderFormatError, match=message) as err:
        read_folder(root, **options)
    assert str(root) in str(err.value) and isinstance(err.value, UserError)


def test_twelve_types(tmp_path):
    root = make_types_tree(tmp_path / "many", types=TWELVE_TYPES[::-1], per_type=4, masks=False)
    index = read_folder(root)
    assert index.types == TWELVE_TYPES  # sorted by default
    split = split_folder(index, seed=3)
    for part in (split.train, split.val, split.test):
        assert {image.type for image in part} == {None, *TWELVE_TYPES}
    documents = split_documents(index, split)["many"]
    assert documents["meta"]["types"] == list(TWELVE_TYPES)
    assert {record["anomaly_class"] for record in documents["test"]} == {"good", *TWELVE_TYPES}


def test_a_tree_without_defect_folders_is_refused(tmp_path):
    write_image(tmp_path / "only" / "good" / "a.png", 0)
    with pytest.raises(FolderFormatError, match=r"no defect type folder under .*only; expected at least one"):
        read_folder(tmp_path / "only")


# ---------------------------------------------------------------------------------------------------- bad folders


def _expect(root: Path, *fragments: str) -> str:
    with pytest.raises(FolderFormatError) as err:
        read_folder(root)
    for fragment in fragments:
        assert fragment in str(err.value)
    return str(err.value)


def test_type_folder_without_images(tmp_path):
    root = make_types_tree(tmp_path / "p")
    (root / "hole").mkdir()
    (root / "hole" / "notes.txt").write_text("x")
    _expect(root, f"type folder {root / 'hole'} holds no readable image (1 files skipped, e.g. notes.txt: not an image")


def test_mask_without_its_image(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "dent" / "077.png")
    _expect(root, f"mask {root / 'masks' / 'dent' / '077.png'} has no image: expected {root / 'dent'}/077.<ext>")


def test_mask_folder_without_its_type_folder(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "hole" / "000.png")
    _expect(root, f"mask folder {root / 'masks' / 'hole'} has no image folder {root / 'hole'}/")


def test_mask_of_another_size(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "crack" / "001.png", size=(12, 8))
    _expect(
        root,
        f"mask {root / 'masks' / 'crack' / '001.png'} is 12x8 pixels but its image "
        f"{root / 'crack' / '001.png'} is 24x16; expected the same size",
    )


def test_mask_that_is_not_binary(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "rust" / "000.png", values=(0, 255, 128))
    _expect(
        root,
        f"mask {root / 'masks' / 'rust' / '000.png'} is not binary: it holds 3 distinct values "
        "(0, 128, 255); expected 0 for normal pixels and one other value (e.g. 255)",
    )


def test_masks_of_zero_and_one_are_binary_but_an_empty_mask_is_not_a_mask(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "rust" / "000.png", values=(0, 1))
    assert read_folder(root).images
    write_mask(root / "masks" / "rust" / "000.png", values=(0,))
    _expect(root, f"mask {root / 'masks' / 'rust' / '000.png'} has no defective pixel (all 0)")


def test_two_masks_for_one_image(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "crack" / "000_mask.png")
    _expect(root, f"image {root / 'crack' / '000.png'} has two masks")


@pytest.mark.parametrize("layout", ["types", "mvtec"])
def test_category_without_good_images(tmp_path, layout):
    if layout == "types":
        root = make_types_tree(tmp_path / "d", categories=["gear", "shaft"])
        good = root / "shaft" / "good"
    else:
        root = make_mvtec_tree(tmp_path / "d")
        good = root / "cable" / "train" / "good"
    for path in good.iterdir():
        path.unlink()
    _expect(root, f"has no good images: {good} holds no readable image")
    good.rmdir()
    _expect(root, f"has no good images: expected the folder {good}/")


def test_mvtec_defects_under_train_are_refused(tmp_path):
    root = make_mvtec_tree(tmp_path / "m")
    write_image(root / "bottle" / "train" / "crack" / "000.png", 1)
    _expect(root, f"{root / 'bottle' / 'train' / 'crack'}: the MVTec AD layout keeps defective images in")


def test_problems_are_listed_together(tmp_path):
    root = make_types_tree(tmp_path / "p")
    write_mask(root / "masks" / "crack" / "001.png", size=(12, 8))
    write_mask(root / "masks" / "dent" / "077.png")
    message = _expect(root, "2 problems in the image folder")
    assert "12x8" in message and "077.png has no image" in message


# ---------------------------------------------------------------------------------------------------- unreadable


def _spoil(root: Path) -> dict[Path, str]:
    """Bad files in a types tree -> a fragment of their reason."""
    (root / "crack" / "notes.txt").write_text("x")
    (root / "crack" / "broken.png").write_bytes(b"not a png at all")
    cut = write_image(root / "dent" / "cut.png", 9)
    cut.write_bytes(cut.read_bytes()[:-20])
    jpeg = write_image(root / "dent" / "cut.jpg", 9)
    jpeg.write_bytes(jpeg.read_bytes()[:-2])
    (root / "rust" / "sub").mkdir()
    (root / "masks" / "rust" / "004.png").write_bytes(b"junk")  # the mask of rust/004.png
    return {
        root / "crack" / "notes.txt": "not an image file",
        root / "crack" / "broken.png": "not a readable image",
        root / "dent" / "cut.png": "truncated PNG",
        root / "dent" / "cut.jpg": "truncated JPEG",
        root / "rust" / "sub": "a folder inside an image folder",
        root / "masks" / "rust" / "004.png": "not a readable mask",
        root / "rust" / "004.png": "its mask",
    }


def test_unreadable_files_are_listed_and_skipped(tmp_path):
    root = make_types_tree(tmp_path / "p")
    expected = _spoil(root)
    index = read_folder(root)
    reasons = {item.path: item.reason for item in index.skipped}
    assert set(reasons) == set(expected)
    assert all(fragment in reasons[path] for path, fragment in expected.items())
    kept = set(_paths(index.images))
    assert not kept & set(expected) and root / "rust" / "005.png" in kept and len(kept) == 25
    target = write_skipped(tmp_path / "run" / "skipped.csv", index.skipped)
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert {Path(row["path"]): row["reason"] for row in rows} == reasons


def test_unreadable_files_stop_the_run_on_request(tmp_path):
    root = make_types_tree(tmp_path / "p")
    _spoil(root)
    with pytest.raises(
        FolderFormatError,
        match=r"7 files under .* are not readable images, e.g. .*broken.png: not a "
        r"readable image.*data.on_unreadable=skip",
    ):
        read_folder(root, on_unreadable="error")
    with pytest.raises(ConfigError, match="data.on_unreadable='ignore' is not valid"):
        read_folder(root, on_unreadable="ignore")


# ---------------------------------------------------------------------------------------------------- split


def test_types_split_is_stratified_complete_and_seeded(tmp_path):
    root = make_types_tree(tmp_path / "d", categories=["gear", "shaft"], good=20, per_type=10)
    index = read_folder(root)
    split = split_folder(index, seed=1)
    everything = _paths(split.train) + _paths(split.val) + _paths(split.test)
    assert sorted(everything) == _paths(index.images) and not split.unused  # disjoint and complete
    # test: 30 % of each stratum; validation: 10 % of the rest, at least one
    assert _strata(split.test) == {
        **{(c, t): 3 for c in ("gear", "shaft") for t in TYPES},
        ("gear", None): 6,
        ("shaft", None): 6,
    }
    assert _strata(split.val) == {(c, t): 1 for c in ("gear", "shaft") for t in (None, *TYPES)}
    assert _strata(split.train) == {
        **{(c, t): 6 for c in ("gear", "shaft") for t in TYPES},
        ("gear", None): 13,
        ("shaft", None): 13,
    }
    assert split_folder(index, seed=1) == split
    other = split_folder(index, seed=2)
    assert _strata(other.test) == _strata(split.test) and _paths(other.test) != _paths(split.test)
    assert split_folder(index, seed=1, val_fraction=0.0).val == ()


def test_test_fraction_zero_trains_on_every_labelled_image(tmp_path):
    """The final model: no test images; what the default split tests goes to training (and validation)."""
    index = read_folder(make_types_tree(tmp_path / "d", good=20, per_type=10))
    split = split_folder(index, seed=1, test_fraction=0.0)
    assert split.test == () and sorted(_paths(split.train) + _paths(split.val)) == _paths(index.images)
    assert _strata(split.val) == {(index.root.name, t): n for t, n in ((None, 2), *((t, 1) for t in TYPES))}


def test_too_few_images_to_split(tmp_path):
    root = make_types_tree(tmp_path / "p", per_type=2, masks=False)
    index = read_folder(root)
    with pytest.raises(
        FolderFormatError,
        match=re.escape(
            f"2 images of type 'crack' in category p ({root / 'crack'}) are too few to split; expected at least 3"
        ),
    ):
        split_folder(index)
    assert {image.type for image in split_folder(index, val_fraction=0.0).val} == set()


def test_mvtec_split_moves_a_share_of_each_type_into_training(tmp_path):
    root = make_mvtec_tree(tmp_path / "m", per_type=10)
    index = read_folder(root)
    split = split_folder(index, seed=0, train_defect_fraction=0.3)
    train_defects = [image for image in split.train if image.type]
    assert _strata(train_defects) == {(c, t): 3 for c in ("bottle", "cable") for t in TYPES}
    assert all(image.mask is not None and image.pool == "test" for image in train_defects)
    assert {image.pool for image in split.train if image.type is None} == {"train"}  # train/good, all of it
    assert sum(image.type is None for image in split.train) == 16
    assert {image.pool for image in split.val + split.test} == {"test"}
    # validation: 10 % (at least one) of what is left of each test folder; test: the rest
    assert _strata(split.val) == {(c, t): 1 for c in ("bottle", "cable") for t in (None, *TYPES)}
    assert _strata(split.test) == {
        **{(c, t): 6 for c in ("bottle", "cable") for t in TYPES},
        ("bottle", None): 5,
        ("cable", None): 5,
    }
    assert split.options["train_defect_fraction"] == 0.3
    assert split_folder(index).options["train_defect_fraction"] == 0.2  # the default
    assert not [image for image in split_folder(index, train_defect_fraction=0.0).train if image.type]


def test_train_defect_fraction_is_for_the_mvtec_layout(tmp_path):
    index = read_folder(make_types_tree(tmp_path / "p"))
    with pytest.raises(ConfigError, match=r"data.train_defect_fraction=0.2 applies to the mvtec layout"):
        split_folder(index, train_defect_fraction=0.2)


def test_train_defects_per_type_keeps_val_and_test_and_nests(tmp_path):
    root = make_types_tree(tmp_path / "d", categories=["gear", "shaft"], good=10, per_type=20)
    index = read_folder(root)
    full = split_folder(index, seed=5)
    subsets = {}
    for count in (1, 3, 5, 100):
        split = split_folder(index, seed=5, train_defects_per_type=count)
        assert split.val == full.val and split.test == full.test
        defects = Counter(image.type for image in split.train if image.type)
        assert defects == {t: min(count, 2 * 13) for t in TYPES}
        assert [image for image in split.train if image.type is None] == [i for i in full.train if i.type is None]
        assert sorted(_paths(split.train) + _paths(split.unused)) == sorted(_paths(full.train))
        subsets[count] = set(_paths(split.train))
    assert subsets[1] < subsets[3] < subsets[5] < subsets[100]
    # taken in turn from each category
    three = split_folder(index, seed=5, train_defects_per_type=3).train
    assert Counter(image.category for image in three if image.type == "crack") in (
        {"gear": 2, "shaft": 1},
        {"gear": 1, "shaft": 2},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"test_fraction": 1.0}, r"data.test_fraction=1.0 is not valid; expected a number in \[0, 1\)"),
        ({"val_fraction": 1.0}, r"data.val_fraction=1.0 is not valid; expected a number in \[0, 1\)"),
        (
            {"train_defects_per_type": 0},
            r"data.train_defects_per_type=0 is not valid; expected an integer >= 1 or null",
        ),
        ({"seed": -1}, r"data.split_seed=-1 is not valid"),
    ],
)
def test_split_options_are_checked(tmp_path, options, message):
    index = read_folder(make_types_tree(tmp_path / "p"))
    with pytest.raises(ConfigError, match=message):
        split_folder(index, **options)


# ---------------------------------------------------------------------------------------------------- split files


def test_split_files_hold_the_vocabulary_names(tmp_path):
    root = make_types_tree(tmp_path / "bracket")
    index = read_folder(root)
    split = split_folder(index, seed=0)
    folder = write_split(index, split, tmp_path / "run" / "split")
    assert folder == tmp_path / "run" / "split" / "realiad_jsons" and [p.name for p in folder.iterdir()] == [
        "bracket.json"
    ]
    data = json.loads((folder / "bracket.json").read_text())
    assert data["meta"] == {
        "prefix": "",
        "normal_class": "good",
        "sample_per_image": True,
        "types": list(TYPES),
        "layout": "types",
        "split": split.options,
    }
    assert [record["image_path"] for record in data["validation"]] == [
        p.relative_to(root).as_posix() for p in _paths(split.val)
    ]
    assert {record["anomaly_class"] for record in data["train"]} == {"good", *TYPES}
    assert {record["mask_path"] for record in data["test"] if record["anomaly_class"] == "good"} == {None}
    assert any(record["mask_path"] is None for record in data["train"] if record["anomaly_class"] != "good")


def test_split_files_refuse_a_folder_with_other_categories(tmp_path):
    root = make_mvtec_tree(tmp_path / "m")
    index = read_folder(root)
    folder = tmp_path / "split" / "realiad_jsons"
    folder.mkdir(parents=True)
    (folder / "zipper.json").write_text("{}")
    with pytest.raises(FolderFormatError, match=r"already holds split files of other categories \(zipper.json\)"):
        write_split(index, split_folder(index), tmp_path / "split")
    assert sorted(p.name for p in folder.iterdir()) == ["zipper.json"]  # nothing written


@pytest.mark.parametrize("layout", ["types", "mvtec"])
def test_split_files_round_trip_through_the_realiad_loader(tmp_path, layout):
    # until the loader takes any vocabulary, the folders are mapped onto Real-IAD codes
    codes = {"crack": "AK", "dent": "BX", "rust": "HS"}
    if layout == "types":
        root = make_types_tree(tmp_path / "d", categories=["gear", "shaft"], per_type=8)
    else:
        root = make_mvtec_tree(tmp_path / "d")
    index = read_folder(root, type_map=codes, types=["HS", "AK", "BX"])
    split = split_folder(index, seed=4)
    write_split(index, split, tmp_path / "run" / "split")
    loaded = load_splits(
        tmp_path / "run" / "split",
        json_set="standard",
        image_root=root,
        splits=("train", "validation", "test"),
        defect_codes=index.types,
    )
    for name, key in (("train", "train"), ("val", "validation"), ("test", "test")):
        records, images = loaded[key], getattr(split, name)
        assert [r.image for r in records] == [root / i.image.relative_to(root) for i in images]
        assert [r.mask for r in records] == [i.mask for i in images]
        assert [r.type_index for r in records] == [-1 if i.type is None else index.types.index(i.type) for i in images]
        assert [r.sample for r in records] == [i.image.relative_to(root).as_posix() for i in images]
        assert {r.view for r in records} == {""}
    # a defective image without a mask stays defective
    unmasked = [r for r in loaded["train"] + loaded["test"] if r.type_index >= 0 and r.mask is None]
    assert bool(unmasked) == (layout == "types")
    assert len({r.sample for r in loaded["test"]}) == len(loaded["test"])  # 000.png repeats; each is its own sample


def test_the_loader_hook_checks_its_image_root_and_real_iad_files_have_no_validation_list(tmp_path, tiny_realiad):
    with pytest.raises(RealIADFormatError, match=r"image folder .*nowhere \(image_root\) does not exist"):
        load_splits(tiny_realiad, json_set="standard", image_root=tmp_path / "nowhere")
    with pytest.raises(RealIADFormatError, match=r"missing or non-list 'validation'"):
        load_splits(tiny_realiad, json_set="standard", splits=("validation",))
    records = load_splits(tiny_realiad, json_set="standard", splits=("train",))["train"]
    assert all(record.view.startswith("C") for record in records)  # Real-IAD names keep their views
