"""Fig. 2-style grids: layout, colours, atomic PNG writing."""

import cv2
import numpy as np
import pytest

from mtfcdd.callbacks.heatmaps import row_title, select_examples
from mtfcdd.core.defect_types import ANY_DEFECT_COLOUR, DEFECT_TYPES, REALIAD_VOCABULARY, Vocabulary
from mtfcdd.viz.grids import FigureRow, figure_grid, heat_overlay, save_png

TYPE_COLOURS = [t.colour for t in DEFECT_TYPES]
GREYS = [(k * 20, k * 20, k * 20) for k in range(8)]
"""Distinct colours for channel-count tests."""


def _row(type_index: int, num_types: int, size: int = 32, with_mask: bool = True, decided=None) -> FigureRow:
    rng = np.random.default_rng(type_index + 5)
    mask = np.zeros((size, size), bool)
    mask[4:10, 4:12] = type_index >= 0
    return FigureRow(
        image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        heatmaps=rng.random((num_types, size, size)).astype(np.float32),
        scores=rng.random(num_types).tolist(),
        decided=decided or [False] * num_types,
        title="x",
        mask=mask if with_mask else None,
        type_index=type_index,
    )


def test_grid_has_image_truth_and_one_overlay_per_type():
    grid = figure_grid([_row(3, 8), _row(-1, 8)], [f"t{k}" for k in range(8)], GREYS, gap=4)
    tile_w, tile_h = 32, 32 + 18
    assert grid.shape == (2 * tile_h + 4, 10 * tile_w + 9 * 4, 3) and grid.dtype == np.uint8


def test_grid_without_truth_frames_the_decided_types():
    decided = [False, True, False]
    vocabulary = REALIAD_VOCABULARY
    row = _row(-1, 3, with_mask=False, decided=decided)
    grid = figure_grid([row], list(vocabulary.names[:3]), list(vocabulary.colours[:3]), gap=4)
    tile_w, tile_h = 32, 32 + 18
    assert grid.shape == (tile_h, 4 * tile_w + 3 * 4, 3)  # image + 3 overlays, no ground-truth tile
    left = lambda k: (1 + k) * (tile_w + 4)  # noqa: E731  x of overlay k
    framed = grid[18 + 1, left(1) + 10]  # top frame row of overlay 1, in type colour 1
    assert framed.tolist() == list(TYPE_COLOURS[1])
    assert grid[18 + 1, left(0) + 10].tolist() != list(TYPE_COLOURS[0])


def test_a_defective_image_without_a_mask_gets_a_no_mask_tile_not_the_image_again():
    row = _row(2, 1, size=64)
    row.image = np.asfortranarray(row.image)  # as to_uint8 gives it: a permuted tensor's memory layout
    row.mask = np.zeros((64, 64), bool)  # the data sets' empty mask of an image whose mask is unknown
    known = figure_grid([row], ["crack"], [(255, 0, 0)], gap=4)
    row.mask_known = False
    unknown = figure_grid([row], ["crack"], [(255, 0, 0)], gap=4)
    assert unknown.shape == known.shape  # same columns: image | ground truth | overlay
    tile = lambda grid: grid[18:, 64 + 4 : 2 * 64 + 4].astype(int)  # noqa: E731  the ground-truth tile
    np.testing.assert_array_equal(tile(known), row.image)  # an empty known mask: the image itself
    dark = (row.image.astype(np.float32) * 0.25).astype(int)
    text = (tile(unknown) != dark).any(axis=2)
    assert text.sum() > 30 and (tile(unknown)[text] > dark[text]).all()  # "no mask" written in white on it
    assert (tile(unknown)[~text] == dark[~text]).all()


def test_a_subset_of_codes_keeps_each_type_colour():
    """data.defect_codes=[AK, HS]: channel 1 is the scratch channel, drawn (frame and ground truth) in the scratch
    colour, not in the colour of the second type of the full list."""
    vocabulary = Vocabulary.from_codes(["AK", "HS"])
    names = vocabulary.channel_names("multi")
    assert names == ["pit", "scratch"]
    grid = figure_grid([_row(1, 2, decided=[False, True])], names, vocabulary.channel_colours("multi"), gap=4)
    tile_w = 32
    left = lambda k: (2 + k) * (tile_w + 4)  # noqa: E731  x of overlay k (after image and ground truth)
    assert grid[18 + 1, left(1) + 10].tolist() == list(vocabulary.colour("scratch")) == list(TYPE_COLOURS[3])
    truth = grid[18 + 6, tile_w + 4 + 4]  # the mask outline (mask rows 4..9, cols 4..11) in the truth tile
    assert truth.tolist() == list(TYPE_COLOURS[3])


def test_titles_name_the_configured_codes():
    """type_index 1 of a run on [AK, HS] is a scratch (HS), not the second code of the full list (BX)."""
    assert row_title(1, "mint", ["AK", "HS"]) == "HS mint"
    assert row_title(-1, "mint", ["AK", "HS"]) == "OK mint"


def test_single_channel_uses_the_any_defect_colour():
    vocabulary = Vocabulary.from_codes(["AK", "HS"])
    assert vocabulary.channel_names("single") == ["anomaly"]
    assert vocabulary.channel_colours("single") == [ANY_DEFECT_COLOUR]
    assert vocabulary.colour("anomaly") == ANY_DEFECT_COLOUR


def test_new_types_are_drawn_and_titled_in_their_own_names_and_colours():
    """A folder vocabulary [crack, dent, rust]: overlay k framed in type k's colour, ground truth in the true
    type's colour, captions and titles with the new names; colours and names must come in equal numbers."""
    vocabulary = Vocabulary.from_codes(["crack", "dent", "rust"], colours={"rust": [10, 200, 90]})
    grid = figure_grid([_row(2, 3, decided=[False, False, True])], list(vocabulary.names), vocabulary.colours, gap=4)
    tile_w = 32
    left = lambda k: (2 + k) * (tile_w + 4)  # noqa: E731  x of overlay k (after image and ground truth)
    assert grid[18 + 1, left(2) + 10].tolist() == [10, 200, 90]
    assert grid[18 + 6, tile_w + 4 + 4].tolist() == [10, 200, 90]  # ground truth outline: rust
    assert row_title(2, "gear", vocabulary.codes) == "rust gear"
    with pytest.raises(ValueError, match="2 colours for 3 type names"):
        figure_grid([_row(2, 3)], list(vocabulary.names), vocabulary.colours[:2])


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
    assert select_examples(types, 8, per_type=1, normal=1) == [3, 1, 5, 0]
    assert select_examples(types, 8, per_type=2, normal=0) == [3, 6, 1, 2, 5]
    assert select_examples(types, 3, per_type=1, normal=1) == [3, 1, 0]  # a subset of 3 codes


def test_save_png_round_trips_and_leaves_nothing_on_failure(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255
    path = save_png(image, tmp_path / "a" / "grid.png")
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    with pytest.raises(ValueError, match="could not encode a PNG"):
        save_png(np.zeros((0, 0, 3), np.uint8), tmp_path / "b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
