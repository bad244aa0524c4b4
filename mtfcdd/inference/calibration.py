"""The one rule that gives an inference engine its int8 calibration images (evaluate, predict, benchmark, export and
any later command call ``int8_calibration_images``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from mtfcdd.inference.engines import CALIBRATED_ENGINES
from mtfcdd.inference.int8_images import load_images
from mtfcdd.inference.onnx_pipeline import Int8Options


def needs_calibration(engine_cfg: Mapping[str, Any]) -> bool:
    """Whether the engine of ``engine_cfg`` (an ``inference`` config) may need calibration images: the static int8
    engines, and ``auto`` (which may pick one)."""
    return engine_cfg.get("engine", "eager") in CALIBRATED_ENGINES + ("auto",)


def int8_calibration_images(
    engine_cfg: Mapping[str, Any],
    datamodule: Any | None = None,
    images: Iterable[torch.Tensor] | None = None,
    size: int | Sequence[int] | None = None,
    int8_images: Mapping[str, Any] | None = None,
) -> list[torch.Tensor] | None:
    """Raw RGB images [3, H, W] (float in [0, 1]) that calibrate the engine of ``engine_cfg``; None for an engine
    that needs none (``needs_calibration``).

    ``engine_cfg.calibration_images`` images (default ``Int8Options.calibration_images``), taken from the first
    source at hand: the run's training data when there is a ``datamodule`` (its ``int8_calibration_images``: evenly
    spaced, evaluation transform); else the first of ``images`` (images [3, H, W] or batches [B, 3, H, W] at the
    network's input size, e.g. predict's readable inputs); else ``load_images``
    at ``size`` px from ``int8_images`` (``conf/int8_images``: source, root, seed; None: synthetic views).
    """
    if not needs_calibration(engine_cfg):
        return None
    count = int(engine_cfg.get("calibration_images") or Int8Options.calibration_images)
    if datamodule is not None:
        return datamodule.int8_calibration_images(count)
    if images is not None:
        at_hand = list(itertools.islice(_single_images(images), count))
        if at_hand:
            return at_hand
    if size is None:
        raise ValueError("int8_calibration_images: without a data module or images at hand, give the input size")
    source = dict(int8_images or {})
    return list(
        load_images(
            count, size, source=source.get("source", "synthetic"), seed=source.get("seed", 0), root=source.get("root")
        )
    )


def _single_images(images: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Images [3, H, W] of an iterable of images or batches [B, 3, H, W]."""
    for item in images:
        yield from (item if item.dim() == 4 else [item])
