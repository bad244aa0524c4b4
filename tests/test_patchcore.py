"""PatchCore in the framework: greedy coreset against brute force, the bank in checkpoints, a real tiny run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from helpers.hydra_compose import compose_config
from mtfcdd.core.config import ConfigError
from mtfcdd.model.build import build_module
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.model.components.backbones import FrozenBackbone
from mtfcdd.model.patchcore.coreset import PatchReservoir, coreset_size, greedy_coreset
from mtfcdd.model.patchcore.network import PatchCoreNet
from mtfcdd.train import run_task

TINY = [
    "model=patchcore",
    "data=synthetic",
    "data.synthetic.preset=tiny",
    "debug=default",
    "logger=csv",
    "data.num_workers=0",
    "trainer.limit_train_batches=null",
]


def naive_greedy(points: torch.Tensor, k: int, start: int) -> list[int]:
    """Greedy k-center written from its definition: the point whose nearest chosen centre is farthest, each step."""
    chosen = [start]
    while len(chosen) < k:
        distances = torch.cdist(points, points[chosen]).amin(dim=1)
        chosen.append(int(torch.argmax(distances)))
    return chosen


def covering_radius(points: torch.Tensor, centres: list[int]) -> float:
    return float(torch.cdist(points, points[centres]).amin(dim=1).max())


@pytest.mark.parametrize("seed", range(5))
def test_greedy_coreset_matches_the_definition_and_is_within_twice_the_optimal_radius(seed):
    points = torch.randn(12, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    k = 3
    greedy = greedy_coreset(points, k, start=seed).tolist()
    assert greedy == naive_greedy(points, k, start=seed)
    optimal = min(covering_radius(points, list(c)) for c in itertools.combinations(range(len(points)), k))
    radius = covering_radius(points, greedy)
    assert optimal <= radius <= 2 * optimal + 1e-12


def test_coreset_size_and_reservoir_bounds():
    assert coreset_size(1000, 0.02) == 20 and coreset_size(10, 0.001) == 1 and coreset_size(3, 1.0) == 3
    reservoir = PatchReservoir(capacity=50, seed=0)
    rows = torch.arange(400, dtype=torch.float32).view(200, 2)
    for part in rows.split(7):
        reservoir.add(part)
        assert reservoir.held <= 1.25 * 50 + 7
    kept = reservoir.features()
    assert kept.shape == (50, 2) and reservoir.seen == 200
    assert torch.all(kept[1:, 0] > kept[:-1, 0])  # distinct rows of the stream, in stream order
    assert torch.isin(kept[:, 0], rows[:, 0]).all() and kept[:, 0].max() > 200  # sampled over the whole stream


def small_net() -> PatchCoreNet:
    torch.manual_seed(0)
    backbone = FrozenBackbone("tf_efficientnet_lite0", out_index=3, pretrained=False, extra_indices=[2])
    return PatchCoreNet(backbone).eval()


def test_bank_round_trip_with_weights_only_reproduces_the_maps(tmp_path):
    net = small_net()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RuntimeError, match="memory bank is empty"):
        net(images)
    features = net.patch_features(images)
    assert features.shape == (2, 40 + 112, 8, 8)
    net.set_memory_bank(features[0].flatten(1).T[::3])
    out = net(images)
    assert out.maps.shape == (2, 1, 8, 8) and out.heatmaps.shape == (2, 1, 64, 64)
    flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).double()
    exact = torch.cdist(flat, net.memory_bank.double(), compute_mode="donot_use_mm_for_euclid_dist").amin(dim=1)
    scale = float(flat.norm(dim=1).max())
    assert torch.allclose(out.maps.flatten().double(), exact, atol=1e-3 * scale)
    assert exact[:64:3].max() == 0 and exact[64:].min() > 0  # the bank rows are image 0's every third patch
    torch.save(net.state_dict(), tmp_path / "net.pt")
    loaded = small_net()
    loaded.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    assert loaded.memory_bank.shape == net.memory_bank.shape
    assert torch.equal(loaded(images).maps, out.maps)


def test_a_fast_run_on_the_tiny_set_reports_any_defect_metrics_without_type_metrics(tmp_path, tiny_realiad):
    cfg = compose_config(tmp_path, [*TINY, f"data.root={tiny_realiad}"])
    assert cfg.mode == "single" and cfg.data.train_images == "normal"
    value = run_task(cfg)
    run = Path(cfg.paths.output_dir)
    assert value is not None and 0.0 <= value <= 1.0
    results = json.loads((run / "results.json").read_text())
    assert results["type_classification"] is None and list(results["types"]) == ["anomaly"]
    assert 0.0 <= results["types"]["anomaly"]["p_auroc"] <= 1.0
    metrics = (run / "csv").rglob("metrics.csv")
    header = next(metrics).read_text().splitlines()[0]
    assert "test/i_auroc/anomaly" in header and "type_accuracy" not in header and "loss" not in header
    best = list((run / "checkpoints").glob("best_*.ckpt"))
    assert len(best) == 1  # the fitted bank was checkpointed and selected
    pipeline, saved = load_pipeline(best[0])
    assert saved.model.name == "patchcore" and pipeline.net.memory_bank.shape[0] >= 1
    assert (pipeline.heat_max > pipeline.heat_min).all() and torch.isfinite(pipeline.image_threshold).all()


def test_patchcore_needs_mode_single_and_rejects_unknown_model_keys(tmp_path):
    cfg = compose_config(tmp_path, ["model=patchcore", "model/backbone=efficientnet_lite0", "mode=multi"])
    with pytest.raises(ConfigError, match="mode=single"):
        build_module(cfg)
    cfg = compose_config(
        tmp_path, ["model=patchcore", "model/backbone=efficientnet_lite0", "+model.coreset_ration=0.1"]
    )
    with pytest.raises(ConfigError, match="model.coreset_ration"):
        build_module(cfg)
    cfg = compose_config(tmp_path, ["model/backbone=efficientnet_lite0", "model.name=patchcor"])
    with pytest.raises(ConfigError, match="model.name='patchcor'"):
        build_module(cfg)
    # the demo's MultiTypeFCDD keys (head_width, optimizer) are tolerated
    cfg = compose_config(tmp_path, ["model=patchcore", "experiment=demo", "model.backbone.pretrained=false"])
    assert build_module(cfg).net.num_types == 1


@pytest.mark.parametrize("bank", ["per_category", "shared"])
def test_bank_sizes_follow_the_bank_kind_the_ratio_and_the_patch_cap(bank):
    from mtfcdd.model.patchcore.module import PatchCoreModule
    from mtfcdd.model.pipeline import InferencePipeline

    pipeline = InferencePipeline(small_net(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    module = PatchCoreModule(
        pipeline, coreset_ratio=0.015, bank=bank, max_patches_per_category=100, channels_last=False
    )
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # 64 patches per image
    module.training_step({"image": images, "label": torch.zeros(5, 1), "category": ["a", "a", "b", "b", "b"]}, 0)
    module.fit_memory_bank()
    # category a: 128 patches capped to 100, b: 192 capped to 100
    expected = 2 * 2 if bank == "per_category" else 3  # ceil(0.015 * 100) per category, ceil(0.015 * 200) shared
    assert module.net.memory_bank.shape == (expected, 152)
    with pytest.raises(RuntimeError, match="normal images only"):
        module.training_step({"image": images, "label": torch.ones(5, 1), "category": ["a"] * 5}, 1)
