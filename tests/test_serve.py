"""`python -m mtfcdd.serve` as a real server process on 127.0.0.1: its answers against `predict`, every refusal, the
API key, /info and /metrics, and a worker killed under it. One server for the module (started once)."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import requests
import torch
from hydra.errors import ConfigCompositionException

from helpers.hydra_compose import compose_config
from helpers.image_kinds import write_image_kinds
from mtfcdd.core.checksum import checkpoint_identity
from mtfcdd.core.config import ConfigError
from mtfcdd.data.images import ImageFileDataset
from mtfcdd.model.checkpoint import load_pipeline
from mtfcdd.predict import predict
from mtfcdd.serving.api import BlockingBatchedLoop, served_checkpoints, stored_test_metrics
from mtfcdd.serving.decoding import DECODER_MAX_PIXELS
from mtfcdd.serving.metrics import parse
from mtfcdd.serving.process import ServerProcess, command_line, free_port, http_status
from mtfcdd.serving.server import ServeSettings

KEY = "test-key-7c1f"
MAX_BYTES = 300_000
MAX_PIXELS = 1_000_000
AUTH = {"X-API-Key": KEY}
PNG = {"Content-Type": "image/png"}


def _checkpoint(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best_*.ckpt")
    return best


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Images of every kind predict reads: RGB, gray JPEG, RGBA, 16-bit TIFF and PNG, an odd-sized BMP."""
    root = tmp_path_factory.mktemp("serve-images")
    rng = np.random.default_rng(1)
    write_image_kinds(root, rng)
    cv2.imwrite(str(root / "odd.bmp"), rng.integers(0, 256, (37, 91, 3), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_run):
    """The server on the trained checkpoint (eager engine, one worker batching up to 4 images, small limits), the
    API key from MTFCDD_API_KEY; ``early`` holds what /predict answered while /health still said 503."""
    ckpt = _checkpoint(trained_run("max"))
    overrides = [
        f"ckpt_path={ckpt}",
        "inference=eager",
        f"serve.max_bytes={MAX_BYTES}",
        f"serve.max_pixels={MAX_PIXELS}",
        "serve.workers=1",
        "serve.max_batch_size=4",
        "serve.batch_timeout=0.01",
    ]
    proc = ServerProcess(overrides, tmp_path_factory.mktemp("serve"), env={"MTFCDD_API_KEY": KEY}).start()
    try:
        proc.wait_until(lambda: http_status(proc.url + "/health") is not None, what="HTTP up")
        early = []
        while http_status(proc.url + "/health") == 503:
            answer = requests.post(proc.url + "/predict", data=b"x", headers={**AUTH, "Content-Type": "image/png"})
            early.append((answer.status_code, answer.json()))
        proc.wait_ready()
        proc.ckpt, proc.early = ckpt, early
        yield proc
    finally:
        proc.stop()


def _post(server, path: Path, multipart: bool = False, heatmaps: bool = False, **kwargs) -> requests.Response:
    headers = dict(AUTH)
    params = {"heatmaps": "true"} if heatmaps and not multipart else None
    if multipart:
        fields = {"heatmaps": "true"} if heatmaps else None
        return requests.post(
            server.url + "/predict", files={"image": (path.name, path.read_bytes())}, data=fields, headers=headers
        )
    headers["Content-Type"] = kwargs.get("content_type", "application/octet-stream")
    return requests.post(server.url + "/predict", data=path.read_bytes(), headers=headers, params=params)


def test_a_request_before_the_model_is_loaded_answers_503(server):
    assert server.early, "HTTP should be up while the worker still loads the pipeline"
    assert {status for status, _ in server.early} <= {503, 400}
    assert any(status == 503 and "not loaded" in body["error"] for status, body in server.early)
    # each counted as not_ready (nothing else is refused that way once the model is loaded)
    assert _errors(server)["not_ready"] == sum(status == 503 for status, _ in server.early)


def test_answers_equal_predict_on_every_kind_of_image(server, images, tmp_path):
    overrides = [f"ckpt_path={server.ckpt}", f"input={images}", "inference=eager", "num_workers=0", "trainer=cpu"]
    cfg = compose_config(tmp_path, overrides, "predict")
    predict(cfg)
    rows = [json.loads(line) for line in (Path(cfg.paths.output_dir) / "predictions.jsonl").read_text().splitlines()]
    expected = {Path(row["path"]).name: row for row in rows}
    assert len(expected) == 6
    # the same engine (eager) on both sides; the scores agree to 1e-6, relative or absolute (the server's batches and
    # thread count are not predict's, and float32 sums reassociated that way differ by a few ulps: ~3e-7 here; an
    # absolute 1e-6 alone could not hold for scores above 8, where one float32 ulp is 1e-6); the any-defect score is a
    # type score divided by its anomaly_scale, so its absolute bound is 1e-6 / scale
    scale = load_pipeline(server.ckpt)[0].anomaly_scale.min().item()
    for i, name in enumerate(sorted(expected)):
        multipart = i % 2 == 0
        answer = _post(server, images / name, multipart=multipart)
        assert answer.status_code == 200, answer.text
        got, want = answer.json(), expected[name]
        assert got["path"] == (name if multipart else "request")
        assert set(want) <= set(got)
        for key, value in want.items():
            if key.startswith("score_"):
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (name, key)
            elif key == "anomaly_score":
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6 / scale), name
            elif key != "path":
                assert got[key] == value, (name, key)
        assert got["engine"] == "eager" and got["model"] == "mtfcdd" and got["server_ms"] > 0


