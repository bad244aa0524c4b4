"""The synthetic Real-IAD writer: layout, names, JSON schema, masks, split semantics, determinism, caching."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtfcdd.core.defect_types import DEFECT_CODES, NORMAL_CLASS
from mtfcdd.core.errors import UserError
from mtfcdd.data import synthetic
from mtfcdd.data.realiad import load_split, load_splits
from mtfcdd.data.synthetic import (
    MARKER_NAME,
    PRESETS,
    SyntheticConfig,
    build,
    build_synthetic,
    ensure_synthetic,
    layout,
    read_marker,
    render_sample,
)

ALPHAS = (0.0, 0.1, 0.2, 0.4)
TINY = PRESETS["tiny"]
# one category, 48 px: the smallest set that still has every split, for tests that build their own
SMALL = SyntheticConfig(categories=("audiojack",), size=48, train_samples=10, test_ok_samples=1, test_ng_samples=1)

NAME = re.compile(
    r"^(?P<cat>[a-z0-9_]+?)(?P<sep>_{1,2})(?P<num>\d{4})_(?:OK|NG_(?P<code>[A-Z]{2}))"
    r"_(?P<view>C[1-5])_(?P<ts>\d{14})\.jpg$"
)


def json_dirs(root: Path, layout: str = "flat") -> dict[str, Path]:
    """JSON folder name -> its path, for the standard, sv and every fuiad set."""
    names = ["realiad_jsons", "realiad_jsons_sv", *(f"realiad_jsons_fuiad_{a}" for a in ALPHAS)]
    base = root if layout == "flat" else root / "realiad_jsons"
    return {name: base / name for name in names}


def read_json(root: Path, folder: str, category: str) -> dict:
    return json.loads((json_dirs(root)[folder] / f"{category}.json").read_text())


def sample_of(record: dict) -> str:
    return record["image_path"].rsplit("/", 1)[0]


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


# ---------------------------------------------------------------------------------------------------------------
# Layout, names, JSON schema


def test_layout_and_file_names_follow_the_release(tiny_realiad):
    images = sorted((tiny_realiad / "realiad_256").rglob("*.jpg"))
    assert len(images) == read_marker(tiny_realiad)["totals"]["images"] > 0
    samples: dict[Path, list[str]] = {}
    for path in images:
        rel = path.relative_to(tiny_realiad / "realiad_256")
        match = NAME.match(path.name)
        assert match, path.name
        category = rel.parts[0]
        assert match["cat"] == category
        if rel.parts[1] == "OK":
            assert len(rel.parts) == 4 and match["code"] is None and match["sep"] == "_"
        else:
            assert rel.parts[1] == "NG" and rel.parts[2] in DEFECT_CODES and len(rel.parts) == 5
            assert match["code"] == rel.parts[2]
            # the release's quirk: audiojack NG names have a double underscore, other categories do not
            assert match["sep"] == ("__" if category == "audiojack" else "_")
        assert re.fullmatch(r"S\d{4}", rel.parts[-2]) and rel.parts[-2] == f"S{match['num']}"
        samples.setdefault(path.parent, []).append(match["view"])
    assert all(sorted(views) == ["C1", "C2", "C3", "C4", "C5"] for views in samples.values())
    # S0001 is reused under OK/ and under each NG/<CODE>/ (a sample is its full folder)
    ok_names = {p.name for p in samples if p.parent.name == "OK"}
    assert ok_names & {p.name for p in samples if p.parent.parent.name == "NG"}
    assert set(TINY.categories) == {p.name for p in (tiny_realiad / "realiad_256").iterdir()}
    for path in (tiny_realiad / "realiad_256").rglob("*.png"):
        assert path.with_suffix(".jpg").is_file()


def test_json_files_follow_the_schema(tiny_realiad):
    for folder, path in json_dirs(tiny_realiad).items():
        assert sorted(p.stem for p in path.glob("*.json")) == sorted(TINY.categories), folder
        for category in TINY.categories:
            data = read_json(tiny_realiad, folder, category)
            assert set(data) == {"meta", "train", "test"}
            assert data["meta"] == {"prefix": f"{category}/", "normal_class": "OK"}
            for split in ("train", "test"):
                assert data[split], (folder, split)
                for record in data[split]:
                    assert set(record) == {"category", "anomaly_class", "image_path", "mask_path"}
                    assert record["category"] == category
                    image = tiny_realiad / "realiad_256" / category / record["image_path"]
                    assert image.is_file()
                    if record["anomaly_class"] == NORMAL_CLASS:
                        assert record["mask_path"] is None
                    else:
                        assert record["anomaly_class"] in DEFECT_CODES
                        assert record["image_path"].startswith(f"NG/{record['anomaly_class']}/")
                        assert record["mask_path"] == record["image_path"][:-4] + ".png"
                        assert (tiny_realiad / "realiad_256" / category / record["mask_path"]).is_file()
    # standard split: OK samples only in train; every image on disk is in it; sv keeps only C1
    for category in TINY.categories:
        standard = read_json(tiny_realiad, "realiad_jsons", category)
        assert all(r["image_path"].startswith("OK/") for r in standard["train"])
        on_disk = {
            str(p.relative_to(tiny_realiad / "realiad_256" / category))
            for p in (tiny_realiad / "realiad_256" / category).rglob("*.jpg")
        }
        assert {r["image_path"] for r in standard["train"] + standard["test"]} == on_disk
        sv = read_json(tiny_realiad, "realiad_jsons_sv", category)
        assert sv["test"] and all("_C1_" in r["image_path"] for r in sv["train"] + sv["test"])
        assert len(sv["test"]) * 5 == len(standard["test"])


def test_nested_layout_moves_the_json_folders_one_level_down(tmp_path):
    root = ensure_synthetic(tmp_path / "nested", SMALL, layout="nested")
    for folder, path in json_dirs(root, "nested").items():
        assert (path / "audiojack.json").is_file(), folder
    assert not (root / "realiad_jsons_fuiad_0.2").exists() and not (root / "realiad_jsons" / "audiojack.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Masks and defects


def test_masks_are_binary_same_size_and_small(tiny_realiad):
    shares, by_type = [], {}
    for mask_path in (tiny_realiad / "realiad_256").rglob("*.png"):
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(mask_path.with_suffix(".jpg")), cv2.IMREAD_COLOR)
        assert mask.ndim == 2 and mask.dtype == np.uint8
        assert mask.shape == image.shape[:2] == (TINY.size, TINY.size)
        assert set(np.unique(mask).tolist()) == {0, 255}
        shares.append((mask > 0).mean())
        by_type.setdefault(mask_path.parent.parent.name, []).append(shares[-1])
    shares = np.asarray(shares)
    assert len(shares) == read_marker(tiny_realiad)["totals"]["masks"] > 0
    # defects are small (a few percent of the image at most) but never tiny: typically 1-3 %
    assert shares.min() >= 0.0045 and shares.max() <= 0.045  # 0.5 % rounded to whole pixels at 64 px
    assert 0.008 <= np.median(shares) <= 0.03
    assert set(by_type) == set(DEFECT_CODES)
    for code, values in by_type.items():  # every type is clearly visible, none dominates
        assert 0.006 <= np.median(values) <= 0.035, (code, np.median(values))


def test_ng_samples_have_views_without_the_defect_labelled_ok(tiny_realiad):
    clean_ng_views = 0
    for category in TINY.categories:
        data = read_json(tiny_realiad, "realiad_jsons", category)
        by_sample: dict[str, list[dict]] = {}
        for record in data["test"]:
            if record["image_path"].startswith("NG/"):
                by_sample.setdefault(sample_of(record), []).append(record)
        assert len(by_sample) == 8 * (TINY.ng_train_per_type + TINY.test_ng_samples)
        for sample, records in by_sample.items():
            code = sample.split("/")[1]
            labels = {r["anomaly_class"] for r in records}
            assert labels <= {code, "OK"} and code in labels, sample  # at least one view shows the defect
            for record in records:
                mask_file = (tiny_realiad / "realiad_256" / category / record["image_path"]).with_suffix(".png")
                assert mask_file.is_file() == (record["anomaly_class"] == code)
            clean_ng_views += sum(r["anomaly_class"] == "OK" for r in records)
    assert clean_ng_views > 0


@pytest.mark.parametrize("code", DEFECT_CODES)
def test_mask_marks_exactly_the_pixels_the_defect_changed(code):
    changed_levels = []
    for number in (1, 2):
        sample = render_sample("pcb" if code == "QS" else "bottle_cap", code, number, size=96, seed=3)
        assert any(mask is not None for mask in sample.masks)
        for image, clean, mask in zip(sample.images, sample.cleans, sample.masks):
            assert image.shape == clean.shape == (96, 96, 3) and image.dtype == np.uint8
            diff = np.abs(image.astype(int) - clean.astype(int)).max(axis=2)
            if mask is None:
                assert not diff.any()
            else:
                np.testing.assert_array_equal(diff > 0, mask)
                changed_levels.append(diff[mask].mean())
    assert min(changed_levels) >= 12  # a visible change, not a faint one


def test_defect_types_have_their_own_look():
    def defective(code: str, category: str = "bottle_cap", number: int = 1):
        sample = render_sample(category, code, number, size=128, seed=5)
        view = next(i for i, m in enumerate(sample.masks) if m is not None)
        return (
            sample.images[view].astype(float),
            sample.cleans[view].astype(float),
            sample.masks[view],
            sample.foreground[view],
        )

    def luminance(image):
        return image.mean(axis=2)

    def foreground_of(code: str, category: str) -> np.ndarray:
        return defective(code, category)[3]

    for code in ("AK", "CH", "HS", "ZW", "QS"):  # on the object's surface
        _, _, mask, foreground = defective(code, "pcb" if code == "QS" else "bottle_cap")
        assert foreground[mask].all(), code
    for code in ("BX", "PS"):  # the outline moves: the mask crosses the object's border
        _, _, mask, foreground = defective(code)
        assert foreground[mask].any() and not foreground[mask].all(), code
    image, clean, mask, _ = defective("AK")  # a few dark round dents
    assert cv2.connectedComponents(mask.astype(np.uint8))[0] - 1 >= 2
    assert (luminance(image) < luminance(clean))[mask].all()
    image, clean, mask, _ = defective("HS")  # thin lines: nothing survives an opening with a 5x5 square
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    assert opened.sum() <= 0.1 * mask.sum()
    image, clean, mask, _ = defective("CH")  # rough speckles: much more local variation than the clean surface
    assert luminance(image)[mask].std() > 3 * luminance(clean)[mask].std()
    image, clean, mask, _ = defective("QS", "pcb")  # one component gone: one compact blob, pale, not a dark hole
    assert cv2.connectedComponents(mask.astype(np.uint8))[0] - 1 == 1
    pit_image, _, pit_mask, pit_foreground = defective("AK")
    surface = luminance(clean)[foreground_of("QS", "pcb") & ~mask].mean()
    assert luminance(image)[mask].mean() > surface
    assert luminance(pit_image)[pit_mask].mean() < 0.7 * luminance(pit_image)[pit_foreground & ~pit_mask].mean()
    image, clean, mask, _ = defective("ZW")  # translucent smear: the colour moves part of the way, consistently
    assert np.abs(np.median((image - clean)[mask], axis=0)).max() >= 25
    image, clean, mask, foreground = defective("PS")  # chipped edge: where the piece broke off, the table shows
    now = image[mask & foreground].mean(axis=0)
    table, body = clean[~foreground].mean(axis=0), clean[foreground].mean(axis=0)
    assert np.linalg.norm(now - table) < np.linalg.norm(now - body)


def test_scikit_image_textures_need_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    synthetic.skimage_image.cache_clear()
    import skimage.data

    for name in synthetic.SKIMAGE_FILES:
        image = synthetic.skimage_image(name)
        assert image.dtype == np.float32 and 0.0 <= image.min() < image.max() <= 1.0
        reference = np.asarray(getattr(skimage.data, name)())
        reference = reference[..., :3] if reference.ndim == 3 else reference
        np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), reference)


# ---------------------------------------------------------------------------------------------------------------
# Split semantics


def test_fuiad_alpha_is_the_share_of_ng_images_and_the_test_set_is_fixed(tiny_realiad):
    for category in TINY.categories:
        sets = {a: read_json(tiny_realiad, f"realiad_jsons_fuiad_{a}", category) for a in ALPHAS}
        size = len(sets[0.0]["train"])
        assert size == 5 * TINY.train_samples
        previous_ng: set[str] = set()
        for alpha, data in sets.items():
            assert len(data["train"]) == size
            from_ng = [r for r in data["train"] if r["image_path"].startswith("NG/")]
            assert abs(len(from_ng) / size - alpha) <= 0.5 / TINY.train_samples
            # NG training records keep their true class and mask
            assert any(r["mask_path"] for r in from_ng) == (alpha > 0)
            assert all(r["anomaly_class"] in ("OK", r["image_path"].split("/")[1]) for r in from_ng)
            assert data["test"] == sets[0.0]["test"]
            assert not {sample_of(r) for r in data["train"]} & {sample_of(r) for r in data["test"]}
            ng_samples = {sample_of(r) for r in from_ng}
            assert previous_ng <= ng_samples  # nested across alphas
            previous_ng = ng_samples
        test = sets[0.2]["test"]
        assert any(r["image_path"].startswith("OK/") for r in test)
        assert {r["anomaly_class"] for r in test} == {"OK", *DEFECT_CODES}  # every type in test


def test_demo_preset_trains_on_every_type_and_tests_each_type_enough():
    demo = PRESETS["demo"]
    assert 4 <= len(demo.categories) <= 6 and "audiojack" in demo.categories and demo.size == 256
    assert demo.train_samples >= 150
    for category in demo.categories:
        plan = layout._plan_splits(demo, category, seed=0)
        train, test, _ = layout._split_sets(demo, plan)["realiad_jsons_fuiad_0.2"]
        assert {kind for kind, _ in train} == {"OK", *DEFECT_CODES}
        assert sum(kind == "OK" for kind, _ in train) == demo.train_samples - round(0.2 * demo.train_samples)
    # every NG test sample shows its defect in at least one view; the mean is 3.45 views of 5
    expected = demo.test_ng_samples * len(demo.categories) * np.dot(np.arange(1, 6), synthetic.DEFECTIVE_VIEW_WEIGHTS)
    assert expected >= 40


def test_load_split_reads_every_json_set_and_layout(tmp_path, tiny_realiad):
    nested = ensure_synthetic(tmp_path / "nested", SMALL, layout="nested")
    for root, config in ((tiny_realiad, TINY), (nested, SMALL)):
        marker = read_marker(root)["totals"]
        for alpha in ALPHAS:
            splits = load_splits(root, alpha=alpha)
            folder = f"realiad_jsons_fuiad_{alpha}"
            assert len(splits["train"]) == marker[f"{folder}/train"]
            assert len(splits["train"]) == 5 * config.train_samples * len(config.categories)
            assert sum(r.type_index >= 0 for r in splits["train"]) == marker[f"{folder}/train_anomalous"]
            assert sum(r.sample.split("/")[1] == "NG" for r in splits["train"]) == marker[f"{folder}/train_from_ng"]
            assert {r.view for r in splits["test"]} == {"C1", "C2", "C3", "C4", "C5"}
            for record in splits["test"]:
                assert (record.mask is None) == (record.type_index == -1)
                if record.mask is not None:
                    assert record.anomaly_class == DEFECT_CODES[record.type_index] == record.sample.split("/")[2]
        standard = load_split(root, split="train", json_set="standard")
        assert standard and all(r.type_index == -1 and "/OK/" in f"/{r.sample}/" for r in standard)
        sv = load_split(root, split="test", json_set="sv")
        assert sv and {r.view for r in sv} == {"C1"}


# ---------------------------------------------------------------------------------------------------------------
# Determinism, atomicity, caching, command line


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = tree_digest(ensure_synthetic(tmp_path / "a", SMALL, seed=7))
    build_synthetic(tmp_path / "b", SMALL, seed=7, workers=2)
    assert tree_digest(tmp_path / "b") == first  # in-process and two worker processes write the same bytes
    other = tree_digest(ensure_synthetic(tmp_path / "c", SMALL, seed=8))
    images = lambda digest: {k: v for k, v in digest.items() if k.endswith(".jpg")}  # noqa: E731
    assert not set(images(first).values()) & set(images(other).values())


def test_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "set"
    real_write = build._write_sample
    calls = []

    def failing_write(*args):
        calls.append(args)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real_write(*args)

    monkeypatch.setattr(build, "_write_sample", failing_write)
    with pytest.raises(KeyboardInterrupt):
        build_synthetic(out, SMALL)
    assert len(calls) == 20 and not out.exists() and list(tmp_path.iterdir()) == []

    # a failed rebuild keeps the earlier complete build as it was
    monkeypatch.setattr(build, "_write_sample", real_write)
    ensure_synthetic(out, SMALL, seed=1)
    before = tree_digest(out)
    calls.clear()
    monkeypatch.setattr(build, "_write_sample", failing_write)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(out, SMALL, seed=2)
    assert tree_digest(out) == before and [p.name for p in tmp_path.iterdir()] == ["set"]


def test_cache_is_reused_until_the_parameters_change(tmp_path, monkeypatch):
    out = tmp_path / "set"
    ensure_synthetic(out, SMALL, seed=1)
    marker = read_marker(out)
    assert marker["parameters"]["seed"] == 1
    assert marker["parameters"]["generator_version"] == build.GENERATOR_VERSION
    stamp = (out / MARKER_NAME).stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt although the cached build matches")

    monkeypatch.setattr(build, "build_synthetic", no_build)
    assert ensure_synthetic(out, SMALL, seed=1) == out
    assert (out / MARKER_NAME).stat().st_mtime_ns == stamp
    monkeypatch.undo()

    ensure_synthetic(out, replace(SMALL, train_samples=20), seed=1)
    assert read_marker(out)["totals"]["realiad_jsons_fuiad_0.0/train"] == 100
    monkeypatch.setattr(build, "GENERATOR_VERSION", build.GENERATOR_VERSION + 1)
    ensure_synthetic(out, replace(SMALL, train_samples=20), seed=1)
    assert read_marker(out)["parameters"]["generator_version"] == build.GENERATOR_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_refuses_to_overwrite_a_folder_that_is_not_a_synthetic_build(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=re.escape(str(out))):
        ensure_synthetic(out, SMALL)
    assert (out / "notes.txt").read_text() == "keep me" and [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"size": 16}, "size"),
        ({"train_samples": 5}, "train_samples"),
        ({"categories": ("audiojack", "nope")}, "categories"),
        ({"test_ng_samples": 0}, "test_ng_samples"),
    ],
)
def test_bad_parameters_are_named(change, key):
    with pytest.raises(UserError, match=key):
        replace(SMALL, **change)


def test_bad_preset_seed_or_layout_are_named(tmp_path):
    for kwargs, key in (({"preset": "huge"}, "preset"), ({"seed": -1}, "seed"), ({"layout": "deep"}, "layout")):
        with pytest.raises(UserError, match=key):
            ensure_synthetic(tmp_path / "x", **{"preset": SMALL, **kwargs})
    assert not (tmp_path / "x").exists()


def test_command_line_builds_and_reports(tmp_path):
    out = tmp_path / "cli"
    args = [
        sys.executable,
        "-m",
        "mtfcdd.data.synthetic",
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--categories",
        "1",
        "--size",
        "48",
        "--train-samples",
        "10",
        "--test-ok-samples",
        "1",
        "--test-ng-samples",
        "1",
        "--layout",
        "nested",
        "--seed",
        "3",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "realiad_jsons_fuiad_0.2: train 50 (10 from NG)" in proc.stdout
    assert read_marker(out)["parameters"] == build._parameters(SMALL, 3, "nested")
    bad = subprocess.run([*args[:5], "--categories", "audiojack,unknown"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "categories" in bad.stderr and "unknown" in bad.stderr
