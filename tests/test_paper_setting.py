"""`experiment=paper` is the paper's run, and only the paper's setting on Real-IAD gets the paper's means."""

from __future__ import annotations

import pytest

from helpers.hydra_compose import compose_config
from mtfcdd.core.config import ConfigError
from mtfcdd.metrics.paper_results import PAPER_MEANS, paper_means, paper_setting_mismatches
from mtfcdd.run.build import build_callbacks
from mtfcdd.run.checks import validate


def test_paper_experiment_holds_the_papers_settings(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=paper", "mode=single", "alpha=0.4"])
    validate(cfg)
    assert cfg.data._target_ == "mtfcdd.data.datamodule.RealIADDataModule"
    assert (cfg.data.json_set, cfg.data.resolution, cfg.data.image_size, cfg.data.batch_size) == (
        "fuiad",
        "realiad_256",
        299,
        32,
    )
    assert cfg.data.val_fraction == 0 and cfg.data.balance == "types" and cfg.test_ckpt == "last"
    assert dict(cfg.data.augment) == {
        "p": 0.5,
        "rotate_deg": 15,
        "translate_px": 20,
        "brightness": 0.2,
        "contrast": 0.2,
        "dihedral": False,
    }
    assert cfg.model.backbone.name == "inception_resnet_v2" and cfg.model.head_width == 512
    assert cfg.model.backbone.extra_indices == [] and not cfg.model.backbone.concat
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 1e-4
    assert cfg.model.evaluation.protocol == "paper" and cfg.model.evaluation.image_score == "max"
    assert cfg.trainer.max_epochs == 10 and cfg.trainer.limit_train_batches is None
    names = {type(c).__name__ for c in build_callbacks(cfg)}
    assert "BalancedEpochLength" in names
    assert paper_means(cfg, cfg.mode) == PAPER_MEANS["single"][0.4]


def test_other_settings_get_no_paper_means_and_say_why(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=paper", "data=synthetic"])
    assert paper_means(cfg, "multi") is None
    assert any("not the Real-IAD release" in reason for reason in paper_setting_mismatches(cfg, "multi"))
    cfg = compose_config(tmp_path, ["alpha=0.2"])  # the plain command reports the typed protocol
    assert paper_setting_mismatches(cfg, "multi") == ["model.evaluation.protocol=typed, not paper"]
    cfg = compose_config(tmp_path, ["experiment=paper", "data.defect_codes=[AK,HS]"])  # 2 of Real-IAD's 8 types
    assert paper_setting_mismatches(cfg, "multi") == ["the defect types are AK, HS, not Real-IAD's 8"]
    # mtfcdd.evaluate's config: data from the checkpoint, mode null
    cfg = compose_config(tmp_path, ["ckpt_path=x.ckpt"], config_name="evaluate")
    assert paper_means(cfg, "single") is None


def test_best_checkpoint_needs_something_to_select_on(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=paper", "test_ckpt=best"])
    with pytest.raises(ConfigError, match="test_ckpt=best needs callbacks.model_checkpoint"):
        validate(cfg)
    cfg = compose_config(tmp_path, ["data.val_fraction=0", "test_ckpt=best"])
    with pytest.raises(ConfigError, match="data.val_fraction=0"):
        validate(cfg)
    with pytest.raises(ConfigError, match="test_ckpt='first'.*best, last"):
        validate(compose_config(tmp_path, ["test_ckpt=first"]))


@pytest.mark.parametrize(("overrides", "compared"), [([], True), (["data=synthetic"], False)])
def test_results_md_of_a_paper_run_holds_the_papers_means(tmp_path, overrides, compared):
    from test_metrics_tables import results_for

    from mtfcdd.run.loggers import write_results

    cfg = compose_config(tmp_path, ["experiment=paper", "alpha=0.1", *overrides])
    write_results(results_for("multi"), tmp_path / "run", [], cfg, {"checkpoint": None})
    markdown = (tmp_path / "run" / "results.md").read_text()
    assert ("## Against the paper (alpha = 0.1, mode multi; Tables 3 and 4, Mean rows)" in markdown) == compared
    assert ("| I-AUROC |" in markdown and "| 94.6 |" in markdown) == compared