def test_heatmaps_are_pngs_of_the_calibrated_maps(server, images):
    pipeline, cfg = load_pipeline(server.ckpt)
    size = int(cfg.data.image_size)
    sample = ImageFileDataset([images / "rgb.png"], size)[0]
    with torch.inference_mode():
        outputs = pipeline(sample["image"][None])
    info = requests.get(server.url + "/info", headers=AUTH).json()
    names = [t["name"] for t in info["types"]]
    for multipart in (True, False):
        answer = _post(server, images / "rgb.png", multipart=multipart, heatmaps=True).json()
        image = cv2.imdecode(np.frombuffer(base64.b64decode(answer["image"]), np.uint8), cv2.IMREAD_UNCHANGED)
        assert image.shape == (size, size, 3)
        seen = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1) / 255.0
        assert np.abs(seen - sample["image"].numpy()).max() <= 0.5 / 255 + 1e-6
        assert set(answer["heatmaps"]) == {*names, "any_defect"}
        for k, name in enumerate(names):
            png = cv2.imdecode(np.frombuffer(base64.b64decode(answer["heatmaps"][name]), np.uint8), -1)
            assert png.shape == (size, size) and png.dtype == np.uint8
            want = outputs.calibrated[0, k].numpy() * 255
            assert np.abs(png.astype(float) - want).max() <= 0.5 + 1e-3
        png = cv2.imdecode(np.frombuffer(base64.b64decode(answer["heatmaps"]["any_defect"]), np.uint8), -1)
        threshold = info["thresholds"]["any_defect"]
        want = np.clip(outputs.anomaly_map[0].numpy() / threshold / 2, 0, 1) * 255
        assert png.shape == (size, size) and np.abs(png.astype(float) - want).max() <= 0.5 + 1e-3
    plain = _post(server, images / "rgb.png").json()
    assert "heatmaps" not in plain and "image" not in plain


def test_info_describes_the_model(server, trained_run, images):
    info = requests.get(server.url + "/info", headers=AUTH).json()
    pipeline, cfg = load_pipeline(server.ckpt)
    assert info["model"] == "mtfcdd" and info["engine"] == "eager" and info["score"] == "max"
    assert info["type_rule"] == "raw"
    assert info["image_size"] == int(cfg.data.image_size)
    assert len(info["types"]) == pipeline.num_types
    assert all(re.fullmatch("#[0-9a-f]{6}", t["colour"]) for t in info["types"])
    answer = _post(server, images / "rgb.png").json()
    assert set(info["columns"]) <= set(answer) and info["columns"][0] == "path"
    assert [f"score_{t['column']}" for t in info["types"]] == [c for c in info["columns"] if c.startswith("score_")]
    for t, threshold in zip(info["types"], pipeline.image_threshold.tolist()):
        assert info["thresholds"][t["name"]] == (None if threshold == float("inf") else pytest.approx(threshold))
    assert info["thresholds"]["any_defect"] == pytest.approx(pipeline.anomaly_threshold.item())
    assert info["checkpoint"] == {
        "path": str(server.ckpt.resolve()),
        "sha256": hashlib.sha256(server.ckpt.read_bytes()).hexdigest(),
    }
    assert info["detector_checkpoint"] is None
    # the run tested this (best) checkpoint: its results are this model's
    assert info["test_metrics"] == json.loads((trained_run("max") / "results.json").read_text())
    assert (info["max_bytes"], info["max_pixels"]) == (MAX_BYTES, MAX_PIXELS)


