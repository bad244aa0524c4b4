"""Fig. 2-style grids: layout, colours, atomic PNG writing."""

import cv2
import numpy as np
import pytest

from mtfcdd.callbacks.heatmaps import select_examples
from mtfcdd.viz import TYPE_COLOURS, FigureRow, figure_grid, heat_overlay, save_png


def _row(type_index: int, num_types: int, size: int = 32) -> FigureRow:
    rng = np.random.default_rng(type_index + 5)
    mask = np.zeros((size, size), bool)
    mask[4:10, 4:12] = type_index >= 0
    return FigureRow(
        image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        mask=mask,
        type_index=type_index,
        heatmaps=rng.random((num_types, size, size)).astype(np.float32),
        title="x",
    )


def test_grid_has_image_truth_and_one_overlay_per_type():
    grid = figure_grid([_row(3, 8), _row(-1, 8)], [f"t{k}" for k in range(8)], gap=4)
    tile_w, tile_h = 32, 32 + 18
    assert grid.shape == (2 * tile_h + 4, 10 * tile_w + 9 * 4, 3) and grid.dtype == np.uint8


def test_overlay_maps_heat_to_the_type_colour():
    black = np.zeros((4, 4, 3), np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    out = heat_overlay(black, heat, TYPE_COLOURS[5])
    assert out[1, 1].tolist() == [0, 0, 0]
    hot = out[0, 0].astype(float)
    assert np.argmax(hot) == np.argmax(TYPE_COLOURS[5]) and hot.max() > 150


def test_select_examples_one_per_type_then_normal():
    types = [-1, 2, 2, 0, -1, 7, 0]
    assert select_examples(types, per_type=1, normal=1) == [3, 1, 5, 0]
    assert select_examples(types, per_type=2, normal=0) == [3, 6, 1, 2, 5]


def test_save_png_round_trips_and_leaves_nothing_on_failure(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255
    path = save_png(image, tmp_path / "a" / "grid.png")
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    with pytest.raises(Exception):
        save_png(np.zeros((0, 0, 3), np.uint8), tmp_path / "b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
