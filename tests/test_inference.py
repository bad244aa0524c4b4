"""Inference engines give the pipeline's outputs (up to their precision); the benchmark's measurements are sound.

Correctness only: nothing here depends on how fast anything runs.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from helpers.hydra_compose import compose_config
from mtfcdd.benchmark import benchmark, format_benchmark_table
from mtfcdd.inference import (
    ENGINES,
    FastTorchEngine,
    OnnxRuntimeEngine,
    build_engine,
    fold_batchnorm,
    load_images,
    median_thresholds,
    output_deviation,
)
from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.cpu import physical_cores
from mtfcdd.inference.engines import CALIBRATED_ENGINES, inference_config
from mtfcdd.inference.folding import FoldingError
from mtfcdd.measure.subject import recalibrate_batchnorm
from mtfcdd.measure.timing import saved_weights_mb, time_interleaved
from mtfcdd.model.components.backbones import FrozenBackbone
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.pipeline import InferencePipeline, PipelineOutput

SIZE = 64
BF16_REL_L2 = 5e-2
"""Stated bound of a bf16 engine's heatmap error (relative L2) against float32."""


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


def _pipeline(net: MultiTypeFCDD) -> InferencePipeline:
    return InferencePipeline(net, net.backbone.mean, net.backbone.std).eval()


@pytest.fixture(scope="module")
def tiny_pipeline() -> InferencePipeline:
    torch.manual_seed(0)
    net = MultiTypeFCDD(FrozenBackbone("tf_efficientnet_lite0", pretrained=False), num_types=3, head_width=8)
    _randomise_batchnorm(net)
    return _pipeline(net)


@pytest.fixture(scope="module")
def tiny_net(tiny_pipeline) -> MultiTypeFCDD:
    return tiny_pipeline.net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Raw RGB images in [0, 1]."""
    return load_images(4, SIZE, source="skimage", offset=3)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _reference(pipeline: InferencePipeline, images: torch.Tensor) -> PipelineOutput:
    with torch.no_grad():
        return pipeline(images)


def test_fold_batchnorm_folds_every_conv_bn_pair_and_keeps_values(tiny_pipeline, tiny_net, images):
    images = tiny_pipeline.normalise(images)
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
        {"engine": "fast", "autocast": "none"},
        {"engine": "fast", "autocast": "none", "channels_last": False, "fold_bn": False},
        {"engine": "onnx_fp32"},
    ],
    ids=lambda s: "-".join(f"{v}" for v in s.values()),
)
def test_fp32_engines_give_the_pipelines_outputs(tiny_pipeline, images, settings):
    engine = build_engine(tiny_pipeline, settings)
    assert engine.describe()["precision"] == "fp32"
    expected = _reference(tiny_pipeline, images)
    out = engine(images)
    assert isinstance(out, PipelineOutput) and out.heatmaps.shape == (4, 3, SIZE, SIZE)
    assert out.heatmaps.dtype == torch.float32
    assert _rel(out.heatmaps, expected.heatmaps) < 1e-5 and _rel(out.scores, expected.scores) < 1e-5
    assert torch.equal(out.predicted_type, expected.predicted_type)
    # another batch size and input size work too (dynamic axes)
    odd = torch.nn.functional.interpolate(images[:1], size=(48, 80), mode="bilinear")
    assert engine(odd).heatmaps.shape == (1, 3, 48, 80)


def test_bf16_engine_stays_within_its_stated_bound(tiny_pipeline, images):
    engine = build_engine(tiny_pipeline, {"engine": "fast", "autocast": "bf16"})
    assert engine.describe()["precision"] == "bf16"
    out, expected = engine(images), _reference(tiny_pipeline, images)
    assert 0 < _rel(out.heatmaps, expected.heatmaps) < BF16_REL_L2  # reduced precision, not float32


def test_fast_engine_folds_and_leaves_the_pipeline_alone(tiny_pipeline, images):
    before = {k: v.clone() for k, v in tiny_pipeline.state_dict().items()}
    engine = FastTorchEngine(tiny_pipeline)
    assert engine.folded > 0 and engine.describe()["precision"] == "fp32"  # float32 unless asked
    engine(images)
    after = tiny_pipeline.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


PAPER_SIZE = 64


@pytest.fixture(scope="module")
def raw_paper_pipeline() -> InferencePipeline:
    """The paper's architecture (Inception-ResNet-v2 cut) with random weights and a small head."""
    torch.manual_seed(0)
    return _pipeline(MultiTypeFCDD(FrozenBackbone("inception_resnet_v2", pretrained=False), num_types=4, head_width=8))


