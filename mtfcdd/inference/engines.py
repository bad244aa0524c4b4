"""Inference engines: the ``InferencePipeline`` run as it is (eager), tuned PyTorch
(BatchNorm folded, channels-last, optional reduced-precision autocast) or ONNX Runtime (fp32 or static int8).

Every engine maps raw RGB images [B, 3, H, W] (float in [0, 1], or uint8) to the pipeline's
``PipelineOutput``: an engine folds, casts, exports or quantises the one pipeline and
never re-writes a step of it. fp32 engines equal the eager pipeline up to float reassociation (~1e-6 relative);
bf16/fp16 and int8 engines differ by their precision. Pick one with ``build_engine`` and a config of the
``inference`` group (``conf/inference/*.yaml``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mtfcdd.core.config import ConfigError, check_choice
from mtfcdd.inference.cpu import cpu_supports_bf16, isa_level, physical_cores
from mtfcdd.inference.folding import FoldingError, fold_batchnorm
from mtfcdd.inference.onnx_pipeline import OUTPUT_NAMES, Int8Options, pipeline_to_onnx, quantize_pipeline, run_session
from mtfcdd.inference.onnx_runtime import make_openvino_request, make_session
from mtfcdd.model.pipeline import InferencePipeline, PipelineOutput

log = logging.getLogger(__name__)

ENGINES = ("eager", "fast", "compiled", "onnx_fp32", "onnx_int8", "openvino", "openvino_int8")
CALIBRATED_ENGINES = ("onnx_int8", "openvino_int8")
"""Engines that need calibration images (static int8; ``mtfcdd.inference.calibration.int8_calibration_images``
gives them)."""
AUTOCAST_CHOICES = ("none", "auto", "bf16", "fp16")


class Engine(ABC):
    """Callable ``raw images [B, 3, H, W] -> PipelineOutput``; inputs move to the engine's device, outputs stay
    there."""

    name: str = "engine"

    def __init__(self, pipeline: InferencePipeline, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    @abstractmethod
    def run(self, images: torch.Tensor) -> PipelineOutput:
        """The outputs for images already on the engine's device."""

    def __call__(self, images: torch.Tensor) -> PipelineOutput:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name} engine: expected images [B, 3, H, W], got {tuple(images.shape)}")
        with torch.inference_mode():
            return self.run(images.to(self.device))

    def precision(self) -> str:
        return "fp32"

    def describe(self) -> dict[str, Any]:
        """Name, device, precision and settings, for reports."""
        return {"engine": self.name, "device": str(self.device), "precision": self.precision()}


def _pipeline_on(pipeline: InferencePipeline, device: torch.device) -> InferencePipeline:
    """``pipeline`` in eval mode on ``device`` (a copy when it lives elsewhere)."""
    parameter = next(pipeline.parameters(), None)
    if parameter is not None and parameter.device != device:
        pipeline = copy.deepcopy(pipeline).to(device)
    return pipeline.eval()


class EagerEngine(Engine):
    """The pipeline's own forward in float32, unchanged: the reference every other engine is held against."""

    name = "eager"

    def __init__(self, pipeline: InferencePipeline, device: str | torch.device = "cpu") -> None:
        super().__init__(pipeline, device)
        self.pipeline = _pipeline_on(pipeline, self.device)

    def run(self, images: torch.Tensor) -> PipelineOutput:
        return self.pipeline(images)


def check_engine(engine: object) -> None:
    """Reject an ``inference.engine`` that names no engine (``ConfigError``)."""
    check_choice("inference.engine", engine, ENGINES + ("auto",))


def resolve_autocast(choice: str, device: torch.device) -> torch.dtype | None:
    """``none``: float32; ``auto``: bf16 on CPUs with native bf16, fp16 on CUDA, float32 otherwise; or the dtype."""
    if choice not in AUTOCAST_CHOICES:
        raise ConfigError(f"inference.autocast={choice!r}: expected one of {AUTOCAST_CHOICES}")
    if choice == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


