"""The synthetic generator's per-type and MVTec AD folders: read back by the folder layer with their types, counts
and masks; the types option, the cache and the command line."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtfcdd.core.defect_types import REALIAD_VOCABULARY
from mtfcdd.core.errors import UserError
from mtfcdd.data.folder import read_folder, split_folder
from mtfcdd.data.synthetic import (
    FOLDER_LAYOUTS,
    FOLDER_TYPES,
    MASK_AREA,
    SyntheticConfig,
    build,
    build_synthetic,
    ensure_synthetic,
    read_marker,
    render_sample,
)
from mtfcdd.data.synthetic.__main__ import main

CONFIG = SyntheticConfig(
    categories=("audiojack", "bottle_cap"), size=48, train_samples=10, test_ok_samples=2, test_ng_samples=1
)
TYPES = ("crack", "dent", "rust")
DEFECTS = 6
"""Defective images per type and category by default for CONFIG (the floor: its Real-IAD set has 2 per type)."""


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Layout -> a 3-type build of CONFIG in that layout (read-only)."""
    root = tmp_path_factory.mktemp("synthetic-folders")
    return {layout: ensure_synthetic(root / layout, CONFIG, layout=layout, types=TYPES) for layout in FOLDER_LAYOUTS}


def folder_counts(index) -> dict[tuple[str, str], int]:
    """(category, folder relative to the category) -> images."""
    counts: dict[tuple[str, str], int] = {}
    for image in index.images:
        key = (image.category, str(image.image.parent.relative_to(index.category_dirs[image.category])))
        counts[key] = counts.get(key, 0) + 1
    return counts


def check_masks(index) -> None:
    """Every defective image has a mask covering MASK_AREA of it; normal images have none."""
    for image in index.images:
        assert (image.mask is None) == (image.type is None), image.image
        if image.mask is not None:
            mask = cv2.imread(str(image.mask), cv2.IMREAD_UNCHANGED)
            picture = cv2.imread(str(image.image))
            assert mask.shape == picture.shape[:2] == (CONFIG.size, CONFIG.size)
            assert set(np.unique(mask)) == {0, 255}
            assert MASK_AREA[0] <= (mask > 0).mean() <= MASK_AREA[1], image.mask


def test_names_are_not_real_iad_ones_and_draw_every_look():
    assert sorted(FOLDER_TYPES.values()) == sorted(REALIAD_VOCABULARY.codes)
    assert not set(FOLDER_TYPES) & (set(REALIAD_VOCABULARY.codes) | set(REALIAD_VOCABULARY.names))
    assert tuple(FOLDER_TYPES)[:3] == TYPES  # --types 3


def test_per_type_tree_reads_back_with_its_types_counts_and_masks(trees):
    index = read_folder(trees["types"])
    assert index.layout == "types" and index.types == TYPES and index.skipped == ()
    assert set(index.category_dirs) == set(CONFIG.categories)
    good = CONFIG.train_samples + CONFIG.test_ok_samples
    assert folder_counts(index) == {
        (category, folder): good if folder == "good" else DEFECTS
        for category in CONFIG.categories
        for folder in ("good", *TYPES)
    }
    for image in index.images:
        assert image.image.suffix == ".jpg" and image.pool == "all"
        if image.mask is not None:
            assert image.mask == index.category_dirs[image.category] / "masks" / image.type / f"{image.image.stem}.png"
    check_masks(index)
    split = split_folder(index)
    for part in (split.train, split.val, split.test):
        assert {(image.category, image.type) for image in part} == {
            (category, kind) for category in CONFIG.categories for kind in (None, *TYPES)
        }


def test_mvtec_tree_reads_back_with_its_types_counts_and_masks(trees):
    index = read_folder(trees["mvtec"])
    assert index.layout == "mvtec" and index.types == TYPES and index.skipped == ()
    expected = {}
    for category in CONFIG.categories:
        expected[(category, "train/good")] = CONFIG.train_samples
        expected[(category, "test/good")] = CONFIG.test_ok_samples
        expected.update({(category, f"test/{kind}"): DEFECTS for kind in TYPES})
    assert folder_counts(index) == expected
    names = {}
    for image in index.images:
        assert image.image.suffix == ".png" and image.pool == ("train" if "train" in image.image.parts else "test")
        names.setdefault(image.image.parent, set()).add(image.image.name)
        if image.mask is not None:
            folder = index.category_dirs[image.category] / "ground_truth" / image.type
            assert image.mask == folder / f"{image.image.stem}_mask.png"
    # MVTec AD's names: 000.png, 001.png ... in every folder
    assert all(files == {f"{k:03d}.png" for k in range(len(files))} for files in names.values())
    check_masks(index)
    split = split_folder(index)  # default train_defect_fraction: some defects of every type train
    assert {image.type for image in split.train} == {None, *TYPES}
    assert {image.type for image in split.test} == {None, *TYPES}


