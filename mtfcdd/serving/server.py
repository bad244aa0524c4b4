"""The HTTP side of ``python -m mtfcdd.serve``: a LitServe ``LitServer`` with this project's routes.

LitServe 0.2 gives the worker processes, their restart when one dies (``restart_workers``), the request queue and
dynamic batching (``max_batch_size``, ``batch_timeout``). Its own ``/predict`` parses JSON or forms only and its
``/``, ``/health`` and ``/info`` say nothing about the model, so ``InspectionServer`` registers these instead:

- ``POST /predict``: the body is read, checked and decoded here (``mtfcdd.serving.decoding``, in a thread: one
  bad image answers 400/413/415 alone and never reaches a batch), then queued to a worker
  (``PipelineAPI``); the answer is the worker's record plus ``server_ms``. A request
  waits at most ``serve.timeout`` seconds (504); one whose worker died meanwhile answers 503 (``worker_lost``).
- ``GET /health`` (200 once every worker has loaded the pipeline, else 503), ``GET /info``, ``GET /metrics``;
- ``GET /`` (the inspection page) and its files under ``/static/``.

Every refusal is JSON ``{"error": why}``. With an API key, ``/predict``, ``/info`` and ``/metrics`` answer 401
without the header ``X-API-Key``; the page and ``/health`` stay open. One log line per request (method, path,
status, milliseconds, bytes in and out; never image content). HTTP starts before the workers have loaded the
pipeline, so that a request meanwhile answers 503; a worker that cannot load it at start stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import secrets
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from litserve.server import RegularRequestHandler
from litserve.utils import LitAPIStatus, ResponseBufferItem, WorkerSetupStatus
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mtfcdd.core.config import ConfigError
from mtfcdd.data.transforms import eval_transform
from mtfcdd.serving import metrics
from mtfcdd.serving.decoding import DECODER_MAX_PIXELS, RequestError, decode_upload, read_upload
from mtfcdd.serving.shared import SharedState

log = logging.getLogger("mtfcdd.serving")

PAGE_DIR = Path(__file__).parent / "page"
"""The inspection page's files (``index.html`` at ``/``, the rest under ``/static/``)."""
PROTECTED = ("/predict", "/info", "/metrics")
"""Paths that need the API key when one is set."""
HOSTS = ("127.0.0.1", "0.0.0.0", "::")
"""Addresses LitServe binds: loopback only (the default), every IPv4 or every IPv6 interface."""
API_KEY_ENV = "MTFCDD_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """The ``serve`` config block, checked (its keys and defaults: ``conf/serve.yaml``); ``api_key`` None: no key
    asked."""

    host: str
    port: int
    workers: int
    max_batch_size: int
    batch_timeout: float
    max_pixels: int
    max_bytes: int
    api_key: str | None
    timeout: float

    def __post_init__(self) -> None:
        if self.host not in HOSTS:
            raise ConfigError(f"serve.host={self.host!r} is not valid; expected one of {HOSTS}")
        for key, low, high in (
            ("port", 1024, 65535),
            ("workers", 1, 64),
            ("max_batch_size", 1, 1024),
            ("max_pixels", 1, DECODER_MAX_PIXELS),
            ("max_bytes", 1, None),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                expected = f"an integer from {low}" + (f" to {high}" if high else "")
                raise ConfigError(f"serve.{key}={value!r} is not valid; expected {expected}")
        for key in ("batch_timeout", "timeout"):
            if not isinstance(getattr(self, key), float):
                raise ConfigError(f"serve.{key}={getattr(self, key)!r} is not valid; expected a number of seconds")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ConfigError(
                f"serve.api_key={self.api_key!r} is not valid; expected a string: quote a key Hydra reads as a "
                f"number (serve.api_key=\"'{self.api_key}'\"), or set it in {API_KEY_ENV}"
            )
        if not 0 <= self.batch_timeout < self.timeout:
            raise ConfigError(
                f"serve.batch_timeout={self.batch_timeout!r} is not valid; expected seconds from 0 to below "
                f"serve.timeout={self.timeout!r}"
            )

    @classmethod
    def from_config(cls, serve: Any, environ: dict[str, str] | None = None) -> ServeSettings:
        """From ``cfg.serve``; ``api_key`` null falls back to the environment variable ``MTFCDD_API_KEY``."""
        values = dict(serve)
        environ = os.environ if environ is None else environ
        values["api_key"] = values.get("api_key") or environ.get(API_KEY_ENV) or None
        for key in ("batch_timeout", "timeout"):
            if isinstance(values.get(key), int) and not isinstance(values[key], bool):
                values[key] = float(values[key])
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"serve has unknown keys {unknown}")
        return cls(**values)


def error_response(status: int, message: str) -> JSONResponse:
    """The JSON body ``{"error": message}`` of every refusal."""
    return JSONResponse({"error": message}, status_code=status)


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of a request path in ``/metrics``."""
    if path in ("/predict", "/info", "/metrics", "/health"):
        return path[1:]
    return "page" if path == "/" or path.startswith("/static/") else "other"