class FastTorchEngine(Engine):
    """The pipeline tuned for inference: BatchNorm folded into the convolutions, channels-last memory format, and
    (only when asked for) reduced-precision autocast of the backbone and head. Works on a copy of the pipeline; the
    pseudo-Huber transform, upsampling, calibration and decisions run in float32.
    """

    name = "fast"

    def __init__(
        self,
        pipeline: InferencePipeline,
        device: str | torch.device = "cpu",
        channels_last: bool = True,
        fold_bn: bool = True,
        autocast: str = "none",
        threads: int | None = None,
        example_size: int = 64,
    ) -> None:
        super().__init__(pipeline, device)
        self.threads = threads
        self.channels_last = channels_last and self.device.type in ("cpu", "cuda")
        self.autocast = resolve_autocast(autocast, self.device)
        fast = copy.deepcopy(pipeline).cpu().eval()
        self.folded = 0
        if fold_bn:
            example = fast.normalise(
                torch.rand(2, 3, example_size, example_size, generator=torch.Generator().manual_seed(0))
            )
            try:
                backbone, n_backbone = fold_batchnorm(fast.net.backbone, example)
                with torch.no_grad():
                    features = backbone(example)
                head, n_head = fold_batchnorm(fast.net.head, features)
                fast.net.backbone, fast.net.head = backbone, head
                self.folded = n_backbone + n_head
            except FoldingError as err:  # keep the exact network rather than a wrong one
                log.warning("fast engine: BatchNorm folding skipped: %s", err)
        fast = fast.to(self.device)
        if self.channels_last:
            fast = fast.to(memory_format=torch.channels_last)
        for parameter in fast.parameters():
            parameter.requires_grad_(False)
        self.pipeline = fast
        self._maps = fast.maps

    def run(self, images: torch.Tensor) -> PipelineOutput:
        if self.threads:
            torch.set_num_threads(int(self.threads))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = (
            contextlib.nullcontext() if self.autocast is None else torch.autocast(self.device.type, dtype=self.autocast)
        )
        with autocast:
            maps = self._maps(images)
        return self.pipeline.postprocess(maps.float().contiguous(), images.shape[-2:])

    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "channels_last": self.channels_last, "folded_batchnorms": self.folded}


class CompiledTorchEngine(FastTorchEngine):
    """The ``fast`` engine with its network part (normalisation, backbone, head, pseudo-Huber) compiled by
    ``torch.compile`` (inductor, weights frozen into the graph as constants). Each new input shape compiles once
    (tens of seconds to minutes on a CPU); post-processing runs as in the pipeline."""

    name = "compiled"

    def __init__(
        self,
        pipeline: InferencePipeline,
        device: str | torch.device = "cpu",
        mode: str | None = None,
        freezing: bool = True,
        **settings: Any,
    ) -> None:
        super().__init__(pipeline, device, **settings)
        self.mode, self.freezing = mode, freezing
        options = {"freezing": True} if freezing else None
        self._maps = torch.compile(self.pipeline.maps, backend="inductor", mode=mode, options=options, dynamic=False)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mode": self.mode, "freezing": self.freezing}


class OnnxRuntimeEngine(Engine):
    """The pipeline exported to ONNX (``mtfcdd.inference.onnx_pipeline``) and run by ONNX Runtime on the CPU,
    in float32 or with static int8 quantisation of the backbone and head (QDQ, calibrated on real images).
    The model bytes are kept in ``model_bytes``."""

    def __init__(
        self,
        pipeline: InferencePipeline,
        int8: Int8Options | None = None,
        calibration: Iterable[torch.Tensor] | None = None,
        threads: int | None = None,
        optimization: str = "all",
        opset: int = 17,
        example_size: int = 64,
    ) -> None:
        super().__init__(pipeline, "cpu")
        self.name = "onnx_fp32" if int8 is None else "onnx_int8"
        self.threads = int(threads or physical_cores())
        self.settings: dict[str, Any] = {"threads": self.threads, "optimization": optimization}
        cpu_pipeline = copy.deepcopy(pipeline).cpu().eval()
        model = pipeline_to_onnx(cpu_pipeline, "float01", (example_size, example_size), opset=opset)
        if int8 is not None:
            images = collect_images(calibration, int8.calibration_images)
            model = quantize_pipeline(model, images, int8)
            self.settings.update(int8.describe(), calibration_images=len(images))
        self.model_bytes = model
        self.session = self._open(model, optimization)

    def _open(self, model: bytes, optimization: str):
        return make_session(model, self.threads, optimization)

    def run(self, images: torch.Tensor) -> PipelineOutput:
        return run_session(self.session, images.float())

    def precision(self) -> str:
        return "int8" if self.name.endswith("int8") else "fp32"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "onnx_bytes": len(self.model_bytes), **self.settings}


