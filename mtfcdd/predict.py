"""Run a trained checkpoint on new images: ``python -m mtfcdd.predict ckpt_path=PATH input=DIR|FILE|GLOB``.

Images (PNG, JPEG, BMP, TIFF; any size; grayscale, RGB, RGBA, 16 bit) are resized as training did and streamed
through the checkpoint's inference pipeline (``inference=eager`` float32 by default, or another engine; an int8 one
calibrates on the first readable inputs) on the device the trainer config picks. Writes ``predictions.csv``,
``predictions.jsonl``, ``overlays/*.png`` (unless ``save_overlays=false``) and, for files that could not be read,
``errors.csv`` into the run directory; see ``mtfcdd.callbacks.predictions`` for the columns.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mtfcdd.callbacks.predictions import PredictionWriter
from mtfcdd.core.errors import UserError
from mtfcdd.data.images import ImageFileDataset, find_images
from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.engines import build_engine
from mtfcdd.model.build import build_module
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.run.build import build_callbacks, build_trainer
from mtfcdd.run.checks import check_inference
from mtfcdd.run.lifecycle import entry_point
from mtfcdd.run.loggers import build_loggers


class PredictionError(UserError, RuntimeError):
    """No image of the input could be read."""


def predict(cfg: DictConfig) -> dict:
    """Predict every image of ``cfg.input`` with ``cfg.ckpt_path``; returns the writer's summary."""
    paths = find_images(str(cfg.input))
    pipeline, trained = load_pipeline(cfg.ckpt_path, type_rule=cfg.type_rule, detector_ckpt=cfg.detector_ckpt)
    model = build_module(trained, pipeline)
    dataset = ImageFileDataset(paths, int(trained.data.image_size))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=False)
    callbacks = build_callbacks(cfg)
    writers = [c for c in callbacks if isinstance(c, PredictionWriter)]
    if not writers:
        raise UserError("callbacks: predict needs the predictions callback (callbacks=predict)")
    trainer = build_trainer(cfg, build_loggers(cfg), callbacks)
    readable = (sample["image"] for sample in map(dataset.__getitem__, range(len(dataset))) if not sample["error"])
    calibration = int8_calibration_images(cfg.inference, images=readable, size=int(trained.data.image_size))
    model.engine = build_engine(model.pipeline, cfg.inference, calibration, device=trainer.strategy.root_device)
    print(f"{len(paths)} images from {cfg.input}; inference engine: {model.engine.describe()}")
    trainer.predict(model=model, dataloaders=loader, return_predictions=False)
    summary = writers[0].summary
    print(format_summary(summary, Path(cfg.paths.output_dir)))
    if summary["images"] == 0:
        raise PredictionError(f"input={cfg.input!r}: none of its {len(paths)} files could be read (see errors.csv)")
    return summary


def format_summary(summary: dict, output_dir: Path) -> str:
    """What a prediction run read, found and wrote, for the console."""
    lines = [
        f"\nimages read: {summary['images']}, unreadable: {summary['errors']}, anomalous: {summary['anomalous']}",
        "anomalous per type: " + ", ".join(f"{name} {count}" for name, count in summary["per_type"].items()),
        f"written to {output_dir}:",
        *(f"  {path}" for path in summary["files"]),
    ]
    return "\n".join(lines)


main = entry_point("predict", checks=[check_inference])(predict)


if __name__ == "__main__":
    main()
