"""The inference pipeline: one module from raw images to decisions, its calibration, and its ONNX export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TRAINED_MEAN, TRAINED_STD

from mtfcdd.export import build_onnx
from mtfcdd.inference.onnx_pipeline import OUTPUT_NAMES, run_session
from mtfcdd.inference.onnx_runtime import make_session
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.model.components.backbones import FrozenBackbone
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.pipeline import InferencePipeline
from mtfcdd.run.build import build_datamodule


def _tiny_pipeline(image_score: str = "max", type_rule: str = "calibrated") -> InferencePipeline:
    torch.manual_seed(0)
    backbone = FrozenBackbone("tf_efficientnet_lite0", out_index=2, pretrained=False)
    return InferencePipeline(
        MultiTypeFCDD(backbone, num_types=3, head_width=8), TRAINED_MEAN, TRAINED_STD, image_score, type_rule
    ).eval()


def test_uint8_and_unit_range_inputs_give_the_same_outputs():
    pipeline = _tiny_pipeline()
    raw = torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = pipeline(raw), pipeline(raw.float() / 255)
    for name, x, y in zip(OUTPUT_NAMES, a, b):
        assert torch.equal(x, y), name
    expected = (raw.float() / 255 - torch.tensor(TRAINED_MEAN).view(1, 3, 1, 1)) / torch.tensor(TRAINED_STD).view(
        1, 3, 1, 1
    )
    assert torch.allclose(pipeline.normalise(raw), expected)


@pytest.mark.parametrize("image_score", ["max", "mean"])
def test_every_output_follows_from_the_heatmaps_and_the_buffers(image_score):
    pipeline = _tiny_pipeline(image_score)
    images = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        probe = pipeline(images)
        h = probe.heatmaps.flatten(2)
        thresholds = torch.quantile(h.amax(2) if image_score == "max" else h.mean(2), 0.5, dim=0)
        pipeline.set_calibration(h.amin(dim=(0, 2)), h.amax(dim=(0, 2)) * 0.5, thresholds)
        scale = torch.tensor([0.5, 2.0, 1.0])
        any_scores = ((h.amax(2) if image_score == "max" else h.mean(2)) / scale).amax(dim=1)
        pipeline.set_any_defect(scale, float(any_scores.median()))
        out = pipeline(images)
    assert out.heatmaps.shape == (4, 3, 40, 40) and out.maps.shape == (4, 3, 5, 5)
    flat = out.heatmaps.flatten(2)
    assert torch.allclose(out.scores, flat.amax(2) if image_score == "max" else flat.mean(2))
    span = (pipeline.heat_max - pipeline.heat_min).view(1, -1, 1, 1)
    assert torch.allclose(out.calibrated, ((out.heatmaps - pipeline.heat_min.view(1, -1, 1, 1)) / span).clamp(0, 1))
    assert torch.equal(out.decisions, out.scores >= thresholds)
    assert torch.equal(out.anomaly_map, (out.heatmaps / scale.view(1, -1, 1, 1)).amax(dim=1))
    assert torch.equal(out.anomaly_score, (out.scores / scale).amax(dim=1))
    if image_score == "max":
        assert torch.equal(out.anomaly_score, out.anomaly_map.flatten(1).amax(dim=1))
    assert torch.equal(out.anomalous, out.anomaly_score >= float(any_scores.median()))
    assert 0 < int(out.anomalous.sum()) < 4
    assert torch.equal(out.predicted_type, (out.scores / thresholds).argmax(dim=1))


def test_the_predicted_type_rule():
    raw_scores = torch.tensor([[2.0, 1.0, 0.5]])
    calibrated = _tiny_pipeline(type_rule="calibrated")
    calibrated.set_calibration(torch.zeros(3), torch.ones(3), torch.tensor([10.0, 0.5, math.inf]))
    # calibrated: 2/10 < 1/0.5; a type without a threshold keeps its raw score (0.5)
    assert torch.allclose(calibrated.type_scores(raw_scores), torch.tensor([[0.2, 2.0, 0.5]]))
    raw = _tiny_pipeline(type_rule="raw")
    assert raw.type_scores(raw_scores).tolist() == raw_scores.tolist()
    with pytest.raises(ValueError, match="type_rule"):
        _tiny_pipeline(type_rule="vote")


def test_the_checkpoint_carries_the_normalisation_and_score_it_was_trained_with(trained_run):
    pipeline, cfg = load_pipeline(trained_run("mean") / "checkpoints" / "last.ckpt")
    assert pipeline.pixel_mean.flatten().tolist() == pytest.approx(TRAINED_MEAN)
    assert pipeline.pixel_std.flatten().tolist() == pytest.approx(TRAINED_STD)
    assert pipeline.image_score == "mean" and cfg.model.evaluation.image_score == "mean"


def _f1_at(scores: np.ndarray, positive: np.ndarray, threshold: float) -> float:
    decided = scores >= threshold
    tp = np.sum(decided & positive)
    return 2 * tp / (2 * tp + np.sum(decided & ~positive) + np.sum(~decided & positive))


def test_validation_calibrates_each_type_from_its_own_channel(trained_run):
    """Recompute the stored heat range and thresholds independently from the validation images: a permutation of
    the buffers across types, or values taken from another channel, fails here."""
    pipeline, cfg = load_pipeline(trained_run("max") / "checkpoints" / "last.ckpt")
    val = build_datamodule(cfg).val_dataset
    with torch.no_grad():
        outputs = [
            pipeline(torch.stack([val[i]["image"] for i in range(start, min(start + 8, len(val)))]))
            for start in range(0, len(val), 8)
        ]
    heatmaps = torch.cat([o.heatmaps for o in outputs])
    scores = torch.cat([o.scores for o in outputs]).double().numpy()
    types = np.array([r.type_index for r in val.records])
    low, high = heatmaps.amin(dim=(0, 2, 3)), heatmaps.amax(dim=(0, 2, 3))
    assert torch.allclose(pipeline.heat_min, low, rtol=1e-5, atol=1e-7)
    assert torch.allclose(pipeline.heat_max, high, rtol=1e-5, atol=1e-7)
    assert len(set(np.round(high.numpy(), 6))) == len(high)  # distinct per channel: a permutation would show
    finite = 0
    for k, threshold in enumerate(pipeline.image_threshold.tolist()):
        positive = types == k  # the typed protocol: type k against every other image
        if not positive.any():
            assert math.isinf(threshold)
            continue
        finite += 1
        # one of channel k's own scores (up to float reassociation: other batches, memory format) ...
        nearest = scores[np.argmin(np.abs(scores[:, k] - threshold)), k]
        assert abs(nearest - threshold) <= 1e-5 * abs(threshold)
        # ... the one where "score >= threshold" reaches F1-max for type k
        best = max(_f1_at(scores[:, k], positive, t) for t in scores[:, k])
        assert _f1_at(scores[:, k], positive, nearest) == pytest.approx(best, abs=1e-9)
    assert finite >= 2
    # any-defect view (trained with any_defect_quantile=0.9): each channel divided by the 0.9 quantile of its normal
    # images' scores, then F1-max over every image with positives = any defect
    normal = scores[types < 0]
    scale = np.quantile(normal, 0.9, axis=0)
    assert cfg.model.evaluation.any_defect_quantile == 0.9
    assert pipeline.anomaly_scale.double().numpy() == pytest.approx(scale, rel=1e-5)
    assert len(set(np.round(scale, 6))) == len(scale) and not np.allclose(scale, 1.0)
    any_scores = (scores / scale).max(axis=1)
    threshold = float(pipeline.anomaly_threshold)
    best = max(_f1_at(any_scores, types >= 0, t) for t in any_scores)
    nearest = any_scores[np.argmin(np.abs(any_scores - threshold))]
    assert abs(nearest - threshold) <= 1e-5 * abs(threshold)
    assert _f1_at(any_scores, types >= 0, nearest) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("image_score", ["max", "mean"])
@pytest.mark.parametrize("input_format", ["uint8", "float01"])
def test_onnx_export_reproduces_the_pipeline(trained_run, image_score, input_format):
    pipeline, cfg = load_pipeline(trained_run(image_score) / "checkpoints" / "last.ckpt")
    size = int(cfg.data.image_size)
    model = build_onnx(pipeline, cfg, "onnx", input_format, (size, size))
    test = build_datamodule(cfg).test_dataset
    images = torch.stack([test[i]["image"] for i in range(6)])
    inputs = (images * 255).round().to(torch.uint8) if input_format == "uint8" else images
    got = run_session(make_session(model), inputs)
    with torch.no_grad():
        want = pipeline(inputs)
    for name, ours, theirs in zip(OUTPUT_NAMES, got, want):
        if theirs.is_floating_point():
            assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max())), name
        else:
            assert torch.equal(ours, theirs), name
    import onnx

    meta = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    assert meta["image_score"] == image_score and json.loads(meta["outputs"]).keys() == set(OUTPUT_NAMES)
    assert json.loads(meta["mean"]) == pytest.approx(TRAINED_MEAN)
