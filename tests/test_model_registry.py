"""Models by name: every registered model builds from its own config, an unknown name fails naming the choices, and
a third model is one registry entry (built, evaluated and titled with no other edit)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import open_dict
from torch import nn
from torch.utils.data import DataLoader

from helpers.hydra_compose import compose_config
from mtfcdd.core.config import CONFIG_DIR, ConfigError
from mtfcdd.export import export_metadata
from mtfcdd.model import registry
from mtfcdd.model.base import AnomalyModule
from mtfcdd.model.build import build_module, build_network
from mtfcdd.model.components.config import type_names
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.pipeline import InferencePipeline
from mtfcdd.run.loggers import log_run_setup, write_results

SMALL = ["model/backbone=efficientnet_lite0", "model.backbone.pretrained=false"]


def test_every_config_option_is_a_registered_model():
    assert set(registry.MODELS) == {path.stem for path in (CONFIG_DIR / "model").glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_registered_model_builds_from_its_config(tmp_path, name):
    cfg = compose_config(tmp_path, [f"model={name}", *SMALL])
    module = build_module(cfg)
    assert isinstance(module, AnomalyModule) and type(module).__module__.startswith("mtfcdd.model.")
    assert module.pipeline.model_name == name  # the network's name is the registry's key
    assert module.type_names == type_names(cfg) and cfg.mode in registry.MODELS[name].modes


def test_an_unknown_name_fails_naming_the_key_and_the_registered_models(tmp_path):
    cfg = compose_config(tmp_path, ["model.name=fcdd", *SMALL])
    with pytest.raises(ConfigError, match=r"model.name='fcdd' is not valid; choose one of: mtfcdd, patchcore$"):
        build_network(cfg)


def test_a_config_without_model_name_is_multitype_fcdd(tmp_path):
    cfg = compose_config(tmp_path, SMALL)
    del cfg.model.name  # run configs saved before the key existed
    assert isinstance(build_network(cfg), MultiTypeFCDD)


def test_a_base_module_without_a_training_step_is_not_a_model():
    class Untrained(AnomalyModule):
        def configure_optimizers(self) -> list:
            return []

    with pytest.raises(TypeError, match="training_step"):
        Untrained(InferencePipeline(Brightness(nn.Identity()), (0.5,) * 3, (0.25,) * 3), ["anomaly"])


class Brightness(nn.Module):
    """A third model's network: the image's brightness, average-pooled at stride 8, as its one any-defect channel
    (the backbone is only carried, for the results' ``backbone``)."""

    model_name = "brightness"
    num_types = 1
    upsample = "bilinear"

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor, upsample: bool = True) -> SimpleNamespace:
        maps = F.avg_pool2d(images.mean(dim=1, keepdim=True), 8)
        return SimpleNamespace(maps=maps, heatmaps=self.upsample_maps(maps, images.shape[-2:]) if upsample else None)

    def upsample_maps(self, maps: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        return {"total": total, "trainable": 0, "frozen": total}


class BrightnessModule(AnomalyModule):
    """Nothing to train: evaluation, calibration and prediction are the base module's."""

    def training_step(self, batch: dict, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> list:
        return []


def batches(count: int = 8, size: int = 64) -> list[dict]:
    """Images with a bright square on the defective ones (mode single: type 0 = any defect)."""
    generator = torch.Generator().manual_seed(0)
    samples = []
    for i in range(count):
        image = torch.rand(3, size, size, generator=generator) * 0.2
        mask = torch.zeros(size, size, dtype=torch.bool)
        if i % 2:
            mask[16:32, 24:40] = True
            image[:, mask] = 1.0
        samples.append(
            {
                "image": image,
                "label": torch.tensor([float(i % 2)]),
                "mask": mask,
                "type_index": torch.tensor(i % 2 - 1),
                "category": "bottle",
                "path": f"{i}.png",
            }
        )
    return samples


def test_a_third_model_is_one_registry_entry(tmp_path, monkeypatch, capsys):
    entry = registry.ModelEntry(
        "Brightness",
        build_network=lambda cfg: Brightness(instantiate(cfg.model.backbone)),
        build_module=lambda cfg, pipeline: BrightnessModule(
            pipeline, type_names(cfg), mode=cfg.mode, channels_last=False
        ),
        modes=("single",),
    )
    monkeypatch.setitem(registry.MODELS, Brightness.model_name, entry)
    cfg = compose_config(tmp_path, [f"model.name={Brightness.model_name}", *SMALL])
    with pytest.raises(ConfigError, match="mode='multi' is not valid with model=brightness.*set mode=single"):
        build_module(cfg)
    with open_dict(cfg):
        cfg.mode = "single"
    module = build_module(cfg)
    assert isinstance(module, BrightnessModule) and isinstance(module.net, Brightness)

    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(batches(), batch_size=4)
    trainer.validate(module, loader, verbose=False)  # the base module calibrates heat range, threshold, any-defect
    assert module.pipeline.heat_max > module.pipeline.heat_min and torch.isfinite(module.pipeline.image_threshold)
    trainer.test(module, loader, verbose=False)
    results = module.test_results
    assert results["model"] == "brightness" and results["types"]["anomaly"]["i_auroc"] == 1.0
    predicted = trainer.predict(module, loader)
    assert torch.cat([out.anomalous for out in predicted]).tolist() == [False, True] * 4

    write_results(results, Path(cfg.paths.output_dir), [], cfg, {"checkpoint": None})
    markdown = (Path(cfg.paths.output_dir) / "results.md").read_text()
    assert markdown.startswith("# Brightness test results\n") and "| Brightness | 100.0 |" in markdown
    log_run_setup({"cfg": cfg, "model": module, "datamodule": None, "loggers": []})
    assert capsys.readouterr().out.startswith("Brightness (tf_efficientnet_lite0, M=1) parameters:")
    meta = export_metadata(module.pipeline, cfg, "uint8", (64, 64), "fp32", None)
    assert meta["model"] == "Brightness"
