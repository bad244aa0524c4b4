"""Records -> decoded, transformed samples (dicts of named fields; default collate stacks them into batches).

A sample holds ``image`` float32 [3, S, S] (normalised), ``label`` float32 [M] (one-hot over the defect types in
mode ``"multi"``, all zeros for normal images; [1] = any defect in mode ``"single"``), ``type_index`` int64 (-1
normal), ``class_index`` int64 (sampler class: the type index, or the number of types for normal images),
``category`` and ``path`` (str), and in evaluation datasets ``mask`` bool [S, S] (all False for normal images)
and ``has_mask`` bool (False for a defective image without a mask file, whose ``mask`` is then all False too:
pixel metrics leave it out).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mtfcdd.core.config import check_choice
from mtfcdd.core.defect_types import MODES
from mtfcdd.data.realiad import RealIADFormatError, Record
from mtfcdd.data.transforms import reseed
from mtfcdd.sampling.balance import class_index

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"


def _read_bytes(path: Path) -> np.ndarray:
    """The file's bytes as uint8 [N]; an unreadable file raises by name."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise RealIADFormatError(f"cannot read image file {path}: {err}") from err


def _decode(data: np.ndarray, name: str) -> np.ndarray:
    """Encoded bytes uint8 [N] -> the pixels as stored (any depth and channel count); corrupt or truncated data
    raise, named ``name`` (e.g. ``image file x.png``)."""
    # libjpeg fills a truncated JPEG with grey and only warns: the end-of-image marker must close the file
    if data[:2].tobytes() == _JPEG_START and _JPEG_END not in data[-32:].tobytes():
        raise RealIADFormatError(f"{name} is truncated (JPEG without its end-of-image marker)")
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise RealIADFormatError(f"cannot decode {name} (corrupt, empty or not an image)")
    return pixels


def _to_uint8(pixels: np.ndarray, name: str) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise RealIADFormatError(f"{name} has {pixels.dtype} pixels; expected 8- or 16-bit integers")


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3] from an 8/16-bit grayscale, gray+alpha, BGR or BGRA file (alpha dropped, 16 bit scaled)."""
    return decode_image(_read_bytes(path), f"image file {path}")


def decode_image(data: bytes | np.ndarray, name: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] from encoded bytes (PNG, JPEG, BMP, TIFF, ...) as ``read_image`` reads files: the
    one decoding of predict and the server; errors name the data as ``name``."""
    pixels = _to_uint8(_decode(np.frombuffer(data, dtype=np.uint8), name), name)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    channels = pixels.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(pixels[..., 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    raise RealIADFormatError(f"{name} has {channels} channels; expected 1 to 4")


def read_mask(path: Path) -> np.ndarray:
    """Binary mask bool [H, W]: a pixel is defective when any colour channel is > 0 (alpha ignored)."""
    pixels = _decode(_read_bytes(path), f"image file {path}")
    if pixels.ndim == 3:
        pixels = pixels[..., : 1 if pixels.shape[2] <= 2 else 3].max(axis=2)
    return pixels > 0


class RealIADDataset(Dataset):
    """Samples of ``records`` through ``transform`` (an albumentations pipeline ending in resize + normalise).

    Args:
        records: the images, in dataset order.
        transform: takes ``image`` (RGB uint8 [H, W, 3]) and, when ``with_masks``, ``mask`` (uint8 [H, W]).
        num_types: label length in mode ``"multi"`` (the number of defect codes the records were indexed with).
        mode: ``"multi"`` (one-hot type labels) or ``"single"`` (one any-defect label).
        with_masks: read masks (evaluation datasets); the mask must have the image's size.
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: A.BaseCompose,
        num_types: int,
        mode: str = "multi",
        with_masks: bool = False,
    ) -> None:
        check_choice("mode", mode, MODES)
        bad = [r.image for r in records if r.type_index >= num_types]
        if bad:
            raise ValueError(f"{len(bad)} records have a type_index >= num_types={num_types}, e.g. {bad[0]}")
        self.records = list(records)
        self.transform = transform
        self.num_types = num_types
        self.mode = mode
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.records)

    def label(self, record: Record) -> torch.Tensor:
        """float32 [M]: one-hot type (multi, M = num_types) or any-defect (single, M = 1); zeros for normal images."""
        if self.mode == "single":
            return torch.tensor([float(record.type_index >= 0)])
        label = torch.zeros(self.num_types)
        if record.type_index >= 0:
            label[record.type_index] = 1.0
        return label

    def __getitem__(self, index: int) -> dict[str, object]:
        record = self.records[index]
        image = read_image(record.image)
        inputs: dict[str, np.ndarray] = {"image": image}
        if self.with_masks:
            if record.mask is None:
                mask = np.zeros(image.shape[:2], dtype=bool)
            else:
                mask = read_mask(record.mask)
                if mask.shape != image.shape[:2]:
                    raise RealIADFormatError(
                        f"mask {record.mask} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {record.image} "
                        f"is {image.shape[1]}x{image.shape[0]}; expected the same size"
                    )
            inputs["mask"] = mask.astype(np.uint8)
        out = self.transform(**inputs)
        sample: dict[str, object] = {
            "image": torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))),
            "label": self.label(record),
            "type_index": torch.tensor(record.type_index, dtype=torch.int64),
            "class_index": torch.tensor(class_index(record.type_index, self.num_types), dtype=torch.int64),
            "category": record.category,
            "path": str(record.image),
        }
        if self.with_masks:
            sample["mask"] = torch.from_numpy(out["mask"] > 0)
            sample["has_mask"] = torch.tensor(record.type_index < 0 or record.mask is not None)
        return sample

    def reseed(self, entropy: int | Sequence[int] | None) -> None:
        """Reseed the augmentation from ``entropy`` (an int or a sequence of ints, see ``reseed``)."""
        reseed(self.transform, entropy)
