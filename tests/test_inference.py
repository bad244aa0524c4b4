"""Inference engines give the network's heatmaps (up to their precision); the benchmark's measurements are sound.

Correctness only: nothing here depends on how fast anything runs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hydra_compose import compose_config
from omegaconf import OmegaConf
from torch import nn

from mtfcdd.benchmark import benchmark, format_table, saved_weights_mb, time_interleaved
from mtfcdd.config import CONFIG_DIR
from mtfcdd.inference import (
    ENGINES,
    FastTorchEngine,
    OnnxRuntimeEngine,
    build_engine,
    decision_thresholds,
    fold_batchnorm,
    heatmap_deviation,
    image_scores,
    load_images,
)
from mtfcdd.inference.calibration import recalibrate_batchnorm
from mtfcdd.inference.folding import FoldingError
from mtfcdd.inference.onnx_runtime import physical_cores
from mtfcdd.model.backbones import FrozenBackbone
from mtfcdd.model.network import MultiTypeFCDD

SIZE = 64


def _randomise_batchnorm(net: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so that folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


@pytest.fixture(scope="module")
def tiny_net() -> MultiTypeFCDD:
    torch.manual_seed(0)
    net = MultiTypeFCDD(FrozenBackbone("tf_efficientnet_lite0", pretrained=False), num_types=3, head_width=8)
    _randomise_batchnorm(net)
    return net.eval()


@pytest.fixture(scope="module")
def images(tiny_net) -> torch.Tensor:
    return load_images(4, SIZE, tiny_net.backbone.mean, tiny_net.backbone.std, source="skimage", offset=3)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_fold_batchnorm_folds_every_conv_bn_pair_and_keeps_values(tiny_net, images):
    folded, count = fold_batchnorm(tiny_net.backbone, images[:2])
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in tiny_net.backbone.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert _rel(folded(images), tiny_net.backbone(images)) < 1e-5
    # the original is untouched
    assert sum(isinstance(m, nn.BatchNorm2d) for m in tiny_net.backbone.modules()) == count


def test_fold_batchnorm_refuses_a_conv_whose_output_has_another_reader():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding the BN into conv would change the second reader

    model = Branchy().eval()
    _randomise_batchnorm(model)
    with pytest.raises(FoldingError):
        fold_batchnorm(model, torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize(
    "settings",
    [
        {"engine": "fast", "jit": True, "autocast": "none"},
        {"engine": "fast", "autocast": "none", "channels_last": False, "fold_bn": False},
        {"engine": "onnx_fp32", "upsample": "graph"},
    ],
    ids=lambda s: "-".join(f"{v}" for v in s.values()),
)
def test_fp32_engines_give_the_networks_heatmaps(tiny_net, images, settings):
    engine = build_engine(tiny_net, settings)
    with torch.no_grad():
        expected = tiny_net(images).heatmaps
    heatmaps = engine(images)
    assert heatmaps.shape == (4, 3, SIZE, SIZE) and heatmaps.dtype == torch.float32
    if settings["engine"] == "fast" and engine.autocast is not None:  # bf16-capable CPU: reduced precision
        assert _rel(heatmaps, expected) < 5e-2
    else:
        assert _rel(heatmaps, expected) < 1e-4
    # another batch size and input size work too (dynamic axes)
    odd = torch.nn.functional.interpolate(images[:1], size=(48, 80), mode="bilinear")
    with torch.no_grad():
        assert engine(odd).shape == (1, 3, 48, 80)


def test_fast_engine_folds_and_leaves_the_network_alone(tiny_net, images):
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    engine = FastTorchEngine(tiny_net, autocast="none")
    assert engine.folded > 0 and engine.describe()["precision"] == "fp32"
    engine(images)
    after = tiny_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


PAPER_SIZE = 64


@pytest.fixture(scope="module")
def raw_paper_net() -> MultiTypeFCDD:
    """The paper's architecture (Inception-ResNet-v2 cut) with random weights and a small head."""
    torch.manual_seed(0)
    return MultiTypeFCDD(FrozenBackbone("inception_resnet_v2", pretrained=False), num_types=4, head_width=8).eval()


