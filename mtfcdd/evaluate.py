"""Evaluate a checkpoint: ``python -m mtfcdd.evaluate ckpt_path=PATH [alpha=0.2] [model.evaluation.protocol=paper]``.

The network comes from the checkpoint (loaded with ``weights_only=True``); data and evaluation settings from
``conf/evaluate.yaml``. Writes ``results.json``, ``results.md`` and ``heatmaps/test.png`` into the run directory.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mtfcdd.config import ConfigError, config_dir
from mtfcdd.data.dataset import RealIADDataset
from mtfcdd.errors import exit_on_user_error
from mtfcdd.inference.engines import build_engine
from mtfcdd.model.build import build_module
from mtfcdd.model.checkpoint import load_network
from mtfcdd.reporting import finish_wandb, write_results
from mtfcdd.train import build_callbacks, build_datamodule, build_loggers


def evaluation_config(cfg: DictConfig, trained: DictConfig) -> DictConfig:
    """The trained run's model config with this command's evaluation settings and data on top."""
    if cfg.mode is not None and cfg.mode != trained.mode:
        raise ConfigError(f"mode={cfg.mode!r} but the checkpoint was trained with mode={trained.mode!r}")
    data = trained.data if cfg.data.get("from_checkpoint") else cfg.data
    merged = OmegaConf.merge(trained, {"alpha": cfg.alpha, "seed": cfg.seed})
    with open_dict(merged):
        merged.data = OmegaConf.merge(data, {"alpha": cfg.alpha, "mode": trained.mode})
        merged.model.evaluation = cfg.model.evaluation
        merged.data.image_size = trained.data.image_size
    return merged


def calibration_images(datamodule: L.LightningDataModule, cfg_inference: DictConfig, count: int = 32) -> list | None:
    """Real training images (eval transform, evenly spaced over the set) for int8 calibration; None otherwise."""
    if cfg_inference.engine != "onnx_int8":
        return None
    records = datamodule.train_dataset.records
    dataset = RealIADDataset(records[:: max(1, len(records) // count)][:count], datamodule.test_dataset.transform,
                             num_types=datamodule.num_types, mode=datamodule.mode)
    return [dataset[i]["image"] for i in range(len(dataset))]


def evaluate(cfg: DictConfig) -> dict:
    """Test the checkpoint at ``cfg.ckpt_path``; returns the results dict."""
    net, trained = load_network(cfg.ckpt_path)
    run_cfg = evaluation_config(cfg, trained)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(run_cfg)
    model = build_module(run_cfg, net)
    model.inference_engine = build_engine(net, cfg.inference, calibration=calibration_images(datamodule, cfg.inference))
    print(f"inference engine: {model.inference_engine.describe()}")
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg))
    trainer.test(model=model, datamodule=datamodule)
    output_dir = Path(cfg.paths.output_dir)
    write_results(model.test_results, output_dir, loggers, cfg)
    print(f"\nresults: {output_dir / 'results.md'}\nheatmaps: {output_dir / 'heatmaps'}")
    return model.test_results


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        try:
            evaluate(cfg)
        finally:
            finish_wandb()


if __name__ == "__main__":
    main()
