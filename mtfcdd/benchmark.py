"""Table 6 of the paper for this machine: size and speed of the network, per inference engine.

``python -m mtfcdd.benchmark [model/backbone=efficientnet_lite0] [mode=single] [data.image_size=224]
[ckpt_path=PATH] [run=[eager,onnx_int8]] [batch_sizes=[1,8]] [rounds=5]``

Variants of an engine run side by side: ``'+engines.int8_u8u8={engine: onnx_int8, weight_type: quint8,
reduce_range: false}' 'run=[eager,onnx_int8,int8_u8u8]'`` (settings not given take the engine's defaults).

Prints (and writes ``benchmark.md``/``benchmark.json`` into the run directory): parameters (total, trainable),
size of the saved weights, and for each engine the milliseconds per image at batch 1 and batched, on the CPU
(and the GPU when present), timed in the same run as eager fp32 PyTorch, interleaved round by round so that
load from other processes hits every engine alike; the speed-up over eager is the ratio of medians. Each engine's
heatmaps are compared with fp32 on real images: relative L2 error and agreement of the per-type decisions
(score = heatmap max >= the network's threshold, or the fp32 median score per type where none is calibrated).
Nothing about time is asserted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.inference.calibration import int8_calibration_images
from mtfcdd.inference.engines import Engine, build_engine
from mtfcdd.inference.fidelity import (
    COMPARED_MEANS,
    engine_test_results,
    median_thresholds,
    metric_changes,
    output_deviation,
)
from mtfcdd.inference.int8_images import load_images
from mtfcdd.measure.subject import build_benchmark_pipeline, machine_info, recalibrate_batchnorm
from mtfcdd.measure.timing import saved_weights_mb, time_interleaved
from mtfcdd.model.pipeline import PipelineOutput
from mtfcdd.run.build import build_datamodule
from mtfcdd.run.lifecycle import entry_point

log = logging.getLogger(__name__)

UNTRAINED_CHOICES = ("recalibrate_bn", "none")


def _batched(engine: Callable[[torch.Tensor], PipelineOutput], images: torch.Tensor, batch: int = 8) -> PipelineOutput:
    parts = [engine(images[i : i + batch]) for i in range(0, len(images), batch)]
    return PipelineOutput(*(torch.cat([part[k].cpu() for part in parts]) for k in range(len(PipelineOutput._fields))))


def _batch_of(images: torch.Tensor, size: int) -> torch.Tensor:
    repeats = -(-size // len(images))
    return images.repeat(repeats, 1, 1, 1)[:size].contiguous()


def _engine_config(cfg: DictConfig, name: str) -> dict[str, Any]:
    if name not in cfg.engines:
        raise ConfigError(f"run: engine {name!r} has no settings under engines (known: {list(cfg.engines)})")
    return OmegaConf.to_container(cfg.engines[name], resolve=True)  # type: ignore[return-value]


def _measure_device(
    device: str, engines: dict[str, Engine], reference: PipelineOutput, images: torch.Tensor, cfg: DictConfig
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for name, engine in engines.items():
        outputs = _batched(engine, images.to(engine.device))
        rows[name] = {
            **engine.describe(),
            "device": device,
            "name": name,
            "deviation": output_deviation(outputs, reference),
        }
    sync = torch.cuda.synchronize if device == "cuda" else None
    for batch in cfg.batch_sizes:
        inputs = _batch_of(images, int(batch)).to(next(iter(engines.values())).device)
        times = time_interleaved(dict(engines), inputs, rounds=cfg.rounds, warmup=cfg.warmup, synchronize=sync)
        baseline = statistics.median(times[next(iter(engines))])
        for name, values in times.items():
            median = statistics.median(values)
            rows[name][f"b{batch}"] = {
                "ms_per_image": 1000 * median,
                "ms_per_image_min": 1000 * min(values),
                "images_per_s": 1.0 / median,
                "speedup_vs_eager": baseline / median,
                "ms_per_image_all": [round(1000 * v, 2) for v in values],
            }
    return list(rows.values())


def _threshold_source(thresholds: torch.Tensor) -> str:
    finite = torch.isfinite(thresholds)
    if finite.all():
        return "the network's calibrated thresholds"
    if not finite.any():
        return "fp32 median score per type (no calibrated thresholds)"
    return "the network's thresholds, fp32 median score for the types without one"


def check_config(cfg: DictConfig) -> None:
    """Reject an ``untrained`` choice or a ``run`` engine without settings (the lifecycle runs this first)."""
    check_choice("untrained", cfg.untrained, UNTRAINED_CHOICES)
    unknown = [name for name in cfg.run if name not in cfg.engines]
    if unknown:
        raise ConfigError(f"run: engines {unknown} have no settings under engines (known: {list(cfg.engines)})")


def benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Run the benchmark of ``cfg`` (``conf/benchmark.yaml``; checked by ``check_config``, seeded with
    ``cfg.seed``); returns the results that the table shows."""
    pipeline, net_cfg, notes = build_benchmark_pipeline(cfg)
    net = pipeline.net
    size = int(net_cfg.data.image_size)
    datamodule = None
    if notes["trained"] and cfg.test.enabled:  # the checkpoint's own data: training images calibrate, test judges
        with open_dict(net_cfg):
            net_cfg.data.test_max_images = cfg.test.max_images  # a stratified subset (None: all)
        datamodule = build_datamodule(net_cfg)
        calibration = None  # each int8 engine's own count of training images (int8_calibration_images)
        test_set = datamodule.test_dataset
        step = max(1, len(test_set) // cfg.deviation_images)
        images = torch.stack([test_set[i]["image"] for i in range(0, len(test_set), step)][: cfg.deviation_images])
        image_source = "checkpoint training (calibration) / test (deviation)"
    else:
        source = {"source": cfg.int8_images.source, "root": cfg.int8_images.root, "seed": cfg.int8_images.seed}
        calibration = load_images(cfg.calibration_images, size, offset=0, **source)
        images = load_images(cfg.deviation_images, size, offset=10_000, **source)
        image_source = cfg.int8_images.source
    if not notes["trained"] and cfg.untrained == "recalibrate_bn":
        count = recalibrate_batchnorm(
            net, pipeline.normalise(calibration), backbone=not notes["pretrained_backbone"], head=True
        )
        notes["weights"] += (
            f"; BatchNorm statistics of the untrained parts measured on {len(calibration)} images ({count} layers)"
        )
    pipeline.eval()
    threshold_source = _threshold_source(pipeline.image_threshold)
    with torch.no_grad():
        thresholds = median_thresholds(pipeline.image_threshold, _batched(pipeline, images).scores)
    if datamodule is None:  # untrained types get the median score as threshold (before engines copy the pipeline)
        pipeline.set_calibration(pipeline.heat_min, pipeline.heat_max, thresholds)
    counts = net.parameter_counts()
    results: dict[str, Any] = {
        "bounds": OmegaConf.to_container(cfg.bounds),
        "network": {
            "backbone": net_cfg.model.backbone.name,
            "head_width": int(net_cfg.model.head_width),
            "types": net.num_types,
            "input_size": size,
            "parameters_total": counts["total"],
            "parameters_trainable": counts["trainable"],
            "weights_mb": saved_weights_mb(net),
            **notes,
        },
        "machine": machine_info(),
        "settings": {
            "batch_sizes": list(cfg.batch_sizes),
            "rounds": cfg.rounds,
            "warmup": cfg.warmup,
            "deviation_images": len(images),
            "image_source": image_source,
            "calibration_images": "per engine" if calibration is None else len(calibration),
        },
        "rows": [],
        "failed": {},
    }
    names = ["eager"] + [name for name in cfg.run if name != "eager"]
    engines: dict[str, Engine] = {}
    for name in names:
        start = time.perf_counter()
        try:
            settings = {"engine": name} | _engine_config(cfg, name)  # a variant names its engine type
            # with a checkpoint: its own count of training images; else its first of the calibration images
            images_for_engine = int8_calibration_images(settings, datamodule, calibration)
            engines[name] = build_engine(pipeline, settings, calibration=images_for_engine)
        except Exception as err:  # report the engine as failed, time the others
            if name == "eager":
                raise
            log.exception("engine %s failed to build", name)
            results["failed"][name] = f"{err.__class__.__name__}: {err}"
            continue
        engines[name].build_seconds = time.perf_counter() - start  # type: ignore[attr-defined]
        log.info("built %s in %.1f s", name, engines[name].build_seconds)  # type: ignore[attr-defined]
    reference = _batched(engines["eager"], images)
    results["thresholds"] = {"source": threshold_source, "values": thresholds.tolist()}
    rows = _measure_device("cpu", engines, reference, images, cfg)
    for row in rows:
        row["build_s"] = getattr(engines[row["name"]], "build_seconds", None)
    if datamodule is not None:
        runs = engine_test_results(pipeline, net_cfg, datamodule, engines)
        for row in rows:
            row["test"] = metric_changes(runs[row["name"]], runs["eager"])
            row["within_bounds"] = within_bounds(row["test"], cfg.bounds)
        results["settings"]["test_images"] = len(runs["eager"]["anomalous"])
        results["best"] = best_engine(rows, cfg.batch_sizes[-1])
    results["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    results["rows"].extend(rows)
    if cfg.gpu != False and torch.cuda.is_available():  # noqa: E712 (false or "auto")
        gpu_engines = {}
        for name in ("eager", "fast"):
            settings = (_engine_config(cfg, name) if name in cfg.engines else {}) | {"engine": name, "device": "cuda"}
            gpu_engines[name] = build_engine(pipeline, settings)
        results["rows"].extend(_measure_device("cuda", gpu_engines, reference, images, cfg))
    del engines
    return results


def within_bounds(test: dict[str, Any], bounds: DictConfig | dict) -> bool:
    """Whether every mean metric moved by at most ``bounds.mean_points`` and type accuracy by at most
    ``bounds.type_accuracy_points`` (points; a change that is NaN because the metric is undefined counts as none)."""
    limits = dict.fromkeys(COMPARED_MEANS, bounds["mean_points"]) | {"type_accuracy": bounds["type_accuracy_points"]}
    return all(math.isnan(change) or abs(change) <= limits[name] for name, change in test["change_points"].items())


def best_engine(rows: list[dict[str, Any]], batch: int) -> dict[str, Any] | None:
    """The fastest engine at ``batch`` whose test metrics stay within the bounds (name, speed-up, precision)."""
    kept = [row for row in rows if row.get("within_bounds") and f"b{batch}" in row]
    if not kept:
        return None
    row = max(kept, key=lambda r: r[f"b{batch}"]["speedup_vs_eager"])
    return {
        "engine": row["name"],
        "precision": row["precision"],
        "batch": batch,
        "speedup_vs_eager": row[f"b{batch}"]["speedup_vs_eager"],
    }


def format_benchmark_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table with a header of network and machine facts."""
    net, machine = results["network"], results["machine"]
    batches = results["settings"]["batch_sizes"]
    lines = [
        "# MultiTypeFCDD inference benchmark (Table 6 style)",
        "",
        f"- network: {net['backbone']} cut + head {net['head_width']}, M = {net['types']}, "
        f"input {net['input_size']}x{net['input_size']}; weights: {net['weights']}",
        f"- parameters: {net['parameters_total']:,} total, {net['parameters_trainable']:,} trainable; "
        f"saved weights {net['weights_mb']:.1f} MB (state dict, 10^6 bytes)",
        f"- CPU: {machine['cpu']}, {machine['physical_cores']} physical cores, {machine['torch_threads']} threads; "
        f"instruction sets: {' '.join(machine['instruction_sets']) or 'none of interest'} (tier "
        f"{machine['isa_level']}; torch kernels {machine['cpu_capability']}); native bf16: "
        f"{'yes' if machine['native_bf16'] else 'no'}, int8 VNNI: {'yes' if machine['int8_vnni'] else 'no'}; "
        f"GPU: {machine['gpu'] or 'none'}; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
        f"openvino {machine['openvino'] or 'not installed'}",
        *(
            [
                f"- CPUID hides {' '.join(machine['hidden_instruction_sets'])}, which /proc/cpuinfo lists: an "
                "emulated or masked CPU, every runtime ran the kernels of the instruction sets above"
            ]
            if machine.get("hidden_instruction_sets")
            else []
        ),
        f"- load average (1 min) at start / end: {machine['load_average_1min_start']:.1f} / "
        f"{machine.get('load_average_1min_end', float('nan')):.1f}",
        f"- timing: median of {results['settings']['rounds']} interleaved rounds per batch size; speed-up = eager "
        f"median / engine median in the same run; deviation on {results['settings']['deviation_images']} "
        f"{results['settings']['image_source']} images, thresholds: {results['thresholds']['source']}",
    ]
    tested = any("test" in row for row in results["rows"])
    if tested:
        lines.append(
            f"- test metrics: the module's test stage with each engine on {results['settings']['test_images']} "
            "test images of the checkpoint's data; change vs eager fp32 in points (mean over types); "
            "'decisions changed' = images whose any-defect decision differs; bounds: "
            f"{results['bounds']['mean_points']} points on the means, {results['bounds']['type_accuracy_points']} on "
            "type accuracy"
        )
        best = results.get("best")
        lines.append(
            f"- best engine within the bounds at batch {results['settings']['batch_sizes'][-1]}: "
            + (f"{best['engine']} ({best['precision']}), {best['speedup_vs_eager']:.2f}x eager" if best else "none")
        )
    lines.append("")
    header = ["device", "engine", "precision"]
    for batch in batches:
        header += [f"ms/img b{batch}", f"x eager b{batch}"]
    header += ["rel. L2 vs fp32", "decisions equal", "model MB", "build s"]
    if tested:
        header += ["d I-AUROC", "d P-AUROC", "d AUPRO", "d type acc", "decisions changed", "within bounds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in results["rows"]:
        cells = [row["device"], row["name"], str(row.get("precision", ""))]
        for batch in batches:
            timing = row.get(f"b{batch}", {})
            cells += [
                f"{timing.get('ms_per_image', float('nan')):.1f}",
                f"{timing.get('speedup_vs_eager', float('nan')):.2f}",
            ]
        deviation = row["deviation"]
        cells += [
            f"{deviation['rel_l2']:.2e}",
            f"{deviation['decisions'] - deviation['decision_mismatches']}/{deviation['decisions']}",
            f"{row['onnx_bytes'] / 1e6:.1f}" if "onnx_bytes" in row else "",
            f"{row['build_s']:.1f}" if row.get("build_s") is not None else "",
        ]
        if tested:
            test = row.get("test")
            if test is None:
                cells += [""] * 6
            else:
                change = test["change_points"]
                cells += [f"{change[name]:+.2f}" for name in (*COMPARED_MEANS, "type_accuracy") if name in change]
                cells += [""] * (4 - len(change))
                cells += [f"{test['decisions_changed']}/{test['images']}", "yes" if row["within_bounds"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    for name, error in results["failed"].items():
        lines.append(f"\n- engine {name} failed: {error}")
    return "\n".join(lines) + "\n"


def write_benchmark_files(results: dict[str, Any], output_dir: Path) -> tuple[Path, Path]:
    """``benchmark.md`` (the table) and ``benchmark.json`` (every measurement) in ``output_dir``, written atomically."""
    table = write_bytes_atomic(output_dir / "benchmark.md", format_benchmark_table(results).encode())
    raw = write_bytes_atomic(output_dir / "benchmark.json", json.dumps(results, indent=2, default=str).encode())
    return table, raw


def run_benchmark(cfg: DictConfig) -> dict[str, Any]:
    """The command: measure, print the table, write the files; returns the results."""
    results = benchmark(cfg)
    print(format_benchmark_table(results))
    table, raw = write_benchmark_files(results, Path(cfg.paths.output_dir))
    print(f"written: {table}, {raw}")
    return results


main = entry_point("benchmark", checks=[check_config])(run_benchmark)


if __name__ == "__main__":
    main()
