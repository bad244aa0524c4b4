"""``GET /metrics``: the server's counters in Prometheus' text exposition format (version 0.0.4), summed over all
its processes (``SharedState``).

- ``mtfcdd_requests_total{endpoint}``: HTTP requests answered, by endpoint (predict, info, metrics, health, page,
  other), every status included;
- ``mtfcdd_errors_total{kind}``: failed requests by kind (not_an_image, bad_request, too_large, too_many_pixels,
  unsupported_type, not_ready, unauthorized, worker_lost, timeout, internal);
- ``mtfcdd_predict_latency_seconds``: histogram of the time in the server of answered predictions (200);
- ``mtfcdd_batch_size``: histogram of the images per batch the engine ran;
- ``mtfcdd_images_predicted_total``, ``mtfcdd_worker_starts_total`` (a restarted worker counts again) and the
  gauge ``mtfcdd_workers_ready``.
"""

from __future__ import annotations

from mtfcdd.serving.shared import BATCH_BUCKETS, COUNTERS, ERROR_KINDS, LATENCY_BUCKETS, SharedState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENDPOINTS = tuple(name.removeprefix("requests_") for name in COUNTERS if name.startswith("requests_"))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _histogram(name: str, help_text: str, bounds: tuple[float, ...], counts: list[float], total: float) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    cumulative = 0.0
    for bound, count in zip([*map(_number, bounds), "+Inf"], counts):
        cumulative += count
        lines.append(f'{name}_bucket{{le="{bound}"}} {_number(cumulative)}')
    lines += [f"{name}_sum {_number(total)}", f"{name}_count {_number(cumulative)}"]
    return lines


def render(state: SharedState) -> str:
    """The exposition text of every metric of the module docstring."""
    lines = ["# HELP mtfcdd_requests_total HTTP requests answered, by endpoint", "# TYPE mtfcdd_requests_total counter"]
    lines += [f'mtfcdd_requests_total{{endpoint="{e}"}} {_number(state.total("requests_" + e))}' for e in ENDPOINTS]
    lines += ["# HELP mtfcdd_errors_total failed requests, by kind", "# TYPE mtfcdd_errors_total counter"]
    lines += [f'mtfcdd_errors_total{{kind="{k}"}} {_number(state.total("errors_" + k))}' for k in ERROR_KINDS]
    lines += _histogram(
        "mtfcdd_predict_latency_seconds",
        "time in the server of answered predictions (seconds)",
        LATENCY_BUCKETS,
        state.histogram("latency"),
        state.total("latency_sum"),
    )
    lines += _histogram(
        "mtfcdd_batch_size",
        "images per engine batch",
        BATCH_BUCKETS,
        state.histogram("batch"),
        state.total("batch_sum"),
    )
    for name, key, kind, help_text in (
        ("mtfcdd_images_predicted_total", "images_predicted", "counter", "images through the engine"),
        ("mtfcdd_worker_starts_total", "worker_starts", "counter", "inference workers that loaded the pipeline"),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(state.total(key))}"]
    lines += [
        "# HELP mtfcdd_workers_ready inference workers with the pipeline loaded",
        "# TYPE mtfcdd_workers_ready gauge",
        f"mtfcdd_workers_ready {len(state.ready_workers())}",
    ]
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, float]:
    """Sample name (with its labels, as written) -> value of an exposition text (the tests and
    ``experiments/bench_serve.py`` read it)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
