"""Per-type heatmap figures in the style of the paper's Fig. 2.

Each row: the input image, its ground-truth mask coloured by the defect type, then one overlay per heatmap channel
(a black-to-type-colour colormap of the calibrated heatmap in [0, 1], blended over the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mtfcdd.atomic_io import write_bytes_atomic

TYPE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 60, 60),  # pit: red
    (255, 160, 0),  # deformation: orange
    (240, 230, 40),  # abrasion: yellow
    (60, 220, 60),  # scratch: green
    (40, 200, 255),  # damage: cyan
    (70, 100, 255),  # missing parts: blue
    (200, 80, 255),  # foreign objects: violet
    (255, 90, 200),  # contamination: pink
)
"""RGB colour of each defect type, in the order of ``DEFECT_CODES``."""
ANY_DEFECT_COLOUR = (255, 60, 60)


@dataclass
class FigureRow:
    """One figure row. ``image``: RGB uint8 [H, W, 3]; ``mask``: bool [H, W]; ``type_index``: -1 normal, else 0..7;
    ``heatmaps``: calibrated heatmaps in [0, 1], float [M, H, W]; ``title``: shown over the image."""

    image: np.ndarray
    mask: np.ndarray
    type_index: int
    heatmaps: np.ndarray
    title: str


def type_colour(type_index: int, num_types: int) -> tuple[int, int, int]:
    """Colour of heatmap channel / defect type ``type_index`` (single-channel models use one colour)."""
    return ANY_DEFECT_COLOUR if num_types == 1 else TYPE_COLOURS[type_index % len(TYPE_COLOURS)]


def denormalise(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """Network input [3, H, W] -> RGB uint8 [H, W, 3]."""
    rgb = image.detach().cpu().float() * std.view(3, 1, 1).cpu() + mean.view(3, 1, 1).cpu()
    return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def heat_overlay(image: np.ndarray, heat01: np.ndarray, colour: tuple[int, int, int], strength: float = 0.75) -> np.ndarray:
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
    cv2.putText(strip, text[: max(1, tile.shape[1] // 7)], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def figure_grid(rows: list[FigureRow], type_names: list[str], gap: int = 4) -> np.ndarray:
    """Fig. 2-style grid: per row image | ground truth | one overlay per type. RGB uint8."""
    if not rows:
        raise ValueError("figure_grid needs at least one row")
    num_types = len(type_names)
    lines = []
    for row in rows:
        truth_colour = type_colour(row.type_index, num_types) if row.type_index >= 0 else (255, 255, 255)
        tiles = [_label(row.image, row.title), _label(mask_overlay(row.image, row.mask, truth_colour), "ground truth")]
        for k, name in enumerate(type_names):
            overlay = heat_overlay(row.image, row.heatmaps[k], type_colour(k, num_types))
            tiles.append(_label(overlay, f"{name} {row.heatmaps[k].max():.2f}"))
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
