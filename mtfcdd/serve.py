"""Serve a trained checkpoint over HTTP: ``python -m mtfcdd.serve ckpt_path=PATH [inference=auto] [port=8000]``.

Loads the inference pipeline once per worker process, on the engine asked (``inference=auto`` by default; int8
engines calibrate on ``int8_images``), and answers on ``serve.host`` (127.0.0.1 unless told otherwise):
``POST /predict`` (one image; the fields of a ``predictions.jsonl`` row, the thresholds, engine, model name and
``server_ms``; ``?heatmaps=true`` adds the heatmaps as PNG), ``GET /health``, ``/info``, ``/metrics`` and the
inspection page at ``/``. Runs until Ctrl+C or SIGTERM. See ``mtfcdd.serving.server`` and ``docs/serve.md``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.errors import UserError
from mtfcdd.model.checkpoint import CheckpointError
from mtfcdd.run.checks import check_inference
from mtfcdd.run.lifecycle import entry_point
from mtfcdd.serving.api import PipelineAPI
from mtfcdd.serving.server import InspectionServer, ServeSettings
from mtfcdd.serving.shared import SharedState


class ServeError(UserError, RuntimeError):
    """A worker could not load the checkpoint at start (the reason is the worker's error)."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # LitServe shuts its processes down on it


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the HTTP processes forked from here end as LitServe asks


def accelerator_of(inference: DictConfig) -> str:
    """LitServe's accelerator for ``inference.device`` (auto: a GPU when there is one)."""
    device = str((inference or {}).get("device", "auto"))
    return "cpu" if device == "cpu" else "cuda" if device.startswith("cuda") else "auto"


def serve(cfg: DictConfig) -> dict:
    """Serve ``cfg.ckpt_path`` until interrupted; returns what was served and how much."""
    settings = ServeSettings.from_config(cfg.serve)
    for key in ("ckpt_path", "detector_ckpt"):  # the workers would say so too, seconds later
        if cfg[key] is not None and not Path(cfg[key]).is_file():
            raise CheckpointError(f"{key}={str(cfg[key])!r}: no such file")
    state = SharedState(api_servers=settings.workers, workers=settings.workers)
    worker_settings = {
        "ckpt_path": str(cfg.ckpt_path),
        "detector_ckpt": None if cfg.detector_ckpt is None else str(cfg.detector_ckpt),
        "type_rule": cfg.type_rule,
        "inference": OmegaConf.to_container(cfg.inference, resolve=True),
        "int8_images": OmegaConf.to_container(cfg.int8_images, resolve=True),
        "workers": settings.workers,
    }
    api = PipelineAPI(worker_settings, state, settings.max_batch_size, settings.batch_timeout)
    server = InspectionServer(api, settings, state, accelerator=accelerator_of(cfg.inference))
    print(
        f"loading {cfg.ckpt_path} in {settings.workers} worker(s) (inference={cfg.inference.engine}); "
        f"then serving on http://{settings.host}:{settings.port}" + (" (API key required)" if settings.api_key else "")
    )
    signal.signal(signal.SIGTERM, _interrupt)
    os.register_at_fork(after_in_child=_default_sigterm)
    server.serve()
    if server.failed_start:
        raise ServeError(f"ckpt_path={str(cfg.ckpt_path)!r}: the server could not start: {state.read_text('error')}")
    return {"images_predicted": int(state.total("images_predicted")), "info": state.read_text("info")}


main = entry_point("serve", checks=[check_inference])(serve)


if __name__ == "__main__":
    main()
