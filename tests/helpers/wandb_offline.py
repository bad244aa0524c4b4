"""Read what an offline W&B run stored: the records of its ``run-*.wandb`` file (W&B's header, then LevelDB-log
framed protobuf ``Record`` messages), so tests can check what a run logged without a server."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

HEADER = 7  # b":W&B", magic 0xBEE1 (little endian), version byte
BLOCK = 32768
CHUNK_HEADER = 7  # crc32, length (uint16 LE), type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, offset = [], b"", HEADER
    while offset + CHUNK_HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < CHUNK_HEADER:
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + CHUNK_HEADER])
        chunk = data[offset + CHUNK_HEADER : offset + CHUNK_HEADER + length]
        offset += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def run_file(run_dir: Path) -> Path:
    (path,) = Path(run_dir).glob("run-*.wandb")
    return path


def history(run_dir: Path) -> list[dict]:
    """Every logged step as ``{key: value}`` (values JSON-decoded, as W&B stores them)."""
    steps = []
    for record in records(run_file(run_dir)):
        if record.WhichOneof("record_type") == "history":
            steps.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return steps


def run_info(run_dir: Path) -> wandb_internal_pb2.RunRecord:
    """The run record: project, run_group, job_type, tags."""
    for record in records(run_file(run_dir)):
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise AssertionError(f"no run record in {run_dir}")