def api_row(state: SharedState) -> int:
    """The counter row of this HTTP server process (LitServe numbers them in ``LITSERVE_WORKER_ID``)."""
    return state.api_row(int(os.environ.get("LITSERVE_WORKER_ID", "0")))


class RequestLog:
    """ASGI middleware: the API key check of ``PROTECTED`` paths (401), the request counter and one log line
    per request."""

    def __init__(self, app: ASGIApp, state: SharedState, api_key: str | None) -> None:
        self.app, self.state, self.api_key = app, state, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path = time.perf_counter(), scope["path"]
        seen = {"status": 500, "in": 0, "out": 0}

        async def counted_receive() -> Message:
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        row = api_row(self.state)
        try:
            if self.api_key and path in PROTECTED and not self._authorised(scope):
                self.state.add(row, "errors_unauthorized")
                refusal = error_response(401, "missing or wrong API key: send it in the header X-API-Key")
                await refusal(scope, counted_receive, counted_send)
            else:
                await self.app(scope, counted_receive, counted_send)
        finally:
            self.state.add(row, f"requests_{endpoint_of(path)}")
            elapsed = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %d %.1f ms %d B in %d B out", scope["method"], path, seen["status"], elapsed, seen["in"],
                seen["out"],
            )  # fmt: skip

    def _authorised(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(b"x-api-key", b"")
        return secrets.compare_digest(given, self.api_key.encode())


class PredictHandler(RegularRequestHandler):
    """``POST /predict``: read, check and decode the image here, queue it to a worker, wait for its answer."""

    def __init__(self, lit_api: ls.LitAPI, server: InspectionServer) -> None:
        super().__init__(lit_api, server)
        self.settings, self.state = server.settings, server.state
        self._transform = None

    def transform(self):
        """The evaluation transform at the model's input size (read from the model description once a worker has
        published it)."""
        if self._transform is None:
            self._transform = eval_transform(int(self.state.read_text("info")["image_size"]))
        return self._transform

    async def handle_request(self, request: Request, request_type: Any = None) -> Response:
        started = time.perf_counter()
        row = api_row(self.state)
        try:
            if not self.state.ready_workers():
                raise RequestError(503, "not_ready", "the model is not loaded yet; retry once GET /health answers 200")
            upload = await read_upload(request, self.settings.max_bytes)
            image = await asyncio.to_thread(decode_upload, upload, self.transform(), self.settings.max_pixels)
            answer = await self._answer({"image": image.numpy(), "name": upload.name, "heatmaps": upload.heatmaps})
        except RequestError as err:
            self.state.add(row, f"errors_{err.kind}")
            return error_response(err.status, err.message)
        seconds = time.perf_counter() - started
        self.state.observe_latency(row, seconds)
        return JSONResponse({**answer, "server_ms": round(seconds * 1000, 3)})

    def _generations(self) -> list[float]:
        return [self.state.worker_starts(i) for i in range(self.state.workers)]

    def _lost(self, worker: int | None, generations: list[float]) -> bool:
        """Whether a request queued when the workers had loaded the pipeline ``generations`` times may be lost: its
        worker is loading again, or (no worker took it yet) one was restarted meanwhile; a request a dead worker's
        queue connection had taken is never answered, one that is still queued gets answered too late to be read."""
        now = self._generations()
        if worker is None:
            return now != generations
        return worker not in self.state.ready_workers() or now[worker] != generations[worker]

    async def _answer(self, payload: dict) -> dict:
        """The worker's answer to ``payload``; 504 past ``serve.timeout``, 503 when its worker stopped first."""
        generations = self._generations()
        uid, _ = await self._submit_request(payload)
        item = ResponseBufferItem(event=asyncio.Event())
        self.server.response_buffer[uid] = item
        deadline = time.monotonic() + self.settings.timeout
        try:
            while not item.event.is_set():
                try:
                    await asyncio.wait_for(item.event.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    if self._lost(item.worker_id, generations):
                        raise RequestError(
                            503, "worker_lost", "the worker predicting this image stopped (it is restarted); retry"
                        ) from None
                    if time.monotonic() > deadline:
                        raise RequestError(
                            504, "timeout", f"no answer within serve.timeout={self.settings.timeout} s"
                        ) from None
        finally:
            self.server.response_buffer.pop(uid, None)
        response, status = item.response
        if status != LitAPIStatus.ERROR:
            return response
        if isinstance(response, bytes):
            response = pickle.loads(response)  # our own worker's exception
        if isinstance(response, HTTPException) and response.status_code == 504:
            raise RequestError(504, "timeout", f"queued past serve.timeout={self.settings.timeout} s")
        log.error("the engine failed on a batch: %r", response)
        raise RequestError(500, "internal", "the engine failed on this image's batch; see the server log")


class InspectionServer(ls.LitServer):
    """LitServer with the routes of the module docstring around a ``PipelineAPI``."""

    def __init__(self, api: ls.LitAPI, settings: ServeSettings, state: SharedState, accelerator: str = "auto"):
        self.settings, self.state = settings, state
        self.failed_start = False
        super().__init__(
            api,
            accelerator=accelerator,
            devices=1,
            workers_per_device=settings.workers,
            timeout=settings.timeout,
            disable_openapi_url=True,
            restart_workers=True,
            middlewares=[(RequestLog, {"state": state, "api_key": settings.api_key})],
        )
        self.app.add_exception_handler(StarletteHTTPException, self._http_error)

    @staticmethod
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    def _register_middleware(self) -> None:
        # no gzip: answers are small or base64 PNG, and the CPU belongs to the engine
        self.middlewares = [m for m in self.middlewares if not (isinstance(m, tuple) and m[0] is GZipMiddleware)]
        super()._register_middleware()

    def _register_internal_endpoints(self) -> None:
        app, state, settings = self.app, self.state, self.settings

        @app.get("/")
        async def page() -> Response:
            return FileResponse(PAGE_DIR / "index.html", media_type="text/html")

        app.mount("/static", StaticFiles(directory=PAGE_DIR), name="static")

        @app.get("/health")
        async def health() -> Response:
            ready = len(state.ready_workers())
            status = dict(self.workers_setup_status) if hasattr(self, "workers_setup_status") else {}
            if ready == state.workers and status and all(v == WorkerSetupStatus.READY for v in status.values()):
                return JSONResponse({"status": "ok", "workers_ready": ready, "workers": state.workers})
            return JSONResponse(
                {"error": "the model is not loaded yet", "workers_ready": ready, "workers": state.workers},
                status_code=503,
            )

        @app.get("/info")
        async def info() -> Response:
            described = state.read_text("info")
            if described is None:
                self.state.add(api_row(state), "errors_not_ready")
                return error_response(503, "the model is not loaded yet; retry once GET /health answers 200")
            return JSONResponse({**described, "max_bytes": settings.max_bytes, "max_pixels": settings.max_pixels})

        @app.get("/metrics")
        async def metrics_text() -> Response:
            return PlainTextResponse(metrics.render(state), media_type=metrics.CONTENT_TYPE)

    def _register_api_endpoints(self, lit_api: ls.LitAPI, request_type: Any, response_type: Any) -> None:
        handler = PredictHandler(lit_api, self)

        async def predict(request: Request) -> Response:
            return await handler.handle_request(request)

        self.app.add_api_route(lit_api.api_path, predict, methods=["POST"])

    def verify_worker_status(self) -> None:
        """Start HTTP at once (requests answer 503 until a worker is ready) and watch the first start: a worker that
        cannot load the pipeline then stops the server (``state``'s ``error`` text says why)."""

        def watch() -> None:
            while len(self.state.ready_workers()) < self.state.workers:
                if self.state.read_text("error") is not None:
                    log.error("a worker could not load the pipeline: %s", self.state.read_text("error"))
                    self.failed_start = True
                    self._shutdown_event.set()
                    return
                time.sleep(0.1)
            log.info("serving on http://%s:%d", self.settings.host, self.settings.port)

        threading.Thread(target=watch, daemon=True, name="mtfcdd-first-start").start()

    def serve(self) -> None:
        """Run until interrupted (Ctrl+C, SIGTERM) or until a worker fails its first start."""
        self.run(
            host=self.settings.host,
            port=self.settings.port,
            generate_client_file=False,
            log_level="warning",
            access_log=False,
        )
