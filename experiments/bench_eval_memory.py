"""Evaluator memory and speed against the number of test images: peak memory must stay flat.

    python experiments/bench_eval_memory.py                          # 500, 1000, 2000, 4000 images, CPU
    python experiments/bench_eval_memory.py --images 30000           # the full Real-IAD test size (CPU: ~10 min)
    python experiments/bench_eval_memory.py --device cuda --per-category 30

Each size runs in a fresh subprocess that feeds :class:`mtfcdd.metrics.evaluator.MultiTypeEvaluator` generated
batches shaped like the network's output (8 x 299 x 299 maps: 35 x 35 random maps upsampled bilinearly, the
matching channel raised on the defect), masks with a few rectangular and elliptic regions on half of the images,
then calls ``compute()``. It reports the process's peak resident memory (``VmHWM`` from ``/proc/self/status``;
``torch.cuda.max_memory_allocated`` on CUDA) next to the peak before evaluation (torch and one generated batch),
the evaluator's own state size, and the time spent in ``update()`` (generation excluded). Prints a table;
asserts nothing. Run from the checkout after ``make install`` (or with ``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from mtfcdd.core.defect_types import REALIAD_VOCABULARY
from mtfcdd.metrics.evaluator import MultiTypeEvaluator

TYPE_NAMES = list(REALIAD_VOCABULARY.names)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (Linux only)")


def generate_batch(batch: int, size: int, seed: int, categories: int, device: torch.device):
    """(maps [B, 8, S, S], masks [B, S, S], type_index [B], category names) like a test batch."""
    gen = torch.Generator().manual_seed(seed)
    maps = F.interpolate(torch.rand(batch, 8, 35, 35, generator=gen) ** 3 * 4, size=(size, size), mode="bilinear")
    types = torch.randint(-1, 8, (batch,), generator=gen)
    types[torch.rand(batch, generator=gen) < 0.5] = -1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(batch, size, size, dtype=torch.bool)
    for i in torch.nonzero(types >= 0).flatten().tolist():
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            cy, cx = (torch.rand(2, generator=gen) * size).tolist()
            ry, rx = (4 + torch.rand(2, generator=gen) * size / 10).tolist()
            if torch.rand(1, generator=gen) < 0.5:
                masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                masks[i] |= ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
        maps[i, types[i]] += masks[i] * 2.0
    names = [f"category{(seed + i) % categories:02d}" for i in range(batch)]
    return maps.to(device), masks.to(device), types.to(device), names


def state_mb(evaluator: MultiTypeEvaluator) -> float:
    """Bytes held by the evaluator's metric states, MB."""
    return sum(t.numel() * t.element_size() for state in evaluator.metric_state.values() for t in state) / 2**20


def worker(args: argparse.Namespace, images: int) -> dict:
    """Evaluate ``images`` generated images in this process; returns the measurements."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    per_category = args.per_category > 0
    generate_batch(args.batch_size, args.size, 0, 1, device)
    baseline = peak_rss_mb()  # torch and one generated batch, before any evaluation
    evaluator = MultiTypeEvaluator(TYPE_NAMES, protocol=args.protocol, per_category=per_category)
    update_s, batches = 0.0, 0
    for start in range(0, images, args.batch_size):
        maps, masks, types, names = generate_batch(
            min(args.batch_size, images - start), args.size, start, max(args.per_category, 1), device
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        evaluator.update(maps, masks, types, names)
        if device.type == "cuda":
            torch.cuda.synchronize()
        update_s += time.perf_counter() - begin
        batches += 1
    begin = time.perf_counter()
    results = evaluator.compute()
    compute_s = time.perf_counter() - begin
    out = {
        "images": images,
        "batches": batches,
        "update_ms_per_batch": 1000 * update_s / batches,
        "images_per_s": images / update_s,
        "compute_s": compute_s,
        "state_mb": state_mb(evaluator),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "mean_i_auroc": results["mean"]["i_auroc"],
        "mean_aupro": results["mean"]["aupro"],
    }
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def main(argv: list[str] | None = None) -> None:
    """Run one subprocess per test-set size and print its memory and speed as JSON lines and a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=299, help="map side in pixels")
    parser.add_argument("--protocol", choices=["paper", "typed"], default="typed")
    parser.add_argument("--per-category", type=int, default=0, help="number of categories (0: no breakdown)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args, args.worker)))
        return
    passthrough = list(argv if argv is not None else sys.argv[1:])
    rows = []
    for images in args.images:
        command = [sys.executable, __file__, *passthrough, "--worker", str(images)]
        line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(line))
        print(json.dumps(rows[-1]), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---:|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    peaks = [row["peak_rss_mb"] for row in rows]
    print(
        f"\npeak RSS from {args.images[0]} to {args.images[-1]} images: {min(peaks):.0f} .. {max(peaks):.0f} MB "
        f"(growth {max(peaks) - peaks[0]:+.0f} MB)"
    )


if __name__ == "__main__":
    main()