@pytest.fixture(scope="module")
def paper_images(raw_paper_net) -> torch.Tensor:
    """Calibration images (first 8) and deviation images (last 8, other samples)."""
    mean, std = raw_paper_net.backbone.mean, raw_paper_net.backbone.std
    return torch.cat([
        load_images(8, PAPER_SIZE, mean, std, source="synthetic"),
        load_images(8, PAPER_SIZE, mean, std, source="synthetic", offset=10_000),
    ])


def test_recalibrated_batchnorm_makes_scores_depend_on_the_image(raw_paper_net, paper_images):
    # with random weights and the initial statistics, Inception-ResNet-v2 gives nearly one score for every image
    net = copy.deepcopy(raw_paper_net)
    images = paper_images[8:]

    def spread() -> float:
        with torch.no_grad():
            scores = image_scores(net(images).heatmaps)
        return float((scores.std(0) / scores.mean(0)).mean())

    before = spread()
    count = recalibrate_batchnorm(net, paper_images[:8], batch_size=4)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert before < 0.02 and spread() > 10 * before
    assert not any(m.training for m in net.backbone.modules())  # eval mode restored


def test_int8_engine_on_the_paper_backbone_stays_close_to_fp32(raw_paper_net, paper_images):
    net = copy.deepcopy(raw_paper_net)
    calibration, images = paper_images[:8], paper_images[8:]
    recalibrate_batchnorm(net, calibration)  # heatmaps that depend on the image, as with trained weights
    cfg = OmegaConf.load(CONFIG_DIR / "inference" / "onnx_int8.yaml")
    engine = build_engine(net, cfg, calibration=[calibration])
    assert isinstance(engine, OnnxRuntimeEngine) and engine.describe()["precision"] == "int8"
    weight_bytes = sum(p.numel() * 4 for p in net.parameters())
    assert len(engine.model_bytes) < 0.5 * weight_bytes  # int8 weights
    with torch.no_grad():
        reference = net(images).heatmaps
    heatmaps = engine(images)
    thresholds = decision_thresholds(net.image_threshold, image_scores(reference))
    deviation = heatmap_deviation(heatmaps, reference, thresholds)
    # Measured here: ~0.09 (random weights with measured BatchNorm statistics; per-tensor int8 activations, 7-bit
    # weights on CPUs without VNNI). Broken quantisation (shape arithmetic quantised, AVX2 saturation with 8-bit
    # weights) gives 0.3-0.7.
    assert deviation["rel_l2"] < 0.15, deviation
    assert deviation["decision_mismatches"] <= deviation["decisions"] // 4, deviation


def test_int8_engine_requires_calibration_images(tiny_net):
    with pytest.raises(ValueError, match="calibration images"):
        build_engine(tiny_net, {"engine": "onnx_int8"})


def test_unknown_engine_and_bad_settings_are_named(tiny_net):
    with pytest.raises(ValueError, match="inference.engine='tensorrt'"):
        build_engine(tiny_net, {"engine": "tensorrt"})
    with pytest.raises(ValueError, match="inference.autocast"):
        build_engine(tiny_net, {"engine": "fast", "autocast": "fp8"})
    with pytest.raises(ValueError, match="inference.upsample"):
        build_engine(tiny_net, {"engine": "onnx_fp32", "upsample": "numpy"})


@pytest.mark.parametrize("engine", ENGINES)
def test_inference_group_configs_build_their_engine(tiny_net, images, engine):
    cfg = OmegaConf.load(CONFIG_DIR / "inference" / f"{engine}.yaml")
    assert cfg.engine == engine
    if engine == "onnx_int8":
        cfg.calibration_images = 2
    built = build_engine(tiny_net, cfg, calibration=iter([images[:1], images[1:2]]))
    assert built.name == engine
    heatmaps = built(images)
    assert heatmaps.shape == (4, 3, SIZE, SIZE) and heatmaps.dtype == torch.float32
    if engine != "onnx_int8" and built.describe()["precision"] == "fp32":
        with torch.no_grad():
            assert _rel(heatmaps, tiny_net(images).heatmaps) < 1e-4


def test_onnx_sessions_use_the_physical_cores(tiny_net):
    engine = build_engine(tiny_net, {"engine": "onnx_fp32"})
    assert engine.describe()["threads"] == physical_cores() >= 1
    assert engine.session.get_session_options().intra_op_num_threads == physical_cores()


