"""Evaluate a checkpoint: ``python -m mtfcdd.evaluate ckpt_path=PATH [alpha=0.2] [model.evaluation.protocol=paper]``.

``detector_ckpt=PATH`` (a mode-single checkpoint such as ``model=patchcore``'s) evaluates the combination: "whether"
(the any-defect view and decision) from the detector, "which" (type channels, type metrics) from ``ckpt_path``.

The inference pipeline comes from the checkpoint (loaded with ``weights_only=True``: network, normalisation,
calibration, image score); data and the evaluation protocol from ``conf/evaluate.yaml``. The test images run
through the configured inference engine (``inference=eager`` by default: the same float32 computation as the test
at the end of training, hence the same metrics) on the device the trainer config picks. Writes ``results.json``,
``results.md``, ``predictions.csv``/``.jsonl`` (one row per test image) and ``heatmaps/test.png`` into the run
directory.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from mtfcdd.core.config import ConfigError
from mtfcdd.core.defect_types import vocabulary_of
from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.engines import build_engine
from mtfcdd.model.build import build_module
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.run.build import VOCABULARY_KEY, build_datamodule, build_trainer
from mtfcdd.run.checks import check_inference
from mtfcdd.run.lifecycle import entry_point
from mtfcdd.run.loggers import build_loggers, write_results


def evaluation_config(cfg: DictConfig, trained: DictConfig) -> DictConfig:
    """The trained run's config with this command's data, protocol and type rule on top (``null``: the trained one)."""
    if cfg.mode is not None and cfg.mode != trained.mode:
        raise ConfigError(f"mode={cfg.mode!r} but the checkpoint was trained with mode={trained.mode!r}")
    trained_score = trained.model.evaluation.image_score
    wanted_score = cfg.model.evaluation.image_score
    if wanted_score is not None and wanted_score != trained_score:
        raise ConfigError(
            f"model.evaluation.image_score={wanted_score!r} but the checkpoint's thresholds were calibrated on "
            f"image_score={trained_score!r}; leave it unset (null) or train with image_score={wanted_score}"
        )
    data = trained.data if cfg.data.get("from_checkpoint") else cfg.data
    merged = OmegaConf.merge(trained, {"alpha": cfg.alpha, "seed": cfg.seed})
    overrides = {key: value for key, value in cfg.model.evaluation.items() if value is not None}
    with open_dict(merged):
        # alpha picks Real-IAD's JSON folder; a data set without it (data=folder: its split is in data.split_dir)
        merged.data = OmegaConf.merge(data, {"mode": trained.mode} | ({"alpha": cfg.alpha} if "alpha" in data else {}))
        merged.data.image_size = trained.data.image_size
        merged.data.mean, merged.data.std = trained.data.mean, trained.data.std
        merged.data[VOCABULARY_KEY] = vocabulary_of(trained).to_config()  # the channels are the checkpoint's
        merged.model.evaluation = OmegaConf.merge(trained.model.evaluation, overrides)
    return merged


def check_same_types(data_codes: tuple[str, ...], trained_codes: tuple[str, ...], mode: str) -> None:
    """Mode multi: the test data labels the checkpoint's defect types in its channel order (else the metrics would
    compare channel k with another type); a ``ConfigError`` naming both otherwise."""
    if mode == "multi" and tuple(data_codes) != tuple(trained_codes):
        raise ConfigError(
            f"the data's defect types ({', '.join(data_codes)}) are not the checkpoint's channels "
            f"({', '.join(trained_codes)}); evaluate on data with the same types in the same order "
            "(data.from_checkpoint=true, or data.defect_codes / data.types as trained)"
        )


def evaluate(cfg: DictConfig) -> dict:
    """Test the checkpoint at ``cfg.ckpt_path``; returns the results dict."""
    pipeline, trained = load_pipeline(
        cfg.ckpt_path, type_rule=cfg.model.evaluation.type_rule, detector_ckpt=cfg.detector_ckpt
    )
    run_cfg = evaluation_config(cfg, trained)
    datamodule = build_datamodule(run_cfg)
    check_same_types(datamodule.vocabulary.codes, vocabulary_of(run_cfg).codes, run_cfg.mode)
    model = build_module(run_cfg, pipeline)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, loggers)
    model.engine = build_engine(
        model.pipeline,
        cfg.inference,
        int8_calibration_images(cfg.inference, datamodule),
        device=trainer.strategy.root_device,
    )
    print(f"inference engine: {model.engine.describe()}")
    trainer.test(model=model, datamodule=datamodule)
    output_dir = Path(cfg.paths.output_dir)
    tested = {"checkpoint": cfg.ckpt_path, "detector_checkpoint": cfg.detector_ckpt}
    write_results(model.test_results, output_dir, loggers, cfg, tested)
    print(f"\nresults: {output_dir / 'results.md'}\nheatmaps: {output_dir / 'heatmaps'}")
    return model.test_results


main = entry_point("evaluate", checks=[check_inference])(evaluate)


if __name__ == "__main__":
    main()
