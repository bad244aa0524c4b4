"""Load a trained pipeline from a Lightning checkpoint, safely (``weights_only=True``) and without Lightning.

The saved run config names and colours the channels: its ``data.vocabulary`` (written by train; checkpoints older
than it: ``data.defect_codes``, see ``mtfcdd.core.defect_types.vocabulary_of``), so evaluate, predict and export
need no data config for that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.defect_types import vocabulary_of
from mtfcdd.core.errors import UserError
from mtfcdd.model.base import CONFIG_KEY
from mtfcdd.model.build import build_pipeline
from mtfcdd.model.pipeline import InferencePipeline

PIPELINE_PREFIX = "pipeline."
MOVED_TARGETS = {
    "mtfcdd.model.backbones.": "mtfcdd.model.components.backbones.",
    "mtfcdd.callbacks.last_checkpoint.": "mtfcdd.resume.last_checkpoint.",
    "mtfcdd.callbacks.resume.": "mtfcdd.resume.callback.",
    "mtfcdd.callbacks.balanced_epoch.": "mtfcdd.sampling.epoch_callback.",
    "mtfcdd.callbacks.backbone_runtime.": "mtfcdd.callbacks.backbone_switch.",
    "mtfcdd.cluster.": "mtfcdd.run.slurm.",
    "mtfcdd.checkpoint_io.": "mtfcdd.resume.checkpoint_io.",
}
"""Module prefixes of ``_target_`` paths saved in the configs of checkpoints written before version 0.2 -> where those
classes live now (the data modules kept their paths)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing or was not written by ``mtfcdd.train``."""


def read_checkpoint(path: str | Path) -> tuple[dict, DictConfig]:
    """(raw checkpoint dict, the run config saved with it); tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r}: no such file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} has no '{CONFIG_KEY}'/'state_dict' entries: not a checkpoint written by mtfcdd.train"
        )
    return checkpoint, OmegaConf.create(moved_targets(checkpoint[CONFIG_KEY]))


def moved_targets(config: Any) -> Any:
    """``config`` (plain containers) with every ``_target_`` of ``MOVED_TARGETS`` pointed at its module now."""
    if isinstance(config, dict):
        return {
            key: _current_target(value) if key == "_target_" else moved_targets(value) for key, value in config.items()
        }
    if isinstance(config, list):
        return [moved_targets(value) for value in config]
    return config


def _current_target(target: Any) -> Any:
    for old, new in MOVED_TARGETS.items():
        if isinstance(target, str) and target.startswith(old):
            return new + target[len(old) :]
    return target


def load_pipeline(
    path: str | Path, type_rule: str | None = None, detector_ckpt: str | Path | None = None
) -> tuple[InferencePipeline, DictConfig]:
    """The trained ``InferencePipeline`` (eval mode; calibration buffers included) and its run config.

    ``type_rule``: choose the predicted type another way than the run did (``calibrated`` or ``raw``).
    ``detector_ckpt``: a mode-single checkpoint (e.g. ``model=patchcore``) trained at the same image size whose
    any-defect view (map, score, calibrated decision) the pipeline reports instead of its own (see
    ``InferencePipeline.set_detector``); the returned config is the types checkpoint's."""
    pipeline, cfg = _load(path, type_rule)
    if detector_ckpt is None:
        return pipeline, cfg
    detector, detector_cfg = _load(detector_ckpt)
    size = int(cfg.data.image_size)
    if int(detector_cfg.data.image_size) != size:
        raise CheckpointError(
            f"detector_ckpt={str(detector_ckpt)!r} was trained at data.image_size="
            f"{detector_cfg.data.image_size}, {path} at {size}: they must match"
        )
    try:
        pipeline.set_detector(detector, size)
    except ValueError as err:
        raise CheckpointError(
            f"detector_ckpt={str(detector_ckpt)!r} cannot be the detector of {path}: {err} "
            "(a mode-single checkpoint such as model=patchcore's)"
        ) from err
    return pipeline, cfg


def _load(path: str | Path, type_rule: str | None = None) -> tuple[InferencePipeline, DictConfig]:
    """One checkpoint's pipeline and run config (see ``load_pipeline``)."""
    checkpoint, cfg = read_checkpoint(path)
    try:
        vocabulary_of(cfg)
    except UserError as err:
        raise CheckpointError(f"{path}: its saved config names no valid defect types ({err})") from err
    cfg.model.backbone.pretrained = False  # every weight comes from the checkpoint
    if type_rule is not None:
        cfg.model.evaluation.type_rule = type_rule
    pipeline = build_pipeline(cfg)
    state = {k[len(PIPELINE_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(PIPELINE_PREFIX)}
    try:
        pipeline.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its weights do not fit the network of its own config ({err})") from err
    return pipeline.eval(), cfg