@pytest.fixture(scope="module")
def paper_images() -> torch.Tensor:
    """Raw calibration images (first 8) and deviation images (last 8, other samples)."""
    return torch.cat(
        [load_images(8, PAPER_SIZE, source="synthetic"), load_images(8, PAPER_SIZE, source="synthetic", offset=10_000)]
    )


def test_recalibrated_batchnorm_makes_scores_depend_on_the_image(raw_paper_pipeline, paper_images):
    # with random weights and the initial statistics, Inception-ResNet-v2 gives nearly one score for every image
    pipeline = copy.deepcopy(raw_paper_pipeline)
    images = paper_images[8:]

    def spread() -> float:
        scores = _reference(pipeline, images).scores
        return float((scores.std(0) / scores.mean(0)).mean())

    before = spread()
    count = recalibrate_batchnorm(pipeline.net, pipeline.normalise(paper_images[:8]), batch_size=4)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in pipeline.modules())
    assert before < 0.02 and spread() > 10 * before
    assert not any(m.training for m in pipeline.net.backbone.modules())  # eval mode restored


@pytest.mark.parametrize("engine", CALIBRATED_ENGINES)
def test_int8_engine_on_the_paper_backbone_stays_close_to_fp32(raw_paper_pipeline, paper_images, engine):
    pipeline = copy.deepcopy(raw_paper_pipeline)
    calibration, images = paper_images[:8], paper_images[8:]
    recalibrate_batchnorm(pipeline.net, pipeline.normalise(calibration))  # image-dependent heatmaps, as if trained
    thresholds = median_thresholds(pipeline.image_threshold, _reference(pipeline, images).scores)
    pipeline.set_calibration(pipeline.heat_min, pipeline.heat_max, thresholds)
    reference = _reference(pipeline, images)
    engine = build_engine(pipeline, inference_config(engine), calibration=[calibration])
    assert isinstance(engine, OnnxRuntimeEngine) and engine.describe()["precision"] == "int8"
    weight_bytes = sum(p.numel() * 4 for p in pipeline.parameters())
    assert len(engine.model_bytes) < 0.5 * weight_bytes  # int8 weights
    deviation = output_deviation(engine(images), reference)
    # Measured here: ~0.09 (random weights with measured BatchNorm statistics; per-tensor int8 activations, 7-bit
    # weights on CPUs without VNNI). Broken quantisation (shape arithmetic quantised, AVX2 saturation with 8-bit
    # weights) gives 0.3-0.7.
    assert deviation["rel_l2"] < 0.15, deviation
    assert deviation["decision_mismatches"] <= deviation["decisions"] // 4, deviation


def test_int8_engine_requires_calibration_images(tiny_pipeline):
    with pytest.raises(ValueError, match="calibration images"):
        build_engine(tiny_pipeline, {"engine": "onnx_int8"})


def test_unknown_engine_and_bad_settings_are_named(tiny_pipeline):
    with pytest.raises(ValueError, match="inference.engine='tensorrt'"):
        build_engine(tiny_pipeline, {"engine": "tensorrt"})
    with pytest.raises(ValueError, match="inference.autocast"):
        build_engine(tiny_pipeline, {"engine": "fast", "autocast": "fp8"})
    with pytest.raises(ValueError, match="unknown settings \\['upsample'\\]"):
        build_engine(tiny_pipeline, {"engine": "onnx_fp32", "upsample": "numpy"})


@pytest.mark.parametrize("engine", [pytest.param(e, marks=pytest.mark.slow) if e == "compiled" else e for e in ENGINES])
def test_inference_group_configs_build_their_engine(tiny_pipeline, images, engine):
    cfg = inference_config(engine)
    assert cfg.engine == engine
    if engine in CALIBRATED_ENGINES:
        cfg.calibration_images = 2
    built = build_engine(tiny_pipeline, cfg, calibration=iter([images[:1], images[1:2]]))
    assert built.name == engine
    out, expected = built(images), _reference(tiny_pipeline, images)
    assert out.heatmaps.shape == (4, 3, SIZE, SIZE) and out.heatmaps.dtype == torch.float32
    assert out.decisions.dtype == torch.bool and out.predicted_type.dtype == torch.int64
    precision = built.describe()["precision"]
    # the shipped configs: float32 unless int8
    assert precision == ("int8" if engine in CALIBRATED_ENGINES else "fp32")
    if engine != "openvino_int8":  # its values: on the paper backbone below (EfficientNet-Lite: docs/deployment.md)
        assert _rel(out.heatmaps, expected.heatmaps) < (0.15 if precision == "int8" else 1e-5)
    if precision == "fp32":
        assert torch.equal(out.predicted_type, expected.predicted_type)


