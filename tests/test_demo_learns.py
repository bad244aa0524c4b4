"""Guard: a reduced demo (the demo's data, backbone and head, far fewer steps) must learn clearly better than chance.

A change that breaks learning (loss sign, frozen head, labels, sampler, heatmap upsampling) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.hydra_compose import compose_config
from mtfcdd.train import run_task


@pytest.mark.slow
def test_reduced_demo_beats_chance_clearly(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "experiment=demo",
            "logger=none",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=60",
            "data.val_max_images=60",
            "data.test_max_images=300",
            "data.image_size=192",
        ],
    )
    run_task(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    mean = results["mean"]
    print("reduced demo means:", mean)
    assert mean["i_auroc"] >= 0.65, mean
    assert mean["p_auroc"] >= 0.80, mean
    assert mean["aupro"] >= 0.45, mean
