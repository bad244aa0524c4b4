"""`python -m mtfcdd.predict` on new images, and its parity with `evaluate`, the end-of-training test and ONNX."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.hydra_compose import compose_config
from helpers.image_kinds import write_image_kinds
from mtfcdd.core.checksum import sha256_file
from mtfcdd.core.errors import UserError
from mtfcdd.data.images import ImageFileDataset
from mtfcdd.evaluate import evaluate
from mtfcdd.export import build_onnx
from mtfcdd.inference.onnx_pipeline import run_session
from mtfcdd.inference.onnx_runtime import make_session
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.model.outputs import column_name
from mtfcdd.predict import predict


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _best(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best_*.ckpt")
    return best


def _predict(tmp_path: Path, ckpt: Path, source: str, *extra: str) -> tuple[dict, Path]:
    cfg = compose_config(
        tmp_path,
        [f"ckpt_path={ckpt}", f"input={source}", "num_workers=0", "trainer=cpu", *extra],
        config_name="predict",
    )
    return predict(cfg), Path(cfg.paths.output_dir)


@pytest.fixture(scope="module")
def mixed_images(tmp_path_factory) -> Path:
    """Every kind of file a user may point predict at, and one that is not an image."""
    root = tmp_path_factory.mktemp("new-images")
    rng = np.random.default_rng(0)
    (root / "nested" / "deeper").mkdir(parents=True)
    write_image_kinds(root, rng)
    cv2.imwrite(str(root / "big.bmp"), rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "nested" / "deeper" / "part.png"), rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("not an image, not picked up")
    return root


def test_predict_reads_every_format_and_lists_what_it_cannot(tmp_path, trained_run, mixed_images):
    ckpt = _best(trained_run("max"))
    summary, run = _predict(tmp_path, ckpt, str(mixed_images))
    pipeline, cfg = load_pipeline(ckpt)
    names = [
        column_name(n)
        for n in [
            "pit",
            "deformation",
            "abrasion",
            "scratch",
            "damage",
            "missing parts",
            "foreign objects",
            "contamination",
        ]
    ]
    rows = _rows(run / "predictions.csv")
    assert list(rows[0]) == [
        "path",
        *(f"score_{n}" for n in names),
        *(f"decision_{n}" for n in names),
        "anomaly_score",
        "anomalous",
        "predicted_type",
    ]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(
        ["rgb.png", "gray.jpg", "rgba.png", "deep16.tif", "gray16.png", "big.bmp", "part.png"]
    )
    assert [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()] == [
        {k: (v if k in ("path", "predicted_type") else json.loads(v)) for k, v in r.items()} for r in rows
    ]
    (error,) = _rows(run / "errors.csv")
    assert error["path"].endswith("broken.png") and "cannot decode" in error["error"]
    assert summary["images"] == 7 and summary["errors"] == 1
    assert summary["anomalous"] == sum(int(r["anomalous"]) for r in rows)
    # the values are the pipeline's on the images resized as in training
    dataset = ImageFileDataset([Path(r["path"]) for r in rows], int(cfg.data.image_size))
    with torch.no_grad():
        out = pipeline(torch.stack([dataset[i]["image"] for i in range(len(dataset))]))
    scores = np.array([[float(r[f"score_{n}"]) for n in names] for r in rows])
    np.testing.assert_allclose(scores, out.scores.double().numpy(), rtol=1e-5)  # memory format, batch: ~1e-6
    assert [[int(r[f"decision_{n}"]) for n in names] for r in rows] == out.decisions.int().tolist()
    assert [int(r["anomalous"]) for r in rows] == out.anomalous.int().tolist()
    overlays = sorted((run / "overlays").glob("*.png"))
    assert len(overlays) == 7
    size = int(cfg.data.image_size)
    assert cv2.imread(str(overlays[0])).shape == (size + 18, 9 * size + 8 * 4, 3)  # image + 8 type overlays


def test_predict_without_overlays_and_with_a_glob(tmp_path, trained_run, mixed_images):
    summary, run = _predict(tmp_path, _best(trained_run("max")), f"{mixed_images}/**/*.png", "save_overlays=false")
    assert summary["images"] == 4 and summary["errors"] == 1  # rgb, rgba, gray16, nested part; broken
    assert not (run / "overlays").exists()


def test_predict_refuses_an_input_without_images(tmp_path, trained_run):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty.*matches no image file"):
        _predict(tmp_path, _best(trained_run("max")), str(tmp_path / "empty"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.predict",
            f"ckpt_path={_best(trained_run('max'))}",
            f"input={tmp_path}/nothing-*.png",
            f"paths.log_dir={tmp_path}/logs",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "nothing-*.png" in proc.stderr


def test_predict_fails_when_every_file_fails(tmp_path, trained_run):
    (tmp_path / "bad").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "bad" / name).write_bytes(b"garbage")
    with pytest.raises(UserError, match="none of its 2 files could be read"):
        _predict(tmp_path, _best(trained_run("max")), str(tmp_path / "bad"))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, trained_run) -> Path:
    """``evaluate`` (defaults: eager float32) of the max-score run's best checkpoint: its run directory."""
    tmp = tmp_path_factory.mktemp("evaluated")
    cfg = compose_config(tmp, [f"ckpt_path={_best(trained_run('max'))}", "trainer=cpu"], config_name="evaluate")
    evaluate(cfg)
    return Path(cfg.paths.output_dir)


