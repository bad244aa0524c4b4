"""``data=folder``: the folder data module through the real configs and commands (setup, split reuse, train,
evaluate, a bad folder stopping the command)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from helpers.folder_trees import TYPES, make_mvtec_tree, make_types_tree, write_image, write_mask
from helpers.hydra_compose import compose_config
from mtfcdd.core.config import ConfigError
from mtfcdd.data.folder import read_folder, split_folder
from mtfcdd.data.folder.datamodule import SKIPPED_FILE
from mtfcdd.metrics.evaluator import MultiTypeEvaluator
from mtfcdd.run.build import build_datamodule

FAST = ["debug=limit", "logger=none", "data.num_workers=0", "data.image_size=64", "data.val_max_images=null"]
FAST += ["data.test_max_images=null"]


def folder_overrides(root: Path, *extra: str) -> list[str]:
    return ["data=folder", f"data.root={root}", *FAST, *extra]


def _split_file(run: Path, category: str) -> dict:
    return json.loads((run / "split" / "realiad_jsons" / f"{category}.json").read_text())


def _paths(records) -> list[str]:
    return sorted(str(record.image) for record in records)


@pytest.mark.parametrize("layout", ["types", "mvtec"])
def test_setup_serves_the_folder_split_with_the_folder_vocabulary(tmp_path, layout):
    if layout == "types":
        root = make_types_tree(tmp_path / "parts", categories=["gear", "shaft"])
        (root / "gear" / "good" / "notes.txt").write_text("not an image\n")
    else:
        root = make_mvtec_tree(tmp_path / "mvtec")
    cfg = compose_config(tmp_path, folder_overrides(root, "data.type_colours={rust: [10, 20, 30]}"))
    datamodule = build_datamodule(cfg)
    assert datamodule.vocabulary.codes == TYPES == datamodule.defect_codes
    assert datamodule.vocabulary.colour("rust") == (10, 20, 30)
    assert datamodule.num_types == 3 and datamodule.hparams.defect_codes == list(TYPES)
    # the split the folder layer makes with this seed, served as it is: the validation list is the validation set
    split = split_folder(read_folder(root), seed=cfg.seed)
    for dataset, images in (
        (datamodule.train_dataset, split.train),
        (datamodule.val_dataset, split.val),
        (datamodule.test_dataset, split.test),
    ):
        assert _paths(dataset.records) == sorted(str(image.image) for image in images)
        assert [r.type_index for r in sorted(dataset.records, key=lambda r: r.image)] == [
            -1 if i.type is None else TYPES.index(i.type) for i in images
        ]
    counts = datamodule.train_class_counts()
    assert len(counts) == 4 and all(counts) and counts[3] == sum(1 for i in split.train if i.type is None)
    run = Path(cfg.paths.output_dir)
    if layout == "mvtec":  # train_defect_fraction null = 0.2 of each type's test images, at least one
        assert counts[:3] == [2, 2, 2]  # 2 categories x max(1, round(0.2 x 6))
        assert not (run / "split" / SKIPPED_FILE).exists()
    else:  # the skipped file is listed beside the split
        assert "notes.txt" in (run / "split" / SKIPPED_FILE).read_text()
    # a defective image without a mask file is evaluated without pixels (types tree: every other image has one)
    samples = [datamodule.test_dataset[i] for i in range(len(datamodule.test_dataset))]
    unmasked = [s for s in samples if int(s["type_index"]) >= 0 and not bool(s["has_mask"])]
    assert bool(unmasked) == (layout == "types") and not any(s["mask"].any() for s in unmasked)
    assert all(bool(s["has_mask"]) for s in samples if int(s["type_index"]) < 0)


def test_same_seed_same_split_and_a_stored_split_is_reused_or_refused(tmp_path):
    root = make_types_tree(tmp_path / "parts")
    first = compose_config(tmp_path / "a", folder_overrides(root))
    build_datamodule(first)
    second = compose_config(tmp_path / "b", folder_overrides(root))
    build_datamodule(second)
    assert _split_file(Path(first.paths.output_dir), "parts") == _split_file(Path(second.paths.output_dir), "parts")
    other_seed = compose_config(tmp_path / "c", folder_overrides(root, "data.split_seed=7"))
    build_datamodule(other_seed)
    assert _split_file(Path(other_seed.paths.output_dir), "parts") != _split_file(Path(first.paths.output_dir), "parts")

    # a new image in the folder: a run pointed at the first split (evaluate, resume) keeps that split
    write_image(root / "good" / "zz_new.png", seed=99)
    split_dir = Path(first.paths.output_dir) / "split"
    stored = _split_file(Path(first.paths.output_dir), "parts")
    reuse = compose_config(tmp_path / "d", folder_overrides(root, f"data.split_dir={split_dir}"))
    datamodule = build_datamodule(reuse)
    assert _split_file(Path(first.paths.output_dir), "parts") == stored
    served = _paths(datamodule.train_dataset.records + datamodule.val_dataset.records + datamodule.test_dataset.records)
    assert str(root / "good" / "zz_new.png") not in served and len(served) == 8 + 3 * 6
    # ... but not with other options
    for override, named in (
        ("data.split_seed=7", "split.seed 42 there, 7 now"),
        ("data.types=[rust,dent,crack]", "types"),
    ):
        cfg = compose_config(tmp_path / "e", folder_overrides(root, f"data.split_dir={split_dir}", override))
        with pytest.raises(ConfigError, match=rf"data.split_dir='{re.escape(str(split_dir))}' holds a split .*{named}"):
            build_datamodule(cfg)


def test_the_run_says_what_the_test_keeps_back_and_a_final_fit_trains_on_everything(tmp_path, caplog):
    root = make_types_tree(tmp_path / "parts", good=10, per_type=10)
    with caplog.at_level(logging.INFO, logger="mtfcdd.data"):
        measured = build_datamodule(compose_config(tmp_path / "a", folder_overrides(root)))
    kept = len(measured.test_dataset.records)
    assert kept == 3 + 3 * 3
    assert f"{kept} of the 40 labelled images (30 %) are kept back for the test stage" in caplog.text
    assert "repeat the command with data.test_fraction=0 test=false" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mtfcdd.data"):
        final = build_datamodule(compose_config(tmp_path / "b", folder_overrides(root, "data.test_fraction=0")))
    assert len(final.test_dataset.records) == 0 and "kept back" not in caplog.text
    assert len(final.train_dataset.records) + len(final.val_dataset.records) == 40
    assert len(final.train_dataset.records) > len(measured.train_dataset.records)


def test_folder_options_are_checked_when_the_data_is_set_up(tmp_path):
    root = make_types_tree(tmp_path / "parts")
    for override, message in (
        ("data.train_defect_fraction=0.5", r"data.train_defect_fraction=0.5 applies to the mvtec layout"),
        ("data.type_colours={scratch: [1, 2, 3]}", r"data.type_colours names scratch"),
        ("data.on_unreadable=ignore", r"data.on_unreadable"),
    ):
        cfg = compose_config(tmp_path, folder_overrides(root, override))
        with pytest.raises(ConfigError, match=message):
            build_datamodule(cfg)
        assert not (Path(cfg.paths.output_dir) / "split").exists()
    cfg = compose_config(tmp_path, ["data=folder", *FAST])
    with pytest.raises(ConfigError, match=r"data.root is required and not set"):
        build_datamodule(cfg)


def test_pixel_metrics_leave_out_defective_images_without_a_mask():
    torch.manual_seed(0)
    maps, masks = torch.rand(4, 2, 8, 8), torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[0, 2:5, 2:5] = True
    types = torch.tensor([0, 1, -1, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # type b has no mask: its pixel metrics are undefined
        full = MultiTypeEvaluator(["a", "b"], protocol="typed")
        full.update(maps, masks, types, has_mask=torch.tensor([True, False, True, True]))
        results = full.compute()
        kept = MultiTypeEvaluator(["a", "b"], protocol="typed")  # the same images less the unmasked one's pixels
        kept.update(maps[[0, 2, 3]], masks[[0, 2, 3]], types[[0, 2, 3]])
        expected = kept.compute()
    reference = {**expected["types"], "any_defect": expected["any_defect"]}
    for name, entry in {**results["types"], "any_defect": results["any_defect"]}.items():
        for metric in ("p_auroc", "aupro", "positive_pixels", "regions"):
            assert entry[metric] == pytest.approx(reference[name][metric], nan_ok=True), (name, metric)
    # ... while the image metrics count it
    assert results["types"]["b"]["positive_images"] == 1 and expected["types"]["b"]["positive_images"] == 0
    assert results["counts"]["anomalous_images"] == 2


def test_train_and_evaluate_a_folder_model(tmp_path):
    """A 3-type model trained on a folder; evaluate on its checkpoint tests the trained run's split, with pixel
    metrics for the types with masks and image metrics alone for the type without."""
    from mtfcdd.evaluate import evaluate
    from mtfcdd.run.checks import check_inference
    from mtfcdd.run.lifecycle import run_command
    from mtfcdd.train import run_task

    root = make_types_tree(tmp_path / "parts", per_type=8)
    shutil.rmtree(root / "masks" / "rust")
    cfg = compose_config(tmp_path / "train", folder_overrides(root, "test_ckpt=last"))
    run_task(cfg)
    run = Path(cfg.paths.output_dir)
    trained = json.loads((run / "results.json").read_text())
    test_list = _split_file(run, "parts")["test"]
    assert trained["counts"]["images"] == len(test_list)
    assert trained["type_names"] == list(TYPES)

    write_image(root / "good" / "zz_new.png", seed=99)  # the folder grows after training: the split stays
    evaluation = compose_config(
        tmp_path / "evaluate",
        [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer=cpu", "logger=none"],
        config_name="evaluate",
    )
    results = run_command(evaluation, evaluate, [check_inference])
    assert results["counts"] == trained["counts"]
    rows = [json.loads(line) for line in (Path(evaluation.paths.output_dir) / "predictions.jsonl").open()]
    assert sorted(Path(row["path"]).relative_to(root).as_posix() for row in rows) == sorted(
        record["image_path"] for record in test_list
    )
    types = results["types"]
    assert types["rust"]["positive_images"] > 0 and types["rust"]["positive_pixels"] == 0
    assert types["rust"]["p_auroc"] != types["rust"]["p_auroc"]  # NaN: no mask of this type
    assert types["crack"]["positive_pixels"] > 0 and 0 <= types["crack"]["p_auroc"] <= 1
    for entry in types.values():
        assert 0 <= entry["i_auroc"] <= 1
    for name, value in trained["mean"].items():
        assert results["mean"][name] == pytest.approx(value, rel=1e-6, nan_ok=True), name


def _run_dir_files(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}


def test_a_bad_folder_stops_the_command_before_any_work(tmp_path):
    empty_type = make_types_tree(tmp_path / "empty")
    for image in (empty_type / "dent").iterdir():
        image.unlink()
    shutil.rmtree(empty_type / "masks" / "dent")
    wrong_mask = make_types_tree(tmp_path / "mask")
    write_mask(wrong_mask / "masks" / "crack" / "000.png", size=(8, 8))
    for root, expected in (
        (empty_type, f"type folder {empty_type / 'dent'} holds no readable image"),
        (wrong_mask, f"mask {wrong_mask / 'masks' / 'crack' / '000.png'} is 8x8 pixels but its image"),
    ):
        run = tmp_path / f"run-{root.name}"
        proc = subprocess.run(
            [sys.executable, "-m", "mtfcdd.train", *folder_overrides(root), f"hydra.run.dir={run}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert expected in proc.stderr and "Traceback" not in proc.stderr
        assert _run_dir_files(run) <= {"status.json", "debug.log"}, _run_dir_files(run)
        assert json.loads((run / "status.json").read_text())["state"] == "failed"