def test_openvino_bf16_stays_within_its_stated_bound(tiny_pipeline, images):
    engine = build_engine(tiny_pipeline, {"engine": "openvino", "inference_precision": "bf16"})
    assert engine.describe()["precision"] == "bf16"
    assert 0 < _rel(engine(images).heatmaps, _reference(tiny_pipeline, images).heatmaps) < BF16_REL_L2


def test_float_head_leaves_the_head_unquantised(tiny_pipeline, images):
    import onnx

    built = {
        float_head: build_engine(
            tiny_pipeline,
            {"engine": "onnx_int8", "calibration_images": 2, "float_head": float_head},
            calibration=[images[:2]],
        )
        for float_head in (False, True)
    }

    def quantised_head_nodes(engine) -> int:
        graph = onnx.load_from_string(engine.model_bytes).graph
        return sum(n.op_type == "QuantizeLinear" and "/head" in n.name for n in graph.node)

    assert quantised_head_nodes(built[False]) > 0 and quantised_head_nodes(built[True]) == 0


@pytest.mark.parametrize("tier", ["avx512_vnni", "avx2"])
def test_auto_picks_the_first_engine_of_this_cpus_tier_that_builds(tiny_pipeline, images, monkeypatch, tier):
    import mtfcdd.inference.engines as engines

    monkeypatch.setattr(engines, "isa_level", lambda: tier)
    cfg = inference_config("auto")
    cfg.choices.avx512_vnni = ["onnx_int8", "fast"]
    cfg.choices.avx2 = ["openvino", "onnx_fp32"]
    if tier == "avx2":  # an optional runtime that is missing: the next choice builds
        monkeypatch.setitem(sys.modules, "openvino", None)
    built = build_engine(tiny_pipeline, cfg, calibration=[images[:2]])
    assert built.name == {"avx512_vnni": "onnx_int8", "avx2": "onnx_fp32"}[tier]
    if tier == "avx512_vnni":  # without training images to calibrate on, int8 is passed over
        assert build_engine(tiny_pipeline, cfg).name == "fast"
    cfg.choices[tier] = ["tensorrt"]
    with pytest.raises(ValueError, match=f"inference.choices.{tier}"):
        build_engine(tiny_pipeline, cfg)


_HASWELL = {"avx2": True, "fma3": True, "avx512_f": False, "avx512_bw": False, "avx512_vnni": False, "avx_vnni": False}
_ICELAKE = {**_HASWELL, "avx512_f": True, "avx512_bw": True, "avx512_vnni": True, "avx512_bf16": False}


@pytest.mark.parametrize(
    ("capabilities", "tier", "vnni", "bf16"),
    [
        (_HASWELL, "avx2", False, False),
        ({**_HASWELL, "avx_vnni": True}, "avx2", True, False),
        ({**_ICELAKE, "avx512_vnni": False}, "avx512", False, False),
        (_ICELAKE, "avx512_vnni", True, False),
        ({**_ICELAKE, "avx512_bf16": True}, "avx512_vnni", True, True),
    ],
)
def test_instruction_sets_come_from_cpuid_not_proc_cpuinfo(monkeypatch, capabilities, tier, vnni, bf16):
    # under an emulator (qemu-x86_64 -cpu Haswell) /proc/cpuinfo still lists the host's AVX-512 flags
    import mtfcdd.inference.cpu as cpu

    monkeypatch.setattr(cpu, "_cpuinfo_field", lambda key: "avx2 fma avx512f avx512bw avx512_vnni avx512_bf16")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert cpu.isa_level() == tier
    assert cpu.cpu_has_int8_dot_product() is vnni
    assert cpu.cpu_supports_bf16() is bf16
    assert ("avx512f" in cpu.instruction_sets()) is capabilities["avx512_f"]
    assert ("avx512f" in cpu.hidden_instruction_sets()) is not capabilities["avx512_f"]
    monkeypatch.delattr(torch.cpu, "get_capabilities")  # an older torch: /proc/cpuinfo
    assert cpu.isa_level() == "avx512_vnni" and cpu.cpu_supports_bf16()