OPENVINO_PRECISIONS = ("f32", "bf16")


class OpenVinoEngine(OnnxRuntimeEngine):
    """The same ONNX model (float32, or the int8 QDQ model of ``onnx_int8``, which OpenVINO runs as int8) compiled
    by OpenVINO for the CPU (optional: ``pip install 'mtfcdd[deploy]'``). ``inference_precision``: ``f32``, or
    ``bf16`` for the float layers (OpenVINO's own default on CPUs with native bf16, made explicit here)."""

    def __init__(self, pipeline: InferencePipeline, inference_precision: str = "f32", **settings: Any) -> None:
        if inference_precision not in OPENVINO_PRECISIONS:
            raise ConfigError(
                f"inference.inference_precision={inference_precision!r}: expected one of {OPENVINO_PRECISIONS}"
            )
        self.inference_precision = inference_precision
        super().__init__(pipeline, **settings)
        self.name = "openvino" if settings.get("int8") is None else "openvino_int8"
        self.settings["inference_precision"] = inference_precision

    def _open(self, model: bytes, optimization: str):
        return make_openvino_request(model, self.threads, self.inference_precision)

    def run(self, images: torch.Tensor) -> PipelineOutput:
        compiled, request = self.session
        outputs = request.infer({"images": images.float().contiguous().numpy()})
        by_name = {name: value for port, value in outputs.items() for name in port.get_names()}
        return PipelineOutput(*(torch.from_numpy(by_name[name].copy()) for name in OUTPUT_NAMES))

    def precision(self) -> str:
        return "int8" if self.name.endswith("int8") else {"f32": "fp32", "bf16": "bf16"}[self.inference_precision]


def collect_images(images: Iterable[torch.Tensor] | None, limit: int) -> torch.Tensor:
    """Up to ``limit`` raw images [N, 3, H, W] float32 in [0, 1] from an iterable of images [3, H, W], batches
    [B, 3, H, W] or data-loader batch dicts."""
    if images is None:
        raise ValueError(
            "the int8 engine needs calibration images: pass real (training) images as RGB in [0, 1], e.g. from "
            "the data module's training set"
        )
    if isinstance(images, torch.Tensor):
        images = [images]
    chunks, count = [], 0
    for item in images:
        if isinstance(item, Mapping):  # a data-loader batch dict
            item = item["image"]
        item = torch.as_tensor(item).float()
        item = item.unsqueeze(0) if item.dim() == 3 else item
        if item.dim() != 4 or item.shape[1] != 3:
            raise ValueError(f"calibration images must be [3, H, W] or [B, 3, H, W], got {tuple(item.shape)}")
        chunks.append(item[: limit - count].cpu())
        count += len(chunks[-1])
        if count >= limit:
            break
    if not count:
        raise ValueError("the calibration iterable gave no images")
    return torch.cat(chunks)


