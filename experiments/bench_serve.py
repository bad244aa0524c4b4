"""The server under load on loopback, beside the predict command on the same engine and images, in one run.

    python experiments/bench_serve.py                                  # the newest demo checkpoint, inference=auto
    python experiments/bench_serve.py --ckpt PATH --engine onnx_fp32 --clients 1,4,16,64 --seconds 20
    python experiments/bench_serve.py --clients 16 --seconds 10 --requests 0 --no-predict serve.workers=2

Starts ``python -m mtfcdd.serve`` (trailing ``key=value`` arguments are its overrides) on a free 127.0.0.1 port and,
for each number of concurrent clients (asyncio + aiohttp in this process, each sending the next image as a raw
body as soon as its previous answer came), runs for ``--seconds`` after a 2 s warm-up and reports images/s,
p50/p95/p99 latency (client side), errors (any answer but 200, or a failed connection) and, from the server's
``/metrics``, the errors it counted and its mean batch size. The server's memory is
the proportional set size (Pss: shared pages counted once) summed over all its processes (main, HTTP server,
inference workers, LitServe's queue manager), sampled every 0.2 s: its peak per phase, and over a phase of
``--requests`` requests (16 clients) every 1,000 requests, which must stay flat. ``predict``'s images/s on the same
engine (the one the server runs: ``auto`` is resolved by the server first, ``/info`` says which) and images: the
predict command run on the ``--count`` images and on 4 copies of each, as subprocesses, while the server idles;
their time difference per image cancels the start-up (imports, loading, int8 calibration). With
``MTFCDD_API_KEY`` set, the server asks for it and the clients send it. Writes
``bench_serve.json`` and ``bench_serve.md`` into ``--out``; asserts nothing. Run from the checkout after
``make install`` (or with ``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtfcdd.serving.metrics import parse
from mtfcdd.serving.process import ServerProcess, memory_kib
from mtfcdd.serving.server import API_KEY_ENV

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"X-API-Key": os.environ[API_KEY_ENV]} if os.environ.get(API_KEY_ENV) else {}
"""What every request to the server carries: the API key when the environment gives the server one."""


def cpu_name() -> str:
    """The CPU's model name and the cores this process may use."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {len(os.sched_getaffinity(0))} cores"
    return platform.processor()