def test_onnx_sessions_use_the_physical_cores(tiny_pipeline):
    engine = build_engine(tiny_pipeline, {"engine": "onnx_fp32"})
    assert engine.describe()["threads"] == physical_cores() >= 1
    assert engine.session.get_session_options().intra_op_num_threads == physical_cores()


def _outputs(heatmaps: torch.Tensor, thresholds: torch.Tensor) -> PipelineOutput:
    scores = heatmaps.flatten(2).amax(2)
    decisions = scores >= thresholds
    anomaly_score = scores.amax(1)
    return PipelineOutput(
        heatmaps,
        heatmaps,
        heatmaps,
        scores,
        decisions,
        heatmaps.amax(1),
        anomaly_score,
        decisions.any(1),
        scores.argmax(1),
    )


def test_deviation_and_thresholds():
    reference = torch.zeros(4, 2, 3, 3)
    reference[:, 0, 1, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    reference[:, 1, 0, 0] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # untrained (inf) -> fp32 median per type, midway between the middle scores; a calibrated threshold is kept
    thresholds = median_thresholds(torch.tensor([float("inf"), 3.5]), reference.flatten(2).amax(2))
    torch.testing.assert_close(thresholds, torch.tensor([2.5, 3.5]))
    expected = _outputs(reference, thresholds)
    same = output_deviation(_outputs(reference.clone(), thresholds), expected)
    assert same["rel_l2"] == 0 and same["decisions_identical"] and same["decisions"] == 8
    moved = reference.clone()
    moved[0, 0, 1, 1] = 2.6  # image 0 crosses the type-0 threshold
    deviation = output_deviation(_outputs(moved, thresholds), expected)
    assert deviation["decision_mismatches"] == 1 and not deviation["decisions_identical"]
    assert deviation["rel_l2"] == pytest.approx(1.6 / float(torch.linalg.vector_norm(reference)))


def test_calibration_sources_give_raw_images(tmp_path):
    for source in ("synthetic", "skimage"):
        batch = load_images(3, (40, 56), source=source)
        assert batch.shape == (3, 3, 40, 56) and batch.min() >= 0 and batch.max() <= 1 and batch.std() > 0.05
    first, other = load_images(2, 32), load_images(2, 32, offset=50)
    assert not torch.equal(first, other)
    from PIL import Image

    for index in range(3):
        Image.new("RGB", (20, 30), (index * 80, 10, 200)).save(tmp_path / f"img{index}.jpg")
    Image.new("L", (20, 30)).save(tmp_path / "img0_mask.png")
    batch = load_images(2, 16, source="dir", root=tmp_path)
    assert batch.shape == (2, 3, 16, 16)
    assert batch[1, 0].mean().item() == pytest.approx(80 / 255, abs=0.02)  # the second file, in [0, 1]


def test_calibration_images_come_from_the_first_source_at_hand():
    """One rule for every command: int8 engines and auto get ``calibration_images`` images from the data module,
    else from the images at hand, else from int8_images; the other engines get none."""

    class TrainingData:
        def int8_calibration_images(self, count):
            return [torch.full((3, 8, 8), float(index)) for index in range(count)]

    at_hand = torch.rand(5, 3, 8, 8)
    int8 = {"engine": "onnx_int8", "calibration_images": 3}
    assert int8_calibration_images({"engine": "onnx_fp32"}, TrainingData(), at_hand, 8) is None
    from_data = int8_calibration_images(int8, TrainingData(), at_hand)
    assert [image[0, 0, 0].item() for image in from_data] == [0.0, 1.0, 2.0]
    from_hand = int8_calibration_images({**int8, "engine": "openvino_int8"}, images=[at_hand[:2], at_hand[2]])
    assert torch.equal(torch.stack(from_hand), at_hand[:3])
    assert len(int8_calibration_images({"engine": "auto"}, images=at_hand)) == 5  # auto: the default count, capped
    settings = {"source": "skimage", "seed": 3, "root": None}
    loaded = int8_calibration_images(int8, images=iter([]), size=(8, 12), int8_images=settings)  # none at hand
    assert torch.equal(torch.stack(loaded), load_images(3, (8, 12), source="skimage", seed=3))
    with pytest.raises(ValueError, match="input size"):
        int8_calibration_images(int8)


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
            "model/backbone=efficientnet_lite0",
            "model.backbone.pretrained=false",
            "model.head_width=8",
            "data.image_size=64",
            "batch_sizes=[1,2]",
            "rounds=1",
            "warmup=0",
            "deviation_images=4",
            "calibration_images=4",
            "int8_images.source=skimage",
            "gpu=false",
        ],
        config_name="benchmark",
    )
    results = benchmark(cfg)
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == list(cfg.run) == ["eager", "fast", "onnx_fp32", "onnx_int8"] and not results["failed"]
    assert results["network"]["parameters_total"] > results["network"]["parameters_trainable"] > 0
    assert rows["eager"]["b1"]["speedup_vs_eager"] == 1.0 and rows["eager"]["deviation"]["rel_l2"] == 0
    for name in ("fast", "onnx_fp32"):
        assert rows[name]["precision"] == "fp32" and rows[name]["deviation"]["rel_l2"] < 1e-5
    assert rows["onnx_int8"]["precision"] == "int8" and rows["onnx_int8"]["deviation"]["rel_l2"] > 0
    for row in rows.values():
        assert row["b1"]["ms_per_image"] > 0 and row["b2"]["ms_per_image"] > 0
    table = format_benchmark_table(results)
    assert "| cpu | onnx_int8 | int8 |" in table and "ms/img b2" in table