def test_evaluate_gives_the_end_of_training_test_metrics(trained_run, evaluated):
    trained = json.loads((trained_run("max") / "results.json").read_text())
    again = json.loads((evaluated / "results.json").read_text())
    assert again["counts"] == trained["counts"]
    for name, entry in trained["types"].items():
        for metric, value in entry.items():
            other = again["types"][name][metric]
            assert (value != value and other != other) or other == value, (name, metric)
    assert again["type_classification"] == trained["type_classification"]
    # both name the checkpoint they tested: the run's best (test_ckpt=best), which evaluate was given
    best = _best(trained_run("max"))
    assert trained["checkpoints"] == {"checkpoint": {"path": str(best.resolve()), "sha256": sha256_file(best)}}
    assert again["checkpoints"] == {**trained["checkpoints"], "detector_checkpoint": None}


def _copy_test_images(rows: list[dict[str, str]], folder: Path) -> dict[str, str]:
    """Copies of the evaluated test images under ``folder``; copy path -> original path."""
    folder.mkdir()
    copies = {}
    for i, row in enumerate(rows):
        original = Path(row["path"])
        copy = folder / f"{i:03d}_{original.name}"
        shutil.copyfile(original, copy)
        copies[str(copy)] = row["path"]
    return copies


def test_predict_scores_equal_evaluate_scores(tmp_path, trained_run, evaluated):
    evaluated_rows = _rows(evaluated / "predictions.csv")
    assert len(evaluated_rows) == json.loads((evaluated / "results.json").read_text())["counts"]["images"]
    copies = _copy_test_images(evaluated_rows, tmp_path / "test-images")
    _, run = _predict(tmp_path, _best(trained_run("max")), str(tmp_path / "test-images"), "save_overlays=false")
    predicted = {copies[r["path"]]: r for r in _rows(run / "predictions.csv")}
    score_columns = [c for c in evaluated_rows[0] if c.startswith("score_")]
    for row in evaluated_rows:
        ours = predicted[row["path"]]
        np.testing.assert_allclose(
            [float(ours[c]) for c in score_columns], [float(row[c]) for c in score_columns], rtol=1e-5
        )
        assert ours["predicted_type"] == row["predicted_type"] and ours["anomalous"] == row["anomalous"]


@pytest.mark.parametrize("image_score", ["max", "mean"])
def test_onnx_export_and_engine_equal_predict(tmp_path, trained_run, image_score, mixed_images):
    ckpt = _best(trained_run(image_score))
    _, eager_run = _predict(tmp_path / "eager", ckpt, str(mixed_images), "save_overlays=false")
    _, onnx_run = _predict(tmp_path / "onnx", ckpt, str(mixed_images), "save_overlays=false", "inference=onnx_fp32")
    eager, via_engine = _rows(eager_run / "predictions.csv"), _rows(onnx_run / "predictions.csv")
    columns = [c for c in eager[0] if c.startswith("score_")]
    expected = np.array([[float(r[c]) for c in columns] for r in eager])
    np.testing.assert_allclose([[float(r[c]) for c in columns] for r in via_engine], expected, rtol=1e-4)
    pipeline, cfg = load_pipeline(ckpt)
    size = int(cfg.data.image_size)
    model = build_onnx(pipeline, cfg, "onnx", "float01", (size, size))  # what `mtfcdd.export` writes
    dataset = ImageFileDataset([Path(r["path"]) for r in eager], size)
    exported = run_session(make_session(model), torch.stack([dataset[i]["image"] for i in range(len(dataset))]))
    np.testing.assert_allclose(exported.scores.double().numpy(), expected, rtol=1e-4)
    assert exported.anomalous.int().tolist() == [int(r["anomalous"]) for r in eager]


@pytest.mark.parametrize("engine", ["onnx_int8", "openvino_int8"])
def test_predict_with_an_int8_engine_calibrates_on_the_input(tmp_path, trained_run, mixed_images, engine, capsys):
    summary, run = _predict(
        tmp_path,
        _best(trained_run("max")),
        str(mixed_images),
        "save_overlays=false",
        f"inference={engine}",
        "inference.calibration_images=4",
    )
    assert summary["images"] == 7 and len(_rows(run / "predictions.csv")) == 7
    printed = capsys.readouterr().out
    assert f"'engine': '{engine}'" in printed and "'calibration_images': 4" in printed
