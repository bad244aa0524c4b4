"""Read an offline W&B run file (``run-<id>.wandb``): a LevelDB-style log of W&B's protobuf records."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7  # crc32 (4 bytes), length (2), chunk type (1): 1 full, 2 first, 3 middle, 4 last


def records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks = 7, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        chunks.append(data[pos + HEADER : pos + HEADER + length])
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def run_summary(path: Path) -> dict:
    """The run's group, tags and config (top-level keys, JSON-decoded) as logged."""
    out: dict = {"config": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["tags"] = record.run.run_group, list(record.run.tags)
        elif kind == "config":
            out["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
    return out