def test_backbone_autocast_keeps_float32_features_and_no_backbone_graph(tiny_pipeline, images):
    net = copy.deepcopy(tiny_pipeline.net)
    net.backbone_autocast = torch.bfloat16
    inputs = tiny_pipeline.normalise(images)
    features = net.features(inputs)
    assert features.dtype == torch.float32 and not features.requires_grad
    out = net(inputs)
    assert _rel(out.heatmaps.detach(), _reference(tiny_pipeline, images).heatmaps) < BF16_REL_L2
    out.scores.sum().backward()  # gradients reach the head only
    assert all(p.grad is not None for p in net.head.parameters())
    assert all(p.grad is None for p in net.backbone.parameters())


@pytest.mark.slow
def test_benchmark_on_a_checkpoint_reports_test_metric_changes(tmp_path, trained_run):
    checkpoint = trained_run("max") / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        tmp_path,
        [
            f"ckpt_path={checkpoint}",
            "run=[eager,fast,onnx_int8,int8_6,int8_7bit]",
            "batch_sizes=[1,2]",
            "rounds=1",
            "warmup=0",
            "deviation_images=4",
            "engines.onnx_int8.calibration_images=4",
            "+engines.int8_6={engine: onnx_int8, calibration_images: 6}",
            "+engines.int8_7bit={engine: onnx_int8, reduce_range: true}",
            "gpu=false",
            "test.max_images=24",
        ],
        config_name="benchmark",
    )
    results = benchmark(cfg)
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == ["eager", "fast", "onnx_int8", "int8_6", "int8_7bit"] and not results["failed"]
    # each int8 engine calibrates on its own count of training images (a variant without one: the default)
    assert rows["onnx_int8"]["calibration_images"] == 4 and rows["int8_6"]["calibration_images"] == 6
    assert rows["int8_7bit"]["calibration_images"] > 6
    images = results["settings"]["test_images"]
    assert 0 < images <= 24
    eager, fast, int8 = rows["eager"]["test"], rows["fast"]["test"], rows["onnx_int8"]["test"]
    assert eager["images"] == fast["images"] == int8["images"] == images
    assert eager["decisions_changed"] == 0 and all(v == 0 or v != v for v in eager["change_points"].values())
    assert set(eager["change_points"]) == {"i_auroc", "p_auroc", "aupro", "type_accuracy"}
    assert 0 <= eager["metrics"]["i_auroc"] <= 100
    # fp32 engines decide exactly as eager (float reassociation only)
    assert fast["decisions_changed"] == 0 and fast["types_changed"] == 0 and rows["fast"]["within_bounds"]
    assert all(abs(v) < 1e-3 for v in fast["change_points"].values() if v == v)
    assert 0 <= int8["decisions_changed"] <= images
    table = format_benchmark_table(results)
    assert "d AUPRO" in table and "decisions changed" in table and "instruction sets:" in table
    assert results["best"]["engine"] in rows and results["best"]["batch"] == 2
