"""The demo's training step under each trainer precision, memory format and backbone runtime, same run, against fp32.

    python experiments/bench_train_precision.py [--rounds 4] [--json out.json] [HYDRA OVERRIDES ...]

Builds the LightningModule and one real training batch exactly as ``python -m mtfcdd.train experiment=demo`` does
(overrides go after the options, e.g. ``data.root=/path/to/synthetic-realiad-demo-s0``), then times the full
step (``training_step``: pipeline maps + Eq. 3 loss, backward, Adam) for fp32 vs ``bf16-mixed`` (the autocast
Lightning's ``trainer.precision=bf16-mixed`` wraps the step in) and channels-last vs contiguous, interleaved round
by round so that load from other processes hits every variant alike; fp32 channels-last also with the frozen
backbone in ONNX Runtime and in OpenVINO (``callbacks.backbone_runtime``, the demo's setting). Reports images/s and
the ratio to fp32 contiguous and to fp32 channels-last with the torch backbone, with the CPU's instruction sets and
the load.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtfcdd.core.config import config_dir
from mtfcdd.inference.backbone_runtime import BackboneRuntime, openvino_available
from mtfcdd.inference.cpu import cpu_name, cpu_supports_bf16, instruction_sets
from mtfcdd.measure.timing import time_rounds
from mtfcdd.model.build import build_module
from mtfcdd.run.build import build_datamodule


def make_step(module, batch: dict, bf16: bool):
    """A closure running one full training step of ``module`` on ``batch`` (under bf16 autocast if ``bf16``) that
    returns the loss."""
    optimizer = module.configure_optimizers()["optimizer"]

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = module.training_step(module.on_after_batch_transfer(dict(batch), 0), 0)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main(argv: list[str] | None = None) -> dict:
    """Time the demo's training step for each variant; print a table and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config")
    args = parser.parse_args(argv)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo", "logger=none", "data.num_workers=0", *args.overrides])
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    batch = next(iter(datamodule.train_dataloader()))
    base = build_module(cfg)
    base.log = lambda *a, **k: None  # no trainer attached: logging is a no-op here
    variants = {}
    for memory in ("contiguous", "channels_last"):
        for precision in ("32-true", "bf16-mixed"):
            module = copy.deepcopy(base)
            module.channels_last = memory == "channels_last"
            module.pipeline = module.pipeline.to(
                memory_format=torch.channels_last if module.channels_last else torch.contiguous_format
            )
            module.train()
            variants[f"{precision}, {memory}"] = make_step(module, batch, precision == "bf16-mixed")
    for runtime in ("onnxruntime", "openvino")[: 2 if openvino_available() else 1]:
        module = copy.deepcopy(base).train()
        module.net.feature_runtime = BackboneRuntime(module.net.backbone, runtime)
        variants[f"32-true, channels_last, backbone in {runtime}"] = make_step(module, batch, False)
    load_start = os.getloadavg()[0]
    times = time_rounds(variants, rounds=args.rounds, warmup=args.warmup)
    size = len(batch["image"])
    medians = {name: statistics.median(values) for name, values in times.items()}
    results = {
        "cpu": cpu_name(),
        "backbone": cfg.model.backbone.name,
        "image_size": cfg.data.image_size,
        "batch": size,
        "threads": torch.get_num_threads(),
        "instruction_sets": instruction_sets(),
        "native_bf16": cpu_supports_bf16(),
        "rounds": args.rounds,
        "load_average_1min": [load_start, os.getloadavg()[0]],
        "rows": {},
    }
    print(
        f"demo training step on {cpu_name()}: {cfg.model.backbone.name}, {cfg.data.image_size}px, batch {size}, "
        f"{torch.get_num_threads()} threads, instruction sets {' '.join(instruction_sets())}, native bf16 "
        f"{cpu_supports_bf16()}; median of {args.rounds} interleaved rounds; load {load_start:.1f} -> "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("| precision, memory format, backbone | s/step | images/s | x fp32 contiguous | x fp32 channels-last |")
    print("|---|---|---|---|---|")
    for name, median in medians.items():
        row = {
            "s_per_step": median,
            "images_per_s": size / median,
            "vs_fp32_contiguous": medians["32-true, contiguous"] / median,
            "vs_fp32_channels_last": medians["32-true, channels_last"] / median,
            "all_s": [round(v, 3) for v in times[name]],
        }
        results["rows"][name] = row
        print(
            f"| {name} | {median:.2f} | {row['images_per_s']:.1f} | {row['vs_fp32_contiguous']:.2f} | "
            f"{row['vs_fp32_channels_last']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
