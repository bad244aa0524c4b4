"""Checkpoints written before the package layout changed (version 0.1, main at 24319ab) still load: their saved
configs name modules by their old dotted paths (``mtfcdd.model.backbones``, ``mtfcdd.callbacks.resume``, ...)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import get_class, get_method

from mtfcdd.core.defect_types import REALIAD_VOCABULARY
from mtfcdd.model.checkpoint import CONFIG_KEY, load_pipeline, read_checkpoint
from mtfcdd.model.components.config import type_colours, type_names

LEGACY = Path(__file__).parent / "data" / "legacy_v0.1_mtfcdd.ckpt"
"""A 3-step MultiTypeFCDD run on the tiny synthetic set (EfficientNet-Lite0 cut, head width 8) written by 0.1."""


def _targets(config, found=None):
    found = [] if found is None else found
    if isinstance(config, dict):
        for key, value in config.items():
            (found.append(value) if key == "_target_" else _targets(value, found))
    elif isinstance(config, list):
        for value in config:
            _targets(value, found)
    return found


def test_the_legacy_file_names_the_old_module_paths():
    saved = torch.load(LEGACY, map_location="cpu", weights_only=True)[CONFIG_KEY]
    old = _targets(saved)
    assert "mtfcdd.model.backbones.FrozenBackbone" in old and "mtfcdd.cluster.slurm_plugins" in old


def test_every_saved_target_resolves_after_the_move():
    _, cfg = read_checkpoint(LEGACY)
    from omegaconf import OmegaConf

    targets = _targets(OmegaConf.to_container(cfg))
    assert len(targets) >= 10
    for target in targets:
        try:
            get_class(target)
        except ValueError:
            get_method(target)  # a function target (trainer.plugins)


def test_a_legacy_checkpoint_loads_and_scores_as_it_did():
    """The scores 0.1 gave on two seeded random images (``legacy_v0.1_mtfcdd.outputs.json``, written by 0.1 on an Intel
    Xeon): float32 through a few convolutions differs between CPUs in the last bits, so 1e-5 relative (about 80
    float32 ulps), far below any change of the network, the weights or the normalisation."""
    pipeline, cfg = load_pipeline(LEGACY)
    assert cfg.model.backbone._target_ == "mtfcdd.model.components.backbones.FrozenBackbone"
    # written before data.vocabulary: its data.defect_codes name the channels
    assert "vocabulary" not in cfg.data and pipeline.num_types == 8
    assert type_names(cfg) == list(REALIAD_VOCABULARY.names) and type_colours(cfg) == list(REALIAD_VOCABULARY.colours)
    expected = json.loads(LEGACY.with_suffix(".outputs.json").read_text())
    size = int(cfg.data.image_size)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(expected["seed"]))
    with torch.no_grad():
        out = pipeline(images)
    assert out.heatmaps.shape == (2, pipeline.net.num_types, size, size)
    torch.testing.assert_close(out.scores, torch.tensor(expected["scores"]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.anomaly_score, torch.tensor(expected["anomaly_score"]), rtol=1e-5, atol=1e-7)
