"""The inference worker's side of the server: a LitServe ``LitAPI`` that holds one loaded pipeline and answers
batches of decoded images with the per-image record of ``predictions.jsonl`` (one function writes both:
``mtfcdd.model.outputs.image_records``).

Each worker process loads the checkpoint once in ``PipelineAPI.setup`` (``load_pipeline``, the int8 calibration
rule of ``mtfcdd.inference.calibration``, ``build_engine``), publishes the model's description for ``/info``
and marks itself ready; a worker that dies is started again by LitServe and loads it again. The HTTP side
(``mtfcdd.serving.server``) has decoded every image already, so one bad image never fails a batch.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from queue import Empty
from typing import Any

import cv2
import litserve as ls
import numpy as np
import torch
from litserve.loops.base import collate_requests
from litserve.loops.simple_loops import BatchedLoop

from mtfcdd.core.checksum import checkpoint_identity
from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.cpu import physical_cores
from mtfcdd.inference.engines import build_engine
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.model.components.config import type_colours, type_names
from mtfcdd.model.outputs import PipelineOutput, column_name, image_records, record_columns
from mtfcdd.model.pipeline import InferencePipeline
from mtfcdd.serving.shared import SharedState

log = logging.getLogger(__name__)

ANY_DEFECT = "any_defect"
"""The key of the any-defect view among ``thresholds`` and ``heatmaps``."""


def finite_or_none(value: float) -> float | None:
    """``value`` as a JSON number, None where it is infinite or NaN (a threshold that was never calibrated)."""
    value = float(value)
    return value if math.isfinite(value) else None


def thresholds(pipeline: InferencePipeline, names: Sequence[str]) -> dict[str, float | None]:
    """Type name -> its image threshold, and ``any_defect`` -> the any-defect threshold (the detector's when one is
    attached); None where none was calibrated."""
    any_defect = pipeline.anomaly_threshold if pipeline.detector is None else pipeline.detector.anomaly_threshold
    values = {name: finite_or_none(t) for name, t in zip(names, pipeline.image_threshold.tolist())}
    return {**values, ANY_DEFECT: finite_or_none(any_defect.item())}


def served_checkpoints(ckpt_path: str | Path, detector_ckpt: str | Path | None) -> dict[str, dict | None]:
    """``checkpoint`` and ``detector_checkpoint`` (None without one) as ``checkpoint_identity`` names them: what
    ``/info`` says it serves, in the shape ``results.json`` names what it tested."""
    return {"checkpoint": checkpoint_identity(ckpt_path), "detector_checkpoint": checkpoint_identity(detector_ckpt)}


def stored_test_metrics(served: Mapping[str, dict | None], pipeline: InferencePipeline) -> dict | None:
    """The test results of the training run that wrote the served checkpoint (``<run>/results.json`` beside its
    ``checkpoints/`` folder) when they are this model's: the same checkpoint files tested (SHA-256 of
    ``checkpoint`` and ``detector_checkpoint``, ``served`` as ``served_checkpoints`` gives them) and the same type
    rule; else None (no results, a run that tested its best checkpoint while its last is served, another
    detector or type rule, a results.json older than these fields)."""
    path = Path(served["checkpoint"]["path"]).parent.parent / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tested = results.get("checkpoints") or {}
    for name in ("checkpoint", "detector_checkpoint"):
        if (tested.get(name) or {}).get("sha256") != (served[name] or {}).get("sha256"):
            return None
    return results if results.get("type_rule") == pipeline.type_rule else None


def model_info(
    pipeline: InferencePipeline, cfg: Any, engine_name: str, ckpt_path: str | Path, detector_ckpt: str | Path | None
) -> dict[str, Any]:
    """What ``GET /info`` says about the model (the server adds its limits): name, types with colours, thresholds,
    input size, engine, the checkpoint and detector checkpoint (path and SHA-256), their stored test metrics
    (``stored_test_metrics``), image score kind, type rule, and the columns of predict's CSV (each type's
    ``column``: its name in them)."""
    names = type_names(cfg)
    served = served_checkpoints(ckpt_path, detector_ckpt)
    return {
        "model": pipeline.model_name,
        "types": [
            {"name": n, "column": column_name(n), "colour": "#{:02x}{:02x}{:02x}".format(*c)}
            for n, c in zip(names, type_colours(cfg))
        ],
        "columns": record_columns(names),
        "thresholds": thresholds(pipeline, names),
        "image_size": int(cfg.data.image_size),
        "engine": engine_name,
        **served,
        "test_metrics": stored_test_metrics(served, pipeline),
        "score": pipeline.image_score,
        "type_rule": pipeline.type_rule,
    }


def png_base64(pixels: np.ndarray) -> str:
    """Base64 of the PNG of uint8 pixels [H, W] (gray) or [H, W, 3] (RGB)."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def to_uint8(values: torch.Tensor) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 0..255, rounded."""
    return (values.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def any_defect_image(anomaly_map: torch.Tensor, threshold: float | None) -> np.ndarray:
    """The any-defect map [H, W] as 8-bit gray: ``map / threshold / 2`` clipped to [0, 1], so that 128 is the
    threshold; without a calibrated (finite, positive) threshold, ``map / its maximum`` (255 = the hottest pixel)."""
    if threshold is not None and threshold > 0:
        return to_uint8(anomaly_map / threshold / 2.0)
    peak = float(anomaly_map.max())
    return to_uint8(anomaly_map / peak if peak > 0 else torch.zeros_like(anomaly_map))


def heatmap_images(image: torch.Tensor, outputs: PipelineOutput, j: int, limits: Mapping[str, Any], names) -> dict:
    """``image`` (base64 PNG of the RGB input [3, S, S] the model saw) and ``heatmaps`` (type name -> base64 gray
    PNG of its calibrated heatmap, ``any_defect`` -> ``any_defect_image``) of image ``j`` of a batch."""
    maps = {name: png_base64(to_uint8(outputs.calibrated[j, k])) for k, name in enumerate(names)}
    maps[ANY_DEFECT] = png_base64(any_defect_image(outputs.anomaly_map[j], limits[ANY_DEFECT]))
    return {"image": png_base64(to_uint8(image).transpose(1, 2, 0)), "heatmaps": maps}


def pin_worker(worker_id: int, workers: int) -> None:
    """Give worker ``worker_id`` of ``workers`` its own share of the allowed CPUs (all of them for one worker), so
    that engines sized by ``physical_cores`` do not oversubscribe the machine."""
    allowed = sorted(os.sched_getaffinity(0))
    share = max(1, len(allowed) // workers)
    start = (worker_id * share) % len(allowed)
    os.sched_setaffinity(0, allowed[start : start + share] if workers > 1 else allowed)
    torch.set_num_threads(physical_cores())


IDLE_WAIT = 0.25
"""Seconds a worker blocks on an empty request queue before it looks again (LitServe's loop polls it without pause,
which burns a core on an idle server)."""


class _Prefetched:
    """A request queue whose next ``get`` returns ``first`` (a request taken from it already), then its own."""

    def __init__(self, queue: Any, first: Any) -> None:
        self.queue, self.first, self.taken = queue, first, False

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not self.taken:
            self.taken = True
            return self.first
        return self.queue.get(block, timeout)

    def get_nowait(self) -> Any:
        return self.get(block=False)


class BlockingBatchedLoop(BatchedLoop):
    """LitServe's batched loop, blocking (not polling) until the first request of a batch arrives; the rest of the
    batch is what arrives within ``batch_timeout`` from then (or is queued already, for 0), up to
    ``max_batch_size``."""

    def get_batch_requests(self, lit_api: ls.LitAPI, request_queue: Any, transport: Any) -> tuple[list, list]:
        try:
            first = request_queue.get(timeout=IDLE_WAIT)
        except Empty:
            return [], []
        return collate_requests(self, lit_api, _Prefetched(request_queue, first), transport)


class PipelineAPI(ls.LitAPI):
    """Decoded images in, JSON answers out (module docstring).

    ``settings``: ``ckpt_path``, ``detector_ckpt``, ``type_rule``, ``inference`` (an ``inference`` config),
    ``int8_images`` (where int8 calibration images come from) and ``workers``; ``state``: the shared counters.
    A request (made by the HTTP side) is ``{"image": float32 [3, S, S], "name": str, "heatmaps": bool}``, the image
    a numpy array: pickled by value (a torch tensor would travel through a shared-memory file per request, which
    cost more than decoding the image).
    """

    def __init__(self, settings: Mapping[str, Any], state: SharedState, max_batch_size: int, batch_timeout: float):
        loop = BlockingBatchedLoop() if max_batch_size > 1 else "auto"
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, loop=loop)
        self.settings = dict(settings)
        self.state = state

    def setup(self, device: str) -> None:
        worker_id = int(os.environ.get("LITSERVE_WORKER_ID", "0"))
        self.row = self.state.worker_row(worker_id)
        self.state.set_ready(worker_id, False)
        if self.state.worker_starts(worker_id):
            log.warning("worker %d stopped; started again, loading the pipeline", worker_id)
        settings = self.settings
        try:
            pin_worker(worker_id, int(settings["workers"]))
            pipeline, cfg = load_pipeline(settings["ckpt_path"], settings["type_rule"], settings["detector_ckpt"])
            size = int(cfg.data.image_size)
            calibration = int8_calibration_images(settings["inference"], size=size, int8_images=settings["int8_images"])
            self.engine = build_engine(pipeline, settings["inference"], calibration, device=device)
            self.engine(torch.zeros(1, 3, size, size))  # warm-up: the first request is not the slow one
        except Exception as err:
            self.state.write_text("error", f"{type(err).__name__}: {err}")
            raise
        self.names = type_names(cfg)
        info = model_info(pipeline, cfg, self.engine.name, settings["ckpt_path"], settings["detector_ckpt"])
        self.constant = {"thresholds": info["thresholds"], "engine": info["engine"], "model": info["model"]}
        self.state.write_text("info", info)
        self.state.add(self.row, "worker_starts")
        self.state.set_ready(worker_id, True)
        log.info("worker %d ready: %s on %s (%s)", worker_id, info["model"], device, self.engine.describe())

    def decode_request(self, request: dict, **kwargs: Any) -> dict:
        return request

    def predict(self, x: dict | list[dict], **kwargs: Any) -> dict | list[dict]:
        requests = x if isinstance(x, list) else [x]
        images = torch.from_numpy(np.stack([r["image"] for r in requests]))
        outputs = PipelineOutput(*(part.detach().cpu() for part in self.engine(images)))
        self.state.observe_batch(self.row, len(requests))
        answers = []
        for j, (request, record) in enumerate(
            zip(requests, image_records(outputs, self.names, [r["name"] for r in requests]))
        ):
            answer = {**record, **self.constant}
            if request["heatmaps"]:
                answer.update(heatmap_images(images[j], outputs, j, self.constant["thresholds"], self.names))
            answers.append(answer)
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: dict, **kwargs: Any) -> dict:
        return output