def newest_demo_checkpoint() -> Path:
    """``logs/train/demo/runs/*/checkpoints/last.ckpt``, the newest."""
    found = sorted(ROOT.glob("logs/train/demo/runs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("no demo checkpoint: run `make demo` or pass --ckpt")
    return found[-1]


def pick_images(source: Path, count: int, into: Path) -> list[Path]:
    """``count`` images spread evenly over the sorted ``*.jpg`` below ``source``, copied flat into ``into``."""
    files = sorted(source.rglob("*.jpg"))
    if len(files) < count:
        raise SystemExit(f"{source}: {len(files)} JPEG images, {count} asked")
    into.mkdir(parents=True, exist_ok=True)
    chosen = [files[i * len(files) // count] for i in range(count)]
    copies = []
    for i, path in enumerate(chosen):
        copies.append(into / f"{i:05d}_{path.name}")
        shutil.copyfile(path, copies[-1])
    return copies


def predict_seconds(ckpt: Path, images: Path, engine: str, out: Path) -> float:
    """Wall time of ``python -m mtfcdd.predict`` on the folder ``images`` (no overlays), seconds."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mtfcdd.predict",
            f"ckpt_path={ckpt}",
            f"input={images}",
            f"inference={engine}",
            "save_overlays=false",
            f"hydra.run.dir={out}",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return time.perf_counter() - started


def predict_throughput(ckpt: Path, images: list[Path], engine: str, work: Path, repeat: int = 4) -> dict:
    """The predict command's images/s from a run on ``images`` and one on ``repeat`` copies of each: start-up
    (imports, loading, int8 calibration on the first 128 readable inputs in both) cancels out in the difference."""
    many = work / "many"
    many.mkdir()
    for k in range(repeat):
        for path in images:
            shutil.copyfile(path, many / f"{k}_{path.name}")
    once = predict_seconds(ckpt, images[0].parent, engine, work / "predict-once")
    repeated = predict_seconds(ckpt, many, engine, work / "predict-many")
    return {
        "images": len(images),
        "repeat": repeat,
        "seconds_once": round(once, 2),
        f"seconds_x{repeat}": round(repeated, 2),
        "images_per_s": round((repeat - 1) * len(images) / (repeated - once), 1),
    }


class MemorySampler:
    """Resident memory summed over the server's processes, sampled every 0.2 s in a thread (KiB)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return sum(memory_kib(pid) for pid in self.server.pids())

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> MemorySampler:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def load(url: str, bodies: list[bytes], clients: int, seconds: float | None, requests: int | None, on_done=None):
    """``clients`` concurrent clients posting raw JPEG bodies until ``seconds`` pass or ``requests`` are done;
    returns (latencies of the 200 answers in s, errors, elapsed s)."""
    latencies, errors, sent = [], 0, itertools.count()
    started = time.perf_counter()
    stop_at = None if seconds is None else started + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal errors
            while True:
                n = next(sent)
                if (requests is not None and n >= requests) or (stop_at is not None and time.perf_counter() > stop_at):
                    return
                begun = time.perf_counter()
                try:
                    async with session.post(
                        url, data=bodies[n % len(bodies)], headers={**HEADERS, "Content-Type": "image/jpeg"}
                    ) as answer:
                        await answer.read()
                        ok = answer.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - begun)
                else:
                    errors += 1
                if on_done is not None:
                    on_done(len(latencies) + errors)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server_get(server: ServerProcess, path: str) -> bytes:
    """The body of ``GET path`` on the server (with the API key when there is one)."""
    with urllib.request.urlopen(urllib.request.Request(server.url + path, headers=HEADERS)) as answer:
        return answer.read()


def server_counts(server: ServerProcess) -> dict[str, float]:
    """From ``/metrics``: the errors the server counted (all kinds) and the batches and images its engine ran."""
    samples = parse(server_get(server, "/metrics").decode())
    return {
        "errors": sum(v for k, v in samples.items() if k.startswith("mtfcdd_errors_total")),
        "batches": samples["mtfcdd_batch_size_count"],
        "images": samples["mtfcdd_batch_size_sum"],
    }


def phase(server: ServerProcess, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """One load level: warm-up, then ``seconds`` of ``clients`` clients."""
    url = server.url + "/predict"
    asyncio.run(load(url, bodies, clients, 2.0, None))
    before = server_counts(server)
    with MemorySampler(server) as memory:
        latencies, errors, elapsed = asyncio.run(load(url, bodies, clients, seconds, None))
    after = server_counts(server)
    batches = after["batches"] - before["batches"]
    return {
        "clients": clients,
        "requests": len(latencies) + errors,
        "images_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "errors": errors,
        "server_errors": int(after["errors"] - before["errors"]),
        "mean_batch": round((after["images"] - before["images"]) / batches, 2) if batches else None,
        "server_peak_pss_mb": round(memory.peak / 1024, 1),
    }


def memory_phase(server: ServerProcess, bodies: list[bytes], requests: int, clients: int = 16) -> dict:
    """``requests`` requests at ``clients`` clients; the server's resident memory every 1,000 requests."""
    marks: list[tuple[int, float]] = []
    sampler = MemorySampler(server)

    def on_done(done: int) -> None:
        if done % 1000 == 0 and len(marks) < done // 1000:
            marks.append((done, round(sampler.now() / 1024, 1)))

    with sampler:
        latencies, errors, elapsed = asyncio.run(
            load(server.url + "/predict", bodies, clients, None, requests, on_done)
        )
    first, last = marks[0][1], marks[-1][1]
    return {
        "requests": requests,
        "clients": clients,
        "errors": errors,
        "images_per_s": round(len(latencies) / elapsed, 1),
        "pss_mb_every_1000": marks,
        "growth_mb_after_first_1000": round(last - first, 1),
        "peak_pss_mb": round(sampler.peak / 1024, 1),
    }


def markdown(result: dict) -> str:
    """The result as the tables docs/serve.md quotes."""
    lines = [
        f"# bench_serve: {result['checkpoint']}",
        "",
        f"CPU: {result['cpu']}; engine {result['engine']} ({result['engine_served']}); "
        f"server overrides {result['server_overrides']}; "
        f"{result['images']} test images (JPEG), raw bodies.",
        "",
        "| clients | images/s | vs predict | p50 ms | p95 ms | p99 ms | errors (server) | mean batch "
        "| server peak PSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = (result.get("predict") or {}).get("images_per_s")
    for row in result["phases"]:
        ratio = f"{row['images_per_s'] / reference:.2f}x" if reference else "-"
        lines.append(
            f"| {row['clients']} | {row['images_per_s']} | {ratio} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['p99_ms']} | {row['errors']} ({row['server_errors']}) | {row['mean_batch']} | "
            f"{row['server_peak_pss_mb']} |"
        )
    if reference:
        p = result["predict"]
        lines += ["", f"predict (same engine, same images): {reference} images/s ({p['images']} images)."]
    if result.get("memory"):
        m = result["memory"]
        marks = ", ".join(f"{mb}" for _, mb in m["pss_mb_every_1000"])
        lines += [
            "",
            f"{m['requests']} requests at {m['clients']} clients: {m['errors']} errors, {m['images_per_s']} images/s; "
            f"server PSS MB every 1,000 requests: {marks} (growth after the first 1,000: "
            f"{m['growth_mb_after_first_1000']} MB).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the arguments, run every phase, write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default: the newest demo last.ckpt)")
    parser.add_argument("--images", type=Path, default=ROOT / "data/synthetic-realiad-demo-s0/realiad_256")
    parser.add_argument("--count", type=int, default=640, help="test images used (spread over --images)")
    parser.add_argument("--engine", default="auto", help="inference engine of both the server and predict")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per load level")
    parser.add_argument(
        "--requests", type=int, default=10_000, help="requests of the memory phase (0: none, else at least 1000)"
    )
    parser.add_argument("--no-predict", action="store_true", help="skip the predict reference")
    parser.add_argument("--out", type=Path, default=None, help="default logs/bench_serve/<time>/")
    parser.add_argument("overrides", nargs="*", help="serve overrides, e.g. serve.workers=2")
    args = parser.parse_args()
    if 0 < args.requests < 1000:
        parser.error(f"--requests {args.requests}: 0 (no memory phase) or at least 1000 (memory is read every 1,000)")
    ckpt = (args.ckpt or newest_demo_checkpoint()).resolve()
    out = args.out or ROOT / "logs/bench_serve" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        images = pick_images(args.images, args.count, work / "images")
        bodies = [path.read_bytes() for path in images]
        result = {
            "checkpoint": str(ckpt),
            "cpu": cpu_name(),
            "engine": args.engine,
            "server_overrides": args.overrides,
            "images": len(images),
        }
        overrides = [f"ckpt_path={ckpt}", f"inference={args.engine}", *args.overrides]
        with ServerProcess(overrides, work / "server") as server:
            server.wait_ready()
            result["engine_served"] = json.loads(server_get(server, "/info"))["engine"]
            if not args.no_predict:  # on the engine the server chose
                result["predict"] = predict_throughput(ckpt, images, result["engine_served"], work)
                print("predict:", result["predict"], flush=True)
            result["phases"] = []
            for clients in (int(c) for c in args.clients.split(",")):
                result["phases"].append(phase(server, bodies, clients, args.seconds))
                print(result["phases"][-1], flush=True)
            if args.requests:
                result["memory"] = memory_phase(server, bodies, args.requests)
                print("memory:", result["memory"], flush=True)
    (out / "bench_serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench_serve.md").write_text(markdown(result))
    print(markdown(result))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