def test_info_gives_stored_test_metrics_only_for_the_checkpoint_and_type_rule_tested(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    best, last = tmp_path / "checkpoints" / "best.ckpt", tmp_path / "checkpoints" / "last.ckpt"
    best.write_bytes(b"best weights")
    last.write_bytes(b"last weights")
    results = {"type_rule": "raw", "checkpoints": {"checkpoint": checkpoint_identity(best)}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    raw, calibrated = SimpleNamespace(type_rule="raw"), SimpleNamespace(type_rule="calibrated")
    assert stored_test_metrics(served_checkpoints(best, None), raw) == results
    assert stored_test_metrics(served_checkpoints(last, None), raw) is None  # the run tested its best, not this one
    assert stored_test_metrics(served_checkpoints(best, None), calibrated) is None  # another type rule: other types
    assert stored_test_metrics(served_checkpoints(best, last), raw) is None  # tested without this detector
    (tmp_path / "results.json").write_text(json.dumps({"type_rule": "raw"}))  # written before the field existed
    assert stored_test_metrics(served_checkpoints(best, None), raw) is None


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with one row of data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _errors(server) -> dict[str, float]:
    samples = parse(requests.get(server.url + "/metrics", headers=AUTH).text)
    return {re.search('kind="(.*)"', k).group(1): v for k, v in samples.items() if k.startswith("mtfcdd_errors_total")}


def test_every_bad_request_is_refused_counted_and_the_next_is_answered(server, images):
    before = _errors(server)
    url, png = server.url + "/predict", (images / "rgb.png").read_bytes()
    truncated = (images / "gray.jpg").read_bytes()[:-300]
    cases = [
        ({"data": b"not an image at all", "headers": {"Content-Type": "image/png"}}, 400, "not_an_image"),
        ({"data": truncated, "headers": {"Content-Type": "image/jpeg"}}, 400, "not_an_image"),
        ({"data": png, "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_type"),
        ({"data": png}, 415, "unsupported_type"),
        ({"data": b"\0" * (MAX_BYTES + 1), "headers": PNG}, 413, "too_large"),
        ({"data": _bomb_png(20_000, 20_000), "headers": PNG}, 413, "too_many_pixels"),
        ({"files": {"picture": ("a.png", png)}}, 400, "bad_request"),
        ({"data": png, "params": {"heatmaps": "maybe"}, "headers": PNG}, 400, "bad_request"),
    ]
    for kwargs, status, kind in cases:
        kwargs["headers"] = {**AUTH, **kwargs.get("headers", {})}
        answer = requests.post(url, **kwargs)
        assert answer.status_code == status, (kind, answer.text)
        assert answer.json()["error"], kind
    assert "truncated" in requests.post(url, data=truncated, headers={**AUTH, "Content-Type": "image/jpeg"}).text
    after = _errors(server)
    counted = {kind: after[kind] - before[kind] for kind in after}
    assert counted == {
        **dict.fromkeys(after, 0.0),
        "not_an_image": 3.0,
        "unsupported_type": 2.0,
        "too_large": 1.0,
        "too_many_pixels": 1.0,
        "bad_request": 2.0,
    }
    assert _post(server, images / "rgb.png", content_type="image/png").status_code == 200


def test_the_api_key_guards_the_api_but_not_the_page(server, images):
    before = _errors(server)["unauthorized"]
    for path in ("/info", "/metrics"):
        assert requests.get(server.url + path).status_code == 401
        assert requests.get(server.url + path, headers={"X-API-Key": "wrong"}).status_code == 401
        assert requests.get(server.url + path, headers=AUTH).status_code == 200
    refused = requests.post(server.url + "/predict", data=(images / "rgb.png").read_bytes())
    assert refused.status_code == 401 and "X-API-Key" in refused.json()["error"]
    assert _errors(server)["unauthorized"] == before + 5  # each refusal counted
    assert requests.get(server.url + "/health").status_code == 200
    page = requests.get(server.url + "/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert requests.get(server.url + "/static/../serve.yaml").status_code == 404


def test_metrics_count_requests_latency_and_batches(server, images):
    before = parse(requests.get(server.url + "/metrics", headers=AUTH).text)
    for _ in range(3):
        assert _post(server, images / "odd.bmp").status_code == 200
    text = requests.get(server.url + "/metrics", headers=AUTH).text
    after = parse(text)
    assert "# TYPE mtfcdd_predict_latency_seconds histogram" in text
    for name in ("mtfcdd_predict_latency_seconds_count", "mtfcdd_batch_size_count"):
        assert after[name] >= before[name] + 1
    assert after["mtfcdd_predict_latency_seconds_count"] == before["mtfcdd_predict_latency_seconds_count"] + 3
    assert after["mtfcdd_images_predicted_total"] == before["mtfcdd_images_predicted_total"] + 3
    assert after['mtfcdd_requests_total{endpoint="predict"}'] == before['mtfcdd_requests_total{endpoint="predict"}'] + 3
    assert after['mtfcdd_predict_latency_seconds_bucket{le="+Inf"}'] == after["mtfcdd_predict_latency_seconds_count"]
    assert after["mtfcdd_workers_ready"] == 1


def test_binds_loopback_and_logs_one_line_per_request_without_content(server):
    listening = {
        line.split()[1]
        for path in ("/proc/net/tcp", "/proc/net/tcp6")
        for line in Path(path).read_text().splitlines()[1:]
        if line.split()[3] == "0A"  # LISTEN
    }
    port = f"{server.port:04X}"
    assert {address for address in listening if address.endswith(":" + port)} == {f"0100007F:{port}"}
    predicted = parse(requests.get(server.url + "/metrics", headers=AUTH).text)[
        'mtfcdd_requests_total{endpoint="predict"}'
    ]
    lines = re.findall(r"POST /predict (\d{3}) [\d.]+ ms \d+ B in \d+ B out", server.log())
    assert len(lines) == predicted
    assert "iVBORw0KGgo" not in server.log()  # no base64 PNG in the log


def test_a_killed_worker_is_restarted_and_the_server_keeps_answering(server, images):
    (worker,) = server.worker_pids()
    subprocess.run(["kill", "-9", str(worker)], check=True)
    statuses = []

    def answered() -> bool:
        statuses.append(_post(server, images / "rgb.png").status_code)
        return statuses[-1] == 200

    server.wait_until(answered, timeout=120, what="answers after the worker was killed")
    assert set(statuses) <= {200, 503}
    server.wait_ready(timeout=60)
    metrics = parse(requests.get(server.url + "/metrics", headers=AUTH).text)
    assert metrics["mtfcdd_worker_starts_total"] == 2
    assert server.worker_pids() != [worker]


def test_a_checkpoint_that_cannot_load_stops_the_server_with_one_error_line(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    proc = subprocess.run(
        [sys.executable, "-m", "mtfcdd.serve", f"ckpt_path={broken}", "inference=eager", f"port={free_port()}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0]


def test_serve_config_rejects_typos_and_bad_values(tmp_path):
    with pytest.raises(ConfigCompositionException):
        compose_config(tmp_path, ["ckpt_path=x", "serve.max_batchsize=4"], "serve")
    cfg = compose_config(tmp_path, ["ckpt_path=x", "port=9123"], "serve")
    settings = ServeSettings.from_config(cfg.serve, environ={})
    assert (settings.host, settings.port, settings.api_key) == ("127.0.0.1", 9123, None)
    assert ServeSettings.from_config(cfg.serve, environ={"MTFCDD_API_KEY": "k"}).api_key == "k"
    bad = (("host", "10.0.0.1"), ("port", 80), ("workers", 0), ("batch_timeout", 60.0), ("api_key", 123456))
    bad += (("max_pixels", DECODER_MAX_PIXELS + 1),)
    for key, value in bad:
        with pytest.raises(ConfigError, match=f"serve.{key}="):
            ServeSettings.from_config({**cfg.serve, key: value}, environ={})


def test_the_batch_window_opens_when_the_first_request_arrives_after_an_idle_spell():
    """``serve.batch_timeout`` counts from the first request of a batch, not from when the idle worker began to
    wait: a request 0.3 s after the first joins its batch (window 0.6 s) although the first came 0.5 s into the
    wait (the window LitServe opens before it waits would have closed at 0.6 s, batching the first alone)."""
    api = SimpleNamespace(batch_timeout=0.6, max_batch_size=4, request_timeout=-1, stream=False)
    transport = SimpleNamespace(sent=[], send=lambda item, consumer_id: transport.sent.append(item))
    requests_queue: queue.Queue = queue.Queue()

    def arrive() -> None:
        time.sleep(0.5)
        requests_queue.put((0, "first", time.monotonic(), {}))
        time.sleep(0.3)
        requests_queue.put((0, "second", time.monotonic(), {}))

    threading.Thread(target=arrive, daemon=True).start()
    batch: list = []
    while not batch:  # each call waits IDLE_WAIT for a first request
        batch, timed_out = BlockingBatchedLoop().get_batch_requests(api, requests_queue, transport)
        assert timed_out == []
    assert [uid for _, uid, _ in batch] == ["first", "second"]


def test_sigterm_stops_every_process(server):
    # last in the module: the server fixture is stopped by SIGTERM here (its own stop is then a no-op)
    pids = server.pids()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    assert server.status()["state"] == "finished"
    deadline = time.monotonic() + 30
    while (left := [pid for pid in pids if command_line(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {pid: command_line(pid) for pid in left} == {}