def _as_dict(cfg: DictConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


AUTO_TIERS = ("avx512_vnni", "avx512", "avx2", "other", "cuda")


def auto_choices(choices: Mapping[str, Any], device: torch.device) -> list[str]:
    """The engines ``auto`` tries, in order, for this CPU's tier (``isa_level``) or for
    a CUDA ``device``."""
    missing = sorted(set(AUTO_TIERS) - set(choices))
    if missing:
        raise ConfigError(f"inference.choices: no engines listed for {missing} (expected keys {AUTO_TIERS})")
    tier = "cuda" if device.type == "cuda" else isa_level()
    names = list(choices[tier])
    bad = [name for name in names if name not in ENGINES]
    if bad or not names:
        raise ConfigError(f"inference.choices.{tier}={names}: expected engine names among {ENGINES}")
    return names


def inference_config(name: str) -> DictConfig:
    """``conf/inference/<name>.yaml`` with the configs of its ``defaults`` list merged in (as Hydra composes it)."""
    from mtfcdd.core.config import CONFIG_DIR

    cfg = OmegaConf.load(CONFIG_DIR / "inference" / f"{name}.yaml")
    parents = [entry for entry in cfg.pop("defaults", []) if entry != "_self_"]
    return OmegaConf.merge(*(inference_config(parent) for parent in parents), cfg)


def _build_auto(pipeline: InferencePipeline, options: dict[str, Any], calibration, device) -> Engine:
    """The first engine of this machine's tier that builds: int8 ones only with calibration images, optional
    runtimes only when installed."""
    unknown = sorted(set(options) - {"choices", "device"})
    if unknown:
        raise ConfigError(f"inference: unknown settings {unknown} for engine 'auto'")
    names = auto_choices(options["choices"], torch.device(options["device"]))
    if calibration is None:  # no calibration images (see mtfcdd.inference.calibration), so no int8 engine
        names = [name for name in names if name not in CALIBRATED_ENGINES] or ["fast"]
    for position, name in enumerate(names):
        try:
            engine = build_engine(pipeline, inference_config(name), calibration, device=device)
        except ImportError as err:  # an optional runtime that is not installed: the next choice
            if position == len(names) - 1:
                raise
            log.warning("inference=auto: %s unavailable (%s), trying %s", name, err, names[position + 1])
            continue
        log.info("inference=auto chose %s for this machine (%s)", name, engine.describe())
        return engine
    raise AssertionError("unreachable")


def build_engine(
    pipeline: InferencePipeline,
    cfg_inference: DictConfig | Mapping[str, Any] | None = None,
    calibration: Iterable[torch.Tensor] | None = None,
    device: str | torch.device | None = None,
) -> Engine:
    """The engine named by ``cfg_inference.engine`` (``eager`` when None) with the config's other keys as its
    settings (``conf/inference/<engine>.yaml``); ``auto`` picks one for this machine (``auto_choices``).
    ``calibration``: raw training images for the int8 engines (ignored by the others). ``device``: where the
    PyTorch engines run when the config says ``device: auto`` (ONNX Runtime runs on the CPU). ``pipeline`` must hold
    its final weights; engines that change it work on copies."""
    options = _as_dict(cfg_inference)
    engine = options.pop("engine", "eager")
    options.pop("_name", None)
    check_engine(engine)
    if options.get("device", "auto") == "auto":
        options["device"] = device or "cpu"
    if engine == "auto":
        return _build_auto(pipeline, options, calibration, options["device"])
    if engine == "eager":
        return EagerEngine(pipeline, **options)
    if engine == "fast":
        return FastTorchEngine(pipeline, **options)
    if engine == "compiled":
        return CompiledTorchEngine(pipeline, **options)
    options.pop("device")
    int8 = Int8Options.from_settings(options) if engine in CALIBRATED_ENGINES else None
    engine_keys = {"threads", "optimization", "opset", "example_size"}
    if engine.startswith("openvino"):
        engine_keys.add("inference_precision")
    unknown = sorted(set(options) - engine_keys - set(int8.describe() if int8 else ()))
    if unknown:
        raise ConfigError(f"inference: unknown settings {unknown} for engine {engine!r}")
    settings = {key: value for key, value in options.items() if key in engine_keys}
    kind = OpenVinoEngine if engine.startswith("openvino") else OnnxRuntimeEngine
    return kind(pipeline, int8=int8, calibration=calibration, **settings)
