"""ONNX export of a checkpoint: self-contained graph, parity with PyTorch, metadata, atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omegaconf import OmegaConf

from helpers.hydra_compose import compose_config
from mtfcdd.core.defect_types import REALIAD_VOCABULARY
from mtfcdd.export import ExportError, build_onnx, export
from mtfcdd.inference.onnx_pipeline import OUTPUT_NAMES
from mtfcdd.model.base import CONFIG_KEY
from mtfcdd.model.build import build_pipeline
from mtfcdd.model.checkpoint import CheckpointError, load_pipeline
from mtfcdd.model.components.config import type_names

SIZE = 64
PROJECT = Path(__file__).resolve().parents[1]


def make_checkpoint(tmp_path: Path, overrides: list[str]) -> Path:
    """A checkpoint in mtfcdd.train's format, built by hand: 'pipeline.'-prefixed state dict + the resolved config."""
    cfg = compose_config(tmp_path, ["data=synthetic", f"data.image_size={SIZE}", *overrides])
    torch.manual_seed(0)
    pipeline = build_pipeline(cfg)
    with torch.no_grad():
        for module in pipeline.modules():  # non-trivial BatchNorm statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        m = pipeline.num_types
        thresholds = torch.linspace(0.01, 0.5, m)
        thresholds[-1] = float("inf")  # one type without a calibrated threshold
        pipeline.set_calibration(torch.linspace(0.0, 0.01, m), torch.linspace(0.5, 2.0, m), thresholds)
        pipeline.set_any_defect(torch.linspace(0.5, 2.0, m), 0.1)
    path = tmp_path / "model.ckpt"
    torch.save(
        {
            "state_dict": {f"pipeline.{k}": v for k, v in pipeline.state_dict().items()},
            CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    return make_checkpoint(
        tmp, ["model/backbone=efficientnet_lite0", "model.backbone.pretrained=false", "model.head_width=8"]
    )


def export_config(tmp_path: Path, checkpoint: Path, *overrides: str):
    return compose_config(tmp_path, [f"ckpt_path={checkpoint}", *overrides], config_name="export")


@pytest.mark.parametrize("input_format", ["uint8", "float01"])
def test_exported_model_matches_pytorch_and_needs_nothing_else(tmp_path, checkpoint, input_format):
    output = tmp_path / "out" / "model.onnx"
    written = export(export_config(tmp_path, checkpoint, f"output={output}", f"input_format={input_format}"))
    assert written == output and output.is_file()
    assert [p.name for p in output.parent.iterdir()] == ["model.onnx"]  # no temp file left behind

    pipeline, cfg = load_pipeline(checkpoint)
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    raw = torch.randint(0, 256, (3, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)  # batch 3: dynamic
    feed = raw if input_format == "uint8" else raw.float() / 255
    outputs = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"images": feed.numpy()})))

    # the plain network on the same images, normalised and post-processed by hand
    mean, std = pipeline.pixel_mean, pipeline.pixel_std
    with torch.no_grad():
        out = pipeline.net((raw.float() / 255 - mean) / std)
    expected = out.heatmaps.numpy()
    np.testing.assert_allclose(outputs["heatmaps"], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    low, high = pipeline.heat_min.view(1, -1, 1, 1), pipeline.heat_max.view(1, -1, 1, 1)
    calibrated = ((out.heatmaps - low) / (high - low)).clamp(0, 1).numpy()
    np.testing.assert_allclose(outputs["calibrated"], calibrated, rtol=1e-4, atol=1e-4)
    expected_scores = out.heatmaps.flatten(2).amax(2)
    np.testing.assert_allclose(outputs["scores"], expected_scores.numpy(), rtol=1e-4)
    decisions = (expected_scores >= pipeline.image_threshold).numpy()
    np.testing.assert_array_equal(outputs["decisions"], decisions)
    anomaly_score = (expected_scores / pipeline.anomaly_scale).amax(dim=1)
    np.testing.assert_allclose(outputs["anomaly_score"], anomaly_score.numpy(), rtol=1e-4)
    np.testing.assert_array_equal(outputs["anomalous"], (anomaly_score >= pipeline.anomaly_threshold).numpy())
    assert not outputs["decisions"][:, -1].any()  # inf threshold: never decided

    model = onnx.load(str(output))
    assert model.graph.input[0].type.tensor_type.elem_type == (
        onnx.TensorProto.UINT8 if input_format == "uint8" else onnx.TensorProto.FLOAT
    )
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["type_names"]) == type_names(cfg) == list(REALIAD_VOCABULARY.names)
    assert json.loads(meta["type_colours"]) == [list(c) for c in REALIAD_VOCABULARY.colours]
    assert json.loads(meta["input_size"]) == [SIZE, SIZE] and meta["input_format"] == input_format
    np.testing.assert_allclose(json.loads(meta["mean"]), mean.flatten().numpy(), rtol=1e-6)
    np.testing.assert_allclose(json.loads(meta["std"]), std.flatten().numpy(), rtol=1e-6)
    np.testing.assert_allclose(json.loads(meta["heat_max"]), pipeline.heat_max.numpy(), rtol=1e-6)
    thresholds = json.loads(meta["image_threshold"])
    assert thresholds[-1] is None and thresholds[0] == pytest.approx(0.01)
    assert meta["checkpoint"] == checkpoint.name and len(meta["checkpoint_sha256"]) == 64


def test_failed_parity_check_writes_nothing(tmp_path, checkpoint):
    output = tmp_path / "out" / "model.onnx"
    cfg = export_config(tmp_path, checkpoint, f"output={output}", "verify.rtol=0")
    with pytest.raises(ExportError, match="nothing was written"):
        export(cfg)
    assert not output.exists() and (not output.parent.exists() or not any(output.parent.iterdir()))


def test_int8_export_of_the_paper_backbone(tmp_path):
    ckpt = make_checkpoint(
        tmp_path, ["model/backbone=inception_resnet_v2", "model.backbone.pretrained=false", "model.head_width=8"]
    )
    output = tmp_path / "model.int8.onnx"
    export(export_config(tmp_path, ckpt, "format=onnx_int8", f"output={output}", "int8.calibration_images=4"))
    pipeline, _ = load_pipeline(ckpt)
    assert output.stat().st_size < 0.5 * sum(p.numel() * 4 for p in pipeline.parameters())
    model = onnx.load(str(output))
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "int8"
    ops = {node.op_type for node in model.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_export_command_line(tmp_path, checkpoint):
    output = tmp_path / "cli.onnx"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.export",
            f"ckpt_path={checkpoint}",
            f"output={output}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert output.is_file() and "wrote" in proc.stdout


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        export(export_config(tmp_path, tmp_path / "nope.ckpt"))


def test_export_rejects_unknown_input_format(checkpoint):
    pipeline, cfg = load_pipeline(checkpoint)
    with pytest.raises(ValueError, match="input_format"):
        build_onnx(pipeline, cfg, "onnx", "bgr")
