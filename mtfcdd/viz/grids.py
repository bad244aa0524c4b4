"""Per-type heatmap figures in the style of the paper's Fig. 2.

Each row: the input image, its ground-truth mask coloured by the defect type (when known), then one overlay per
heatmap channel (a black-to-type-colour colormap of the calibrated heatmap in [0, 1], blended over the image),
captioned with the type and its image score; types the pipeline decided are framed in their colour. The names and
colours are the run vocabulary's (``AnomalyModule.type_names`` / ``type_colours``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.core.defect_types import RGB
from mtfcdd.model.pipeline import PipelineOutput


@dataclass
class FigureRow:
    """One figure row. ``image``: RGB uint8 [H, W, 3]; ``heatmaps``: calibrated heatmaps in [0, 1], float
    [M, H, W]; ``scores``: the M image scores; ``decided``: M bools (framed); ``title``: shown over the image;
    ``mask``: bool [H, W] ground truth, or None where no image of the figure has one (no ground-truth column);
    ``mask_known``: False for a defective image without a mask among images with masks (its tile reads "no mask");
    ``type_index``: the true type, -1 normal."""

    image: np.ndarray
    heatmaps: np.ndarray
    scores: Sequence[float]
    decided: Sequence[bool]
    title: str
    mask: np.ndarray | None = None
    type_index: int = -1
    mask_known: bool = True


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Raw RGB [3, H, W] in [0, 1] -> RGB uint8 [H, W, 3]."""
    return (image.detach().cpu().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def heat_overlay(
    image: np.ndarray, heat01: np.ndarray, colour: tuple[int, int, int], strength: float = 0.75
) -> np.ndarray:
    """Blend the black-to-``colour`` colormap of ``heat01`` [H, W] over a dimmed ``image``; uint8 [H, W, 3]."""
    heat = np.clip(heat01, 0.0, 1.0)[..., None]
    coloured = heat * np.asarray(colour, dtype=np.float32)[None, None, :]
    base = image.astype(np.float32) * (1.0 - strength * heat) * 0.6
    return np.clip(base + strength * coloured + (1 - strength) * heat * image, 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """The ground-truth mask painted in ``colour`` (half transparent) with its outline; uint8 [H, W, 3]."""
    out = image.copy()
    if mask.any():
        out[mask] = (0.5 * out[mask] + 0.5 * np.asarray(colour)).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, 1)
    return out


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with a caption strip of ``text`` above it."""
    strip = np.zeros((18, tile.shape[1], 3), dtype=np.uint8)
    cv2.putText(
        strip,
        text[: max(1, tile.shape[1] // 7)],
        (3, 13),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return np.concatenate([strip, tile], axis=0)


def figure_rows(
    images: torch.Tensor,
    outputs: PipelineOutput,
    titles: Sequence[str],
    masks: torch.Tensor | None = None,
    type_indices: Sequence[int] | None = None,
    has_masks: Sequence[bool] | None = None,
) -> list[FigureRow]:
    """Figure rows of a batch: raw images [B, 3, H, W] in [0, 1] and the pipeline's outputs for them (calibrated
    heatmaps, scores, decisions); ``masks`` bool [B, H, W] and true ``type_indices`` where known; ``has_masks``:
    False where an image's mask is unknown (the data sets' ``has_mask``; None: every mask known)."""
    calibrated = outputs.calibrated.detach().float().cpu().numpy()
    scores = outputs.scores.detach().float().cpu().tolist()
    decided = outputs.decisions.detach().cpu().tolist()
    return [
        FigureRow(
            image=to_uint8(images[i]),
            heatmaps=calibrated[i],
            scores=scores[i],
            decided=decided[i],
            title=titles[i],
            mask=None if masks is None else masks[i].detach().cpu().numpy().astype(bool),
            type_index=-1 if type_indices is None else int(type_indices[i]),
            mask_known=True if has_masks is None else bool(has_masks[i]),
        )
        for i in range(len(images))
    ]


def _no_mask_tile(image: np.ndarray) -> np.ndarray:
    """The ground-truth tile of an image whose mask is unknown: the image darkened, "no mask" written across it."""
    tile = np.ascontiguousarray(image.astype(np.float32) * 0.25, dtype=np.uint8)
    height, width = tile.shape[:2]
    scale = max(0.4, width / 200)
    (text_w, text_h), _ = cv2.getTextSize("no mask", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    origin = ((width - text_w) // 2, (height + text_h) // 2)
    cv2.putText(tile, "no mask", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _frame(tile: np.ndarray, colour: tuple[int, int, int], width: int = 3) -> np.ndarray:
    framed = tile.copy()
    framed[:width], framed[-width:], framed[:, :width], framed[:, -width:] = colour, colour, colour, colour
    return framed


def figure_grid(
    rows: list[FigureRow], type_names: Sequence[str], type_colours: Sequence[RGB], gap: int = 4
) -> np.ndarray:
    """Fig. 2-style grid: per row image | ground truth (when known) | one overlay per channel, named
    ``type_names[k]`` and drawn in ``type_colours[k]`` (RGB 0-255). RGB uint8."""
    if not rows:
        raise ValueError("figure_grid needs at least one row")
    num_types = len(type_names)
    if len(type_colours) != num_types:
        raise ValueError(f"figure_grid: {len(type_colours)} colours for {num_types} type names")
    lines = []
    for row in rows:
        tiles = [_label(row.image, row.title)]
        if row.mask is not None and not row.mask_known:
            tiles.append(_label(_no_mask_tile(row.image), "no mask"))
        elif row.mask is not None:
            # a single channel (mode single) stands for every type
            truth = row.type_index if num_types > 1 else 0
            truth_colour = (255, 255, 255) if row.type_index < 0 else tuple(type_colours[truth])
            tiles.append(_label(mask_overlay(row.image, row.mask, truth_colour), "ground truth"))
        for k, (name, colour) in enumerate(zip(type_names, map(tuple, type_colours))):
            overlay = heat_overlay(row.image, row.heatmaps[k], colour)
            if row.decided[k]:
                overlay = _frame(overlay, colour)
            tiles.append(_label(overlay, f"{'! ' if row.decided[k] else ''}{name} {row.scores[k]:.3g}"))
        spacer = np.zeros((tiles[0].shape[0], gap, 3), dtype=np.uint8)
        lines.append(np.concatenate([t for tile in tiles for t in (tile, spacer)][:-1], axis=1))
    spacer = np.zeros((gap, lines[0].shape[1], 3), dtype=np.uint8)
    return np.concatenate([t for line in lines for t in (line, spacer)][:-1], axis=0)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write RGB uint8 ``image`` as a PNG atomically (no partial file on failure)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)) if image.size else (False, None)
    if not ok:
        raise ValueError(f"could not encode a PNG of shape {image.shape} for {path}")
    return write_bytes_atomic(path, encoded.tobytes())
