"""A detector's "whether" with the type channels' "which": a PatchCore checkpoint attached to a MultiTypeFCDD one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from omegaconf import OmegaConf

from helpers.hydra_compose import compose_config
from helpers.overrides import tiny_data
from mtfcdd.evaluate import evaluate
from mtfcdd.export import export
from mtfcdd.inference.engines import FastTorchEngine, OnnxRuntimeEngine
from mtfcdd.model.checkpoint import CheckpointError, load_pipeline, read_checkpoint
from mtfcdd.predict import predict
from mtfcdd.report.__main__ import build_report
from mtfcdd.train import run_task


@pytest.fixture(scope="module")
def patchcore_run(tmp_path_factory, tiny_realiad) -> Path:
    """A PatchCore run on the tiny set with the same debug settings (image size, test subset) as ``trained_run``."""
    tmp = tmp_path_factory.mktemp("patchcore")
    cfg = compose_config(
        tmp,
        [
            "model=patchcore",
            *tiny_data(tiny_realiad),
            "debug=limit",
            "logger=none",
            "data.num_workers=0",
            "trainer.limit_train_batches=null",
        ],
    )
    run_task(cfg)
    return Path(cfg.paths.output_dir)


@pytest.fixture(scope="module")
def checkpoints(trained_run, patchcore_run) -> tuple[Path, Path]:
    return trained_run("max") / "checkpoints" / "last.ckpt", patchcore_run / "checkpoints" / "last.ckpt"


def test_whether_comes_from_the_detector_and_which_from_the_types(checkpoints):
    types_ckpt, detector_ckpt = checkpoints
    combined, cfg = load_pipeline(types_ckpt, detector_ckpt=detector_ckpt)
    types, _ = load_pipeline(types_ckpt)
    detector, _ = load_pipeline(detector_ckpt)
    assert combined.model_name == "mtfcdd+patchcore" and cfg.model.get("name", "mtfcdd") == "mtfcdd"
    assert torch.isfinite(combined.detector.anomaly_threshold)  # the detector's own calibration travels with it
    size = int(cfg.data.image_size)
    images = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, alone, bank = combined(images), types(images), detector(images)
    assert out.maps.shape == alone.maps.shape  # the detector's channel stays inside the pipeline
    for field in ("heatmaps", "calibrated", "scores", "decisions", "predicted_type"):
        assert torch.equal(getattr(out, field), getattr(alone, field)), field
    for field in ("anomaly_map", "anomaly_score", "anomalous"):
        assert torch.equal(getattr(out, field), getattr(bank, field)), field
    assert not torch.equal(out.anomaly_score, alone.anomaly_score)
    # the engines run the same combination (BatchNorm folded in both networks' copies; both in one ONNX graph)
    fast = FastTorchEngine(combined)(images)
    assert torch.allclose(fast.anomaly_score, out.anomaly_score, rtol=1e-4)
    assert torch.equal(fast.predicted_type, out.predicted_type)
    exported = OnnxRuntimeEngine(combined, example_size=size)(images.float() / 255.0)
    assert torch.allclose(exported.anomaly_score, out.anomaly_score, rtol=1e-4)
    assert torch.allclose(exported.scores, out.scores, rtol=1e-4, atol=1e-6)
    assert torch.equal(exported.anomalous, out.anomalous)
    # the state dict carries both networks: a copy loads with weights only
    state = combined.state_dict()
    assert any(key.startswith("detector.net.memory_bank") for key in state)


def test_a_detector_must_be_one_channel(checkpoints):
    types_ckpt, _ = checkpoints
    with pytest.raises(CheckpointError, match="one-channel"):
        load_pipeline(types_ckpt, detector_ckpt=types_ckpt)


def test_evaluate_reports_the_combination_with_both_sources_metrics(tmp_path, checkpoints, patchcore_run):
    types_ckpt, detector_ckpt = checkpoints
    cfg = compose_config(
        tmp_path, [f"ckpt_path={types_ckpt}", f"detector_ckpt={detector_ckpt}", "trainer=cpu"], config_name="evaluate"
    )
    results = evaluate(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert written["model"] == results["model"] == "mtfcdd+patchcore"
    assert "MultiTypeFCDD + PatchCore" in (Path(cfg.paths.output_dir) / "results.md").read_text()
    # the same test images as both training runs: any-defect metrics are PatchCore's, type metrics MultiTypeFCDD's
    bank = json.loads((patchcore_run / "results.json").read_text())
    types = json.loads((types_ckpt.parents[1] / "results.json").read_text())
    assert written["counts"] == bank["counts"] == types["counts"]
    assert bank["model"] == "patchcore" and types["model"] == "mtfcdd"
    for name, value in bank["any_defect"].items():
        assert written["any_defect"][name] == pytest.approx(value, rel=1e-6, nan_ok=True), name
    for name, value in types["mean"].items():
        assert written["mean"][name] == pytest.approx(value, rel=1e-6, nan_ok=True), name
    assert written["type_classification"] == types["type_classification"]
    # one report over the three runs: the combination is its own row, with PatchCore's "whether" and a type accuracy
    sweep = tmp_path / "sweep"
    for name, run, config in (
        ("0_mtfcdd", types_ckpt.parents[1], read_checkpoint(types_ckpt)[1]),
        ("1_patchcore", patchcore_run, read_checkpoint(detector_ckpt)[1]),
        ("2_combined", Path(cfg.paths.output_dir), cfg),
    ):
        (sweep / name / ".hydra").mkdir(parents=True)  # what Hydra saves for a command-line run
        OmegaConf.save(config, sweep / name / ".hydra" / "config.yaml")
        shutil.copy(run / "results.json", sweep / name / "results.json")
    report = build_report([sweep], sweep, use_wandb="off")
    rows = {row["model"]: row for row in report["rows"]}
    assert set(rows) == {"mtfcdd", "patchcore", "mtfcdd+patchcore"}
    combined = rows["mtfcdd+patchcore"]
    assert combined["mode"] == "multi" and combined["backbone"] == "tf_efficientnet_lite0"
    assert combined["type_accuracy"] == rows["mtfcdd"]["type_accuracy"] and rows["patchcore"]["type_accuracy"] is None
    assert combined["any_defect/i_auroc"] == rows["patchcore"]["any_defect/i_auroc"]


def test_export_writes_the_combination_with_its_metadata(tmp_path, checkpoints):
    types_ckpt, detector_ckpt = checkpoints
    output = tmp_path / "combined.onnx"
    cfg = compose_config(
        tmp_path,
        [f"ckpt_path={types_ckpt}", f"detector_ckpt={detector_ckpt}", f"output={output}"],
        config_name="export",
    )
    export(cfg)  # its parity check against the PyTorch pipeline passed, or nothing would be written
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert meta["model"] == "MultiTypeFCDD + PatchCore" and json.loads(meta["detector"])["model"] == "PatchCore"
    detector, _ = load_pipeline(detector_ckpt)
    assert json.loads(meta["anomaly_threshold"]) == pytest.approx(float(detector.anomaly_threshold))
    assert "detector" in json.loads(meta["outputs"])["anomaly_score"]


def test_predict_answers_whether_with_the_detector_and_which_with_the_types(tmp_path, checkpoints, tiny_realiad):
    types_ckpt, detector_ckpt = checkpoints
    images = sorted(tiny_realiad.rglob("*.jpg"))[:5]
    folder = tmp_path / "parts"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)

    def rows(name: str, *overrides: str) -> list[dict]:
        cfg = compose_config(
            tmp_path / name,
            [f"input={folder}", "num_workers=0", "trainer=cpu", "save_overlays=false", *overrides],
            config_name="predict",
        )
        predict(cfg)
        lines = (Path(cfg.paths.output_dir) / "predictions.jsonl").read_text().splitlines()
        return sorted((json.loads(line) for line in lines), key=lambda row: row["path"])

    combined = rows("combined", f"ckpt_path={types_ckpt}", f"detector_ckpt={detector_ckpt}")
    types, bank = rows("types", f"ckpt_path={types_ckpt}"), rows("bank", f"ckpt_path={detector_ckpt}")
    assert len(combined) == len(images) == len(types) == len(bank)
    for row, alone, detected in zip(combined, types, bank):
        assert row["anomaly_score"] == detected["anomaly_score"] and row["anomalous"] == detected["anomalous"]
        assert row.keys() == alone.keys()
        for key, value in alone.items():  # the type scores to float32 rounding (a slice of the maps is upsampled)
            if not key.startswith("anomal"):
                assert row[key] == (pytest.approx(value, rel=1e-6) if key.startswith("score_") else value), key
