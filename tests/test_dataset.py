"""Decoding (grayscale, RGBA, 16 bit, corrupt files), masks, sample fields, and the train / eval transforms."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_realiad_index import write_realiad

from mtfcdd.core.config import ConfigError
from mtfcdd.data.dataset import RealIADDataset, read_image, read_mask
from mtfcdd.data.realiad import RealIADFormatError, Record, load_split
from mtfcdd.data.transforms import Augment, check_normalisation, eval_transform, reseed, train_transform
from mtfcdd.resume.loader import SeededDraws

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NO_AUGMENT = {"rotate_deg": 0, "translate_px": 0, "brightness": 0, "contrast": 0}


def _record(image: Path, mask: Path | None = None, type_index: int = -1) -> Record:
    return Record(
        image=image,
        mask=mask,
        category="cat",
        anomaly_class="HS" if mask else "OK",
        type_index=type_index,
        sample="cat/OK/S0001",
        view="C1",
    )


def _rgb_reference() -> np.ndarray:
    """RGB uint8 [4, 6, 3] with distinct channel values."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 30
    rgb[0, 0] = (1, 2, 3)
    return rgb


def test_colour_image_loads_as_rgb(tmp_path):
    rgb = _rgb_reference()
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)


def test_grayscale_rgba_and_16_bit_images_load_as_rgb_uint8(tmp_path):
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    out = read_image(tmp_path / "gray.png")
    assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
    assert all(np.array_equal(out[..., c], gray) for c in range(3))

    rgb = _rgb_reference()
    bgra = np.dstack([rgb[..., ::-1], np.full((4, 6), 17, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)

    deep = (rgb.astype(np.uint16) * 257)[..., ::-1]  # 8-bit value v is 257 v in 16 bit
    deep[0, 0] = (65535, 32896, 127)  # BGR: 255, 128 (32896 / 257 = 128), 0 (127 / 257 rounds down)
    cv2.imwrite(str(tmp_path / "deep.png"), np.ascontiguousarray(deep))
    assert cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    expected = rgb.copy()
    expected[0, 0] = (0, 128, 255)
    assert np.array_equal(read_image(tmp_path / "deep.png"), expected)

    gray16 = gray.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "gray16.png"), gray16)
    assert np.array_equal(read_image(tmp_path / "gray16.png")[..., 1], gray)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_image_raises_naming_the_file(tmp_path, damage):
    path = tmp_path / "broken_C1_1.jpg"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes({"garbage": b"not an image at all", "empty": b"", "truncated": data[: len(data) // 2]}[damage])
    with pytest.raises(RealIADFormatError, match="broken_C1_1.jpg"):
        read_image(path)


def test_missing_file_at_read_time_is_named(tmp_path):
    with pytest.raises(RealIADFormatError, match="gone.jpg"):
        read_image(tmp_path / "gone.jpg")


def test_masks_are_binarised_above_zero(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0], mask[1, 1], mask[2, 2] = 1, 128, 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask > 0)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255  # opaque alpha does not count as defect
    rgba[3, 3, 1] = 9
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert np.argwhere(read_mask(tmp_path / "rgba.png")).tolist() == [[3, 3]]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Record]:
    root = write_realiad(tmp_path_factory.mktemp("realiad"), categories=("audiojack",))
    return load_split(root, split="test")


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_eval_samples_carry_named_fields(records, mode):
    dataset = RealIADDataset(records, eval_transform(24), num_types=8, mode=mode, with_masks=True)
    assert len(dataset) == len(records)
    for record, sample in zip(records, (dataset[i] for i in range(len(dataset)))):
        assert sample["image"].shape == (3, 24, 24) and sample["image"].dtype == torch.float32
        assert sample["mask"].shape == (24, 24) and sample["mask"].dtype == torch.bool
        assert sample["type_index"].dtype == torch.int64 and int(sample["type_index"]) == record.type_index
        assert int(sample["class_index"]) == (8 if record.type_index < 0 else record.type_index)  # normal last
        assert sample["category"] == "audiojack" and sample["path"] == str(record.image)
        label = sample["label"]
        assert label.dtype == torch.float32
        if mode == "single":
            assert label.tolist() == [float(record.type_index >= 0)]
        else:
            expected = [0.0] * 8
            if record.type_index >= 0:
                expected[record.type_index] = 1.0
            assert label.tolist() == expected
        # the written mask is the square [4:8, 4:8] of 16 px, i.e. [6:12, 6:12] at 24 px (nearest)
        if record.mask is None:
            assert not sample["mask"].any()
        else:
            assert torch.equal(sample["mask"].nonzero().unique(), torch.arange(6, 12))


def test_training_samples_have_no_mask_and_collate(records):
    dataset = RealIADDataset(records, eval_transform(8), num_types=8)
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert "mask" not in batch
    assert batch["image"].shape == (2, 3, 8, 8) and batch["label"].shape == (2, 8)
    assert batch["type_index"].shape == (2,) and isinstance(batch["path"], list)


def test_eval_transform_serves_rgb_in_the_unit_range(tmp_path):
    value = np.array([10, 128, 250], np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), np.broadcast_to(value[::-1], (5, 7, 3)).copy())
    sample = RealIADDataset([_record(tmp_path / "c.png")], eval_transform(9), num_types=8)[0]
    expected = value / 255.0  # the inference pipeline normalises
    assert np.allclose(sample["image"].mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    assert np.allclose(sample["image"].std(dim=(1, 2)).numpy(), 0, atol=1e-5)


def test_mask_of_another_size_is_rejected_naming_both_files(tmp_path):
    cv2.imwrite(str(tmp_path / "i.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((4, 4), np.uint8))
    dataset = RealIADDataset(
        [_record(tmp_path / "i.png", tmp_path / "m.png", 3)], eval_transform(8), 8, with_masks=True
    )
    with pytest.raises(RealIADFormatError, match=r"m\.png is 4x4 pixels but its image .*i\.png is 8x8"):
        dataset[0]


def test_type_index_beyond_the_label_length_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="type_index >= num_types=2"):
        RealIADDataset([_record(tmp_path / "i.png", tmp_path / "m.png", 5)], eval_transform(8), 2)


def _marker(size: int = 64, right: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A black image with one bright 3x3 block ``right`` px right of the centre, and its mask."""
    image = np.zeros((size, size, 3), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    c = size // 2
    image[c - 1 : c + 2, c + right - 1 : c + right + 2] = 255
    mask[c - 1 : c + 2, c + right - 1 : c + right + 2] = 1
    return image, mask


def _centroid(values: np.ndarray) -> np.ndarray:
    return np.argwhere(values).mean(axis=0)  # (row, col)


def test_rotation_stays_within_the_limit_and_masks_follow_images():
    image, mask = _marker()
    transform = train_transform(64, Augment(p=1, rotate_deg=15, translate_px=0, brightness=0, contrast=0), seed=1)
    angles = []
    for _ in range(40):
        out = transform(image=image, mask=mask)
        assert set(np.unique(out["mask"])) <= {0, 1}
        bright = out["image"][..., 0] > 0.5
        row, col = _centroid(bright) - 31.5
        angles.append(math.degrees(math.atan2(-row, col)))
        assert np.abs(_centroid(out["mask"]) - _centroid(bright)).max() <= 1.0
    assert max(abs(a) for a in angles) <= 15 + 3  # marker pixels quantise the angle
    assert max(angles) > 5 and min(angles) < -5


def test_translation_stays_within_the_limit_in_pixels_of_the_image_read():
    image, mask = _marker(64, right=0)
    augment = Augment(p=1, rotate_deg=0, translate_px=20, brightness=0, contrast=0)
    transform = train_transform(32, augment, seed=2)  # shift at 64 px, then resize to 32
    shifts = []
    for _ in range(40):
        out = transform(image=image, mask=mask)
        shifts.append((_centroid(out["mask"]) * 2 + 0.5) - _centroid(mask))  # back to 64-px coordinates
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 20 + 1.5
    assert np.abs(shifts).max(axis=0).min() > 8  # both axes move


def test_dihedral_draws_all_eight_symmetries_of_the_square_and_masks_follow():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = (rng.random((16, 16)) > 0.7).astype(np.uint8)
    symmetries = [np.rot90(a, k) for a in (image, image[:, ::-1]) for k in range(4)]
    index = {s.tobytes(): k for k, s in enumerate(symmetries)}
    transform = train_transform(16, Augment(p=0, dihedral=True), seed=6)  # no augmentation block: symmetries only
    seen = Counter()
    for _ in range(160):
        out = transform(image=image, mask=mask)
        pixels = np.round(out["image"] * 255).astype(np.uint8)
        k = index[pixels.tobytes()]  # exactly one of the 8
        seen[k] += 1
        moved_mask = [np.rot90(a, j) for a in (mask, mask[:, ::-1]) for j in range(4)][k]
        np.testing.assert_array_equal(out["mask"], moved_mask)
    assert len(seen) == 8 and min(seen.values()) >= 8
    plain = train_transform(16, Augment(p=0), seed=6)(image=image)["image"]
    np.testing.assert_array_equal(np.round(plain * 255).astype(np.uint8), image)  # dihedral off: untouched


def test_augmentation_hits_about_share_p_of_the_images():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    reference = eval_transform(16)(image=image)["image"]
    for p, low, high in ((0.0, 0, 0), (0.5, 60, 140), (1.0, 200, 200)):
        transform = train_transform(16, Augment(p=p), seed=3)
        changed = sum(not np.allclose(transform(image=image)["image"], reference) for _ in range(200))
        assert low <= changed <= high, (p, changed)


def test_brightness_shift_stays_within_its_limit():
    image = np.full((8, 8, 3), 100, np.uint8)
    transform = train_transform(8, Augment(p=1, **{**NO_AUGMENT, "brightness": 0.2}), seed=4)
    shifts = np.array([transform(image=image)["image"].mean() - 100 / 255 for _ in range(100)])
    assert np.abs(shifts).max() <= 0.2 + 1e-6 and shifts.max() > 0.05 and shifts.min() < -0.05


def test_reseeding_controls_the_augmentation_stream():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    transform = train_transform(16, Augment(p=1), seed=5)

    def draws(seed: int) -> list[np.ndarray]:
        reseed(transform, seed)
        return [transform(image=image)["image"] for _ in range(3)]

    first, again, other = draws(7), draws(7), draws(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.allclose(a, b) for a, b in zip(first, other))


def test_each_draw_has_its_own_augmentation_whatever_the_worker(records):
    transform = train_transform(16, Augment(p=1, translate_px=2), seed=0)  # the image stays in view
    dataset = SeededDraws(RealIADDataset(records, transform, num_types=8), seed=0)
    keys = [(0, 0, 0), (0, 0, 1), (0, 0, 0)]  # image 0 at draws 0 and 1, and draw 0 again
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, sampler=keys, num_workers=workers)
        first, second, again = (batch["image"] for batch in loader)
        assert not torch.allclose(first, second) and torch.equal(first, again)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rotate": 10}, r"unknown keys \['rotate'\]"),
        ({"p": 1.5}, r"data.augment.p=1.5 .*\[0, 1\]"),
        ({"translate_px": -3}, r"data.augment.translate_px=-3 .*non-negative"),
        ({"translate_px": 2.5}, r"whole pixels"),
        ({"brightness": "lots"}, r"data.augment.brightness='lots'"),
        ({"dihedral": 1}, r"data.augment.dihedral=1 is not valid; expected true or false"),
    ],
)
def test_bad_augment_settings_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        Augment.from_mapping(values)


def test_bad_size_is_rejected():
    with pytest.raises(ConfigError, match="data.image_size=0"):
        eval_transform(0)


@pytest.mark.parametrize(("mean", "std", "message"), [((0.5, 0.5), STD, "data.mean="), (MEAN, (1, 0, 1), "data.std=")])
def test_bad_normalisation_is_rejected(mean, std, message):
    with pytest.raises(ConfigError, match=message):
        check_normalisation(mean, std)
