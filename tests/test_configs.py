"""Every config group and experiment composes and instantiates; bad values stop before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate
from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from helpers.hydra_compose import compose_config
from mtfcdd.core.config import CONFIG_DIR, ConfigError
from mtfcdd.model.build import build_module
from mtfcdd.resume.checkpoint_io import AtomicCheckpointIO
from mtfcdd.resume.last_checkpoint import LastCheckpoint
from mtfcdd.run.build import build_callbacks, instantiate_datamodule
from mtfcdd.run.checks import validate
from mtfcdd.run.loggers import build_loggers

OFFLINE = ["model/backbone=efficientnet_lite0", "model.head_width=8"]


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_groups_hold_the_documented_options():
    assert set(group_options("trainer")) >= {"cpu", "gpu", "auto", "ddp"}
    assert set(group_options("logger")) >= {"wandb", "csv", "none"}
    assert set(group_options("data")) >= {"realiad", "synthetic"}
    assert "demo" in group_options("experiment")
    for group in ("model", "callbacks", "debug", "paths", "hydra"):
        assert group_options(group), group


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiments_compose(tmp_path, experiment):
    cfg = compose_config(tmp_path, [f"experiment={experiment}"])
    validate(cfg)
    assert cfg.experiment_name == experiment


@pytest.mark.parametrize("trainer", group_options("trainer"))
def test_trainers_compose_and_instantiate(tmp_path, trainer):
    cfg = compose_config(tmp_path, [f"trainer={trainer}"])
    if trainer == "gpu" and not torch.cuda.is_available():
        assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("gpu", 1)
        with pytest.raises(InstantiationException, match="No supported gpu backend"):  # at once, not mid-run
            instantiate(cfg.trainer)
        return
    if trainer == "ddp" and not torch.cuda.is_available():  # the same strategy on CPU processes
        cfg = compose_config(tmp_path, [f"trainer={trainer}", "trainer.accelerator=cpu"])
    trainer_obj = instantiate(cfg.trainer)
    assert trainer_obj.max_epochs == cfg.trainer.max_epochs
    assert trainer_obj.num_devices == cfg.trainer.devices
    assert isinstance(trainer_obj.strategy, DDPStrategy) == (trainer == "ddp")
    assert isinstance(trainer_obj.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.parametrize("logger", group_options("logger"))
def test_loggers_instantiate(tmp_path, logger):
    cfg = compose_config(tmp_path, [f"logger={logger}"])
    loggers = build_loggers(cfg)
    assert len(loggers) == (0 if logger == "none" else 1)
    if logger == "wandb":
        assert loggers[0]._offline and loggers[0]._wandb_init["group"] == "default"
        assert set(loggers[0]._wandb_init["tags"]) == {"alpha=0.2", "mode=multi"}


CALLBACKS = {
    "default": [
        "ModelCheckpoint",
        "ModelCheckpoint",
        "LastCheckpoint",
        "RandomStates",
        "StopOnSignal",
        "BalancedEpochLength",
        "BackboneRuntimeSwitch",
        "HeatmapFigures",
        "WandbDashboard",
    ],
    "backbone_runtime": ["BackboneRuntimeSwitch"],
    "balanced_epoch": ["BalancedEpochLength"],
    "evaluate": ["HeatmapFigures", "PredictionWriter"],
    "heatmaps": ["HeatmapFigures"],
    "last_checkpoint": ["LastCheckpoint"],
    "model_checkpoint": ["ModelCheckpoint"],
    "none": [],
    "predict": ["PredictionWriter"],
    "resume": ["RandomStates", "StopOnSignal"],
    "step_checkpoint": ["ModelCheckpoint"],
    "wandb_dashboard": ["WandbDashboard"],
}
"""The callback classes each option of the callbacks group instantiates."""


@pytest.mark.parametrize("callbacks", group_options("callbacks"))
def test_callbacks_instantiate(tmp_path, callbacks):
    cfg = compose_config(tmp_path, [f"callbacks={callbacks}"])
    names = sorted(type(c).__name__ for c in build_callbacks(cfg))
    assert names == sorted(CALLBACKS[callbacks])
    if callbacks == "default":
        steps = [c._every_n_train_steps for c in build_callbacks(cfg) if type(c).__name__ == "ModelCheckpoint"]
        assert sorted(steps) == [0, cfg.callbacks.step_checkpoint.every_n_train_steps]


def test_last_checkpoint_is_written_after_the_best_checkpoint_at_an_epoch_end(tmp_path):
    # a run killed between the two writes must resume knowing its best checkpoint (else it keeps two)
    cfg = compose_config(tmp_path, OFFLINE)
    order = [type(c) for c in Trainer(callbacks=build_callbacks(cfg), logger=False).callbacks]
    last = order.index(LastCheckpoint)
    assert ModelCheckpoint in order and all(i < last for i, kind in enumerate(order) if kind is ModelCheckpoint)


def test_an_experiments_callback_options_without_the_callback_fail_naming_it(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=demo", "callbacks=none"])
    with pytest.raises(ConfigError, match=r"callbacks\.backbone_runtime sets runtime but names no callback"):
        build_callbacks(cfg)
    cfg = compose_config(tmp_path, ["experiment=demo", "callbacks=none", "~callbacks.backbone_runtime"])
    assert build_callbacks(cfg) == []


@pytest.mark.parametrize("data", ["realiad", "synthetic"])
@pytest.mark.parametrize("mode", ["multi", "single"])
def test_data_and_model_instantiate(tmp_path, data, mode):
    cfg = compose_config(tmp_path, [f"data={data}", f"mode={mode}", *OFFLINE])
    datamodule = instantiate_datamodule(cfg)
    assert datamodule.num_types == (8 if mode == "multi" else 1)
    module = build_module(cfg)
    assert module.net.num_types == datamodule.num_types


@pytest.mark.parametrize("debug", group_options("debug"))
def test_debug_configs_compose(tmp_path, debug):
    """Every debug config is a small CPU run: the offline backbone, small images, one short epoch."""
    cfg = compose_config(tmp_path, [f"debug={debug}"])
    assert cfg.model.backbone.name == "tf_efficientnet_lite0"
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.data.num_workers) == (96, 4, 0)
    trainer = instantiate(cfg.trainer)
    assert (trainer.max_epochs, trainer.num_devices, type(trainer.accelerator).__name__) == (1, 1, "CPUAccelerator")
    assert trainer.fast_dev_run == (debug == "fast_dev_run")
    assert trainer.limit_train_batches == {"default": 2, "fast_dev_run": 1, "limit": 3}[debug]


@pytest.mark.parametrize(
    "override, key, choices", [("alpha=0.3", "alpha", "0.1, 0.2, 0.4"), ("mode=dual", "mode", "multi, single")]
)
def test_bad_top_level_values_name_key_and_choices(tmp_path, override, key, choices):
    cfg = compose_config(tmp_path, [override])
    with pytest.raises(ConfigError, match=rf"{key}=.*choose one of: {choices}"):
        validate(cfg)


def test_unknown_key_and_group_option_fail_loudly(tmp_path):
    with pytest.raises(ConfigCompositionException, match="alhpa"):
        compose_config(tmp_path, ["alhpa=0.2"])
    with pytest.raises(ConfigCompositionException, match="trainer"):
        compose_config(tmp_path, ["trainer=tpu"])


def test_default_data_root_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REALIAD_ROOT", str(tmp_path / "elsewhere"))
    assert compose_config(tmp_path, []).data.root == str(tmp_path / "elsewhere")
    monkeypatch.delenv("REALIAD_ROOT")
    assert Path(compose_config(tmp_path, []).data.root).parts[-2:] == ("data", "Real-IAD")


def _leaves(config, prefix: str = "") -> dict:
    """Every leaf of a plain nested dict as dotted key -> value."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_own_images_get_the_tuned_recipe_and_the_other_paths_keep_theirs(tmp_path):
    """data=folder alone trains the recipe (offline backbone included); a chosen backbone, PatchCore, the Real-IAD
    default and the demo keep their own settings."""
    from omegaconf import OmegaConf

    recipe = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "recipe" / "mtfcdd_folder_efficientnet_lite0.yaml"))
    folder = compose_config(tmp_path / "f", ["data=folder", "data.root=x"])
    assert folder.model.backbone.name == "tf_efficientnet_lite0"
    assert folder.model.backbone.weights_path.startswith("pkg://")  # no model hub
    for key, value in _leaves(recipe).items():
        if not (isinstance(value, str) and value.startswith("${")):
            assert OmegaConf.select(folder, key) == value, key
    assert folder.data.train_images == "balanced"

    inception = compose_config(tmp_path / "i", ["data=folder", "data.root=x", "model/backbone=inception_resnet_v2"])
    assert (inception.model.backbone.name, inception.model.backbone.out_index) == ("inception_resnet_v2", 2)
    assert (inception.model.head_width, inception.model.optimizer.lr, inception.data.image_size) == (512, 1e-4, 299)

    patchcore = compose_config(tmp_path / "p", ["data=folder", "data.root=x", "model=patchcore"])
    assert (patchcore.mode, patchcore.data.train_images, patchcore.model.backbone.extra_indices) == (
        "single",
        "normal",
        [2],
    )
    assert not patchcore.model.backbone.concat

    paper = compose_config(tmp_path / "r", [])
    assert (paper.model.backbone.name, paper.model.head_width, paper.data.image_size) == (
        "inception_resnet_v2",
        512,
        299,
    )
    assert paper.model.scheduler is None and paper.trainer.max_epochs == 10
    demo = compose_config(tmp_path / "d", ["experiment=demo"])
    assert (demo.model.backbone.out_index, demo.model.head_width, demo.data.image_size) == (3, 128, 224)
    assert not demo.model.backbone.concat and not demo.data.augment.dihedral


def test_a_final_fit_without_test_images_must_say_test_false(tmp_path):
    cfg = compose_config(tmp_path, ["data=folder", "data.root=x", "data.test_fraction=0"])
    with pytest.raises(ConfigError, match=r"data.test_fraction=0 keeps no test images.*add test=false"):
        validate(cfg)
    validate(compose_config(tmp_path, ["data=folder", "data.root=x", "data.test_fraction=0", "test=false"]))
