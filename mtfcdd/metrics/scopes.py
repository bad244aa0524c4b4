"""Evaluation scopes: every image, or one object category, keyed by a code that is the same in every process."""

from __future__ import annotations

import hashlib

import torch

NAME_BYTES = 64
"""Longest category name (UTF-8 bytes) the per-category states hold."""


def category_code(name: str) -> int:
    """A category's scope code: 48 bits of its BLAKE2b hash, the same in every process (histogram keys hold it)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=6).digest(), "big")


def encode_name(name: str) -> torch.Tensor:
    """A category name as uint8 [NAME_BYTES] (UTF-8, zero-padded), so that it can travel in a synced state."""
    data = name.encode()
    if len(data) > NAME_BYTES:
        raise ValueError(f"category {name!r}: names of at most {NAME_BYTES} UTF-8 bytes are supported")
    return torch.tensor(list(data.ljust(NAME_BYTES, b"\0")), dtype=torch.uint8)


def decode_name(row: torch.Tensor) -> str:
    """The inverse of ``encode_name``."""
    return bytes(row.tolist()).rstrip(b"\0").decode()