def test_an_image_is_one_view_of_its_sample_drawn_with_its_types_look(trees):
    """test/crack/000.png is sample 1 of the crack look (Real-IAD's PS), its first defective view, bit for bit."""
    category = CONFIG.categories[0]
    rendered = render_sample(category, FOLDER_TYPES["crack"], 1, size=CONFIG.size, seed=0)
    view = next(v for v, mask in enumerate(rendered.masks) if mask is not None)
    base = trees["mvtec"] / category
    image = cv2.cvtColor(cv2.imread(str(base / "test" / "crack" / "000.png")), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(str(base / "ground_truth" / "crack" / "000_mask.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(image, rendered.images[view])
    np.testing.assert_array_equal(mask > 0, rendered.masks[view])
    normal = render_sample(category, "OK", 1, size=CONFIG.size, seed=0).images[0]
    good = cv2.cvtColor(cv2.imread(str(base / "train" / "good" / "000.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(good, normal)


def test_the_marker_records_the_types_and_the_cache_follows_them(tmp_path, monkeypatch, trees):
    marker = read_marker(trees["types"])
    assert marker["parameters"]["types"] == list(TYPES) and marker["parameters"]["defects_per_type"] == DEFECTS
    assert marker["totals"]["crack"] == DEFECTS * len(CONFIG.categories)
    assert marker["totals"]["masks"] == DEFECTS * len(TYPES) * len(CONFIG.categories)
    one = SyntheticConfig(categories=("mint",), size=48, train_samples=10, test_ok_samples=2, test_ng_samples=1)
    out = tmp_path / "set"
    ensure_synthetic(out, one, layout="types", types=["stain"], defects_per_type=3)
    digest = {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt an up-to-date set")

    with monkeypatch.context() as patch:
        patch.setattr(build, "build_synthetic", no_rebuild)
        ensure_synthetic(out, one, layout="types", types=["stain"], defects_per_type=3)
    ensure_synthetic(out, one, layout="types", types=["stain", "gap"], defects_per_type=3)
    assert read_folder(out).types == ("gap", "stain")
    build_synthetic(out, one, layout="types", types=["stain"], defects_per_type=3)  # the same bytes again
    again = {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    assert again == digest and len(digest) == 1 + 12 + 2 * 3  # marker, good, stain images and masks


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"layout": "types", "types": ["pit"]}, "crack"),  # a Real-IAD name is no folder type
        ({"layout": "mvtec", "types": ["dent", "dent"]}, "distinct"),
        ({"layout": "mvtec", "types": []}, "distinct"),
        ({"layout": "types", "defects_per_type": 0}, "defects_per_type=0"),
        ({"layout": "flat", "types": ["dent"]}, "layout='flat'"),
        ({"layout": "nested", "defects_per_type": 4}, "layout='nested'"),
        ({"layout": "tree"}, "types, mvtec"),
    ],
)
def test_bad_folder_options_are_named_and_nothing_is_written(tmp_path, options, named):
    with pytest.raises(UserError, match=named):
        build_synthetic(tmp_path / "set", CONFIG, **options)
    assert list(tmp_path.iterdir()) == []


def test_command_line_writes_the_folders_with_a_count_or_names(tmp_path, capsys):
    small = ["--categories", "mint", "--size", "48", "--train-samples", "10", "--test-ok-samples", "2"]
    main(["--out", str(tmp_path / "mvtec"), *small, "--layout", "mvtec", "--types", "3", "--defects-per-type", "3"])
    printed = capsys.readouterr().out
    assert "mint" in printed and "test/crack/ 3, test/dent/ 3, test/rust/ 3" in printed
    assert read_folder(tmp_path / "mvtec").types == TYPES
    main(["--out", str(tmp_path / "types"), *small, "--layout", "types", "--types", "wear,debris"])
    assert "good/ 12, wear/ 6, debris/ 6" in capsys.readouterr().out
    assert read_folder(tmp_path / "types").types == ("debris", "wear")
    main(["--out", str(tmp_path / "all"), *small, "--layout", "types", "--defects-per-type", "3"])
    assert read_folder(tmp_path / "all").types == tuple(sorted(FOLDER_TYPES))
    for bad in (["--types", "9"], ["--types", "pit"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--out", str(tmp_path / "bad"), *small, "--layout", "types", *bad])
        assert exit_info.value.code == 2
    assert not (tmp_path / "bad").exists()


def test_the_synthetic_data_module_refuses_a_folder_layout():
    from mtfcdd.data.synthetic.datamodule import SyntheticRealIADDataModule

    with pytest.raises(UserError, match="data.synthetic.layout='mvtec'.*data=folder"):
        SyntheticRealIADDataModule(synthetic={"preset": "tiny", "layout": "mvtec"}, root="unused")


# ---------------------------------------------------------------------------------------------------------------
# A 3-type model trained on each layout names its channels everywhere


@pytest.fixture(scope="module")
def trained(trees, tmp_path_factory):
    """Factory ``layout -> (run directory, best checkpoint, every caption drawn in a figure)`` of a short training
    (debug=limit, 64 px) with ``data=folder`` on the 3-type tree, cached per layout. Treat the runs as read-only."""
    from helpers.hydra_compose import compose_config
    from mtfcdd.train import train
    from mtfcdd.viz import grids

    runs: dict[str, tuple[Path, Path, list[str]]] = {}

    def run(layout: str) -> tuple[Path, Path, list[str]]:
        if layout not in runs:
            captions: list[str] = []
            label = grids._label

            def spy(tile: np.ndarray, text: str) -> np.ndarray:
                captions.append(text)
                return label(tile, text)

            overrides = ["data.train_defect_fraction=0.3"] if layout == "mvtec" else []
            cfg = compose_config(
                tmp_path_factory.mktemp(f"trained-{layout}"),
                [
                    "data=folder",
                    f"data.root={trees[layout]}",
                    "data.image_size=64",
                    "debug=limit",
                    "logger=none",
                    "data.num_workers=0",
                    *overrides,
                ],
            )
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(grids, "_label", spy)
                _, objects = train(cfg)
            best = objects["checkpoints"][cfg.test_ckpt] or objects["checkpoints"]["last"]
            runs[layout] = (Path(cfg.paths.output_dir), Path(best), captions)
        return runs[layout]

    return run


@pytest.mark.parametrize("layout", FOLDER_LAYOUTS)
def test_a_three_type_model_carries_the_folder_names_everywhere(tmp_path, trees, trained, layout):
    """Channels, results, figure captions, prediction columns and ONNX metadata name crack, dent and rust, and
    nothing names a Real-IAD type."""
    import csv
    import json

    import onnx
    import torch

    from helpers.hydra_compose import compose_config
    from mtfcdd.core.defect_types import vocabulary_of
    from mtfcdd.export import build_onnx
    from mtfcdd.model.checkpoint import load_pipeline
    from mtfcdd.predict import predict

    run, checkpoint, captions = trained(layout)
    realiad = set(REALIAD_VOCABULARY.names) | set(REALIAD_VOCABULARY.codes)
    pipeline, saved = load_pipeline(checkpoint)
    assert pipeline.num_types == 3 and vocabulary_of(saved).names == TYPES
    with torch.no_grad():
        assert pipeline(torch.rand(2, 3, 64, 64)).maps.shape[1] == 3

    results = json.loads((run / "results.json").read_text())
    assert results["type_names"] == list(TYPES)
    rows = {line.split("|")[1].strip().lower() for line in (run / "results.md").read_text().splitlines() if "|" in line}
    assert set(TYPES) <= rows and not rows & {name.replace("_", " ").lower() for name in realiad}

    # figure captions: one overlay per type ("crack 0.12", "! crack 0.5" when decided) and the true type's row title
    assert (run / "heatmaps" / "test.png").is_file()
    words = [caption.removeprefix("! ").split(" ") for caption in captions]
    overlays = {first for first, *rest in words if rest and re.fullmatch(r"[-+.0-9e]+|nan|inf", rest[-1])}
    titles = {first for first, *rest in words if rest and rest[-1] in CONFIG.categories}
    assert overlays == set(TYPES) and titles == {*TYPES, "OK"}, captions

    # predict with nothing but the checkpoint: its columns and summary name the types
    images = trees[layout] / CONFIG.categories[0] / ("crack" if layout == "types" else "test/crack")
    cfg = compose_config(
        tmp_path,
        [f"ckpt_path={checkpoint}", f"input={images}", "num_workers=0", "trainer=cpu", "save_overlays=false"],
        config_name="predict",
    )
    summary = predict(cfg)
    assert list(summary["per_type"]) == list(TYPES)
    with (Path(cfg.paths.output_dir) / "predictions.csv").open(newline="") as handle:
        columns = csv.DictReader(handle).fieldnames
    for prefix in ("score_", "decision_"):
        assert [c for c in columns if c.startswith(prefix)] == [prefix + name for name in TYPES]

    meta = {p.key: p.value for p in onnx.load_from_string(build_onnx(pipeline, saved)).metadata_props}
    assert json.loads(meta["type_names"]) == list(TYPES)