def test_deviation_and_thresholds():
    reference = torch.zeros(4, 2, 3, 3)
    reference[:, 0, 1, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    reference[:, 1, 0, 0] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # untrained (inf) -> fp32 median per type, midway between the middle scores; a calibrated threshold is kept
    thresholds = decision_thresholds(torch.tensor([float("inf"), 3.5]), image_scores(reference))
    torch.testing.assert_close(thresholds, torch.tensor([2.5, 3.5]))
    same = heatmap_deviation(reference.clone(), reference, thresholds)
    assert same["rel_l2"] == 0 and same["decisions_identical"] and same["decisions"] == 8
    moved = reference.clone()
    moved[0, 0, 1, 1] = 2.6  # image 0 crosses the type-0 threshold
    deviation = heatmap_deviation(moved, reference, thresholds)
    assert deviation["decision_mismatches"] == 1 and not deviation["decisions_identical"]
    assert deviation["rel_l2"] == pytest.approx(1.6 / float(torch.linalg.vector_norm(reference)))


def test_calibration_sources_give_normalised_images(tmp_path):
    for source in ("synthetic", "skimage"):
        batch = load_images(3, (40, 56), (0.5,) * 3, (0.5,) * 3, source=source)
        assert batch.shape == (3, 3, 40, 56) and batch.min() >= -1 and batch.max() <= 1
    first, other = load_images(2, 32, (0.0,) * 3, (1.0,) * 3), load_images(2, 32, (0.0,) * 3, (1.0,) * 3, offset=50)
    assert not torch.equal(first, other)
    from PIL import Image

    for index in range(3):
        Image.new("RGB", (20, 30), (index * 80, 10, 200)).save(tmp_path / f"img{index}.jpg")
    Image.new("L", (20, 30)).save(tmp_path / "img0_mask.png")
    batch = load_images(2, 16, (0.0,) * 3, (1.0,) * 3, source="dir", root=tmp_path)
    assert batch.shape == (2, 3, 16, 16)


def test_time_interleaved_measures_every_function_every_round():
    calls = []
    functions = {name: (lambda x, name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = time_interleaved(functions, torch.zeros(4, 3, 2, 2), rounds=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    assert calls[3:6] == ["a", "b", "c"] and calls[6:9] == ["b", "c", "a"]  # order rotates each round


def test_saved_weights_size(tiny_net):
    n_bytes = sum(t.numel() * t.element_size() for t in tiny_net.state_dict().values())
    assert n_bytes / 1e6 < saved_weights_mb(tiny_net) < n_bytes / 1e6 + 0.5


def test_benchmark_reports_every_engine_against_eager(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "model/backbone=efficientnet_lite0", "model.backbone.pretrained=false", "model.head_width=8",
            "data.image_size=64", "batch_sizes=[1,2]", "rounds=1", "warmup=0", "deviation_images=4",
            "calibration.images=4", "calibration.source=skimage", "gpu=false",
        ],
        config_name="benchmark",
    )
    results = benchmark(cfg)
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == list(ENGINES) and not results["failed"]
    assert results["network"]["parameters_total"] > results["network"]["parameters_trainable"] > 0
    assert rows["eager"]["b1"]["speedup_vs_eager"] == 1.0 and rows["eager"]["deviation"]["rel_l2"] == 0
    for name in ("fast", "onnx_fp32"):
        assert rows[name]["deviation"]["rel_l2"] < 1e-4 or rows[name].get("precision") != "fp32"
    for row in rows.values():
        assert row["b1"]["ms_per_image"] > 0 and row["b2"]["ms_per_image"] > 0
    table = format_table(results)
    assert "| cpu | onnx_int8 | int8 |" in table and "ms/img b2" in table


def test_backbone_autocast_keeps_float32_features_and_no_backbone_graph(tiny_net, images):
    net = copy.deepcopy(tiny_net)
    net.backbone_autocast = torch.bfloat16
    features = net.features(images)
    assert features.dtype == torch.float32 and not features.requires_grad
    out = net(images)
    with torch.no_grad():
        reference = tiny_net(images).heatmaps
    assert _rel(out.heatmaps.detach(), reference) < 5e-2
    out.scores.sum().backward()  # gradients reach the head only
    assert all(p.grad is not None for p in net.head.parameters())
    assert all(p.grad is None for p in net.backbone.parameters())
