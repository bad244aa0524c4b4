"""The inference pipeline: raw images in, everything a user needs out. One ``nn.Module`` for every path.

``raw RGB (uint8 0..255 or float [0, 1]) -> normalise (pixel_mean/pixel_std) -> backbone -> head -> pseudo-Huber
maps A_k -> upsample to the input size (A'_k) -> calibrated heatmaps in [0, 1] (heat_min/heat_max) -> per-type image
scores (max or mean of A'_k) -> per-type decisions (score >= image_threshold) -> the any-defect view (channels
divided by anomaly_scale, their maximum; ``mtfcdd.model.any_defect``) and its decision (>= anomaly_threshold)
-> predicted type``: the fields of ``PipelineOutput`` (the output contract). With a
``detector`` (a one-channel pipeline, e.g. PatchCore's, attached by
``mtfcdd.model.checkpoint.load_pipeline``'s ``detector_ckpt``) the any-defect view and its decision are the
detector's own, and the type channels say which defect it is: "whether" from the detector, "which" from the types.

Validation, test, ``evaluate``, ``predict``, the inference engines, the ONNX export and the benchmark all run this
module; an engine may fold, compile or quantise it, never re-write a step. The normalisation, heat range and
thresholds are buffers (they travel in checkpoints and exported graphs); the score kind and the type rule are
constants set from the run config.
"""

from __future__ import annotations

import torch
from torch import nn

from mtfcdd.core.config import check_choice
from mtfcdd.model.any_defect import any_defect_map, any_defect_scores
from mtfcdd.model.image_score import IMAGE_SCORES, image_scores
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD
from mtfcdd.model.outputs import PipelineOutput

TYPE_RULES = ("raw", "calibrated")
"""Predicted type = argmax over the raw per-type scores (``raw``) or over the scores divided by their thresholds
(``calibrated``)."""


class InferencePipeline(nn.Module):
    """MultiTypeFCDD from raw images to decisions.

    Args:
        net: the network (frozen backbone + head + pseudo-Huber), fed normalised images.
        mean, std: RGB normalisation of [0, 1] pixels that the backbone expects (3 numbers each).
        image_score: ``max`` or ``mean`` of each upsampled heatmap channel.
        type_rule: ``raw`` or ``calibrated`` (see ``TYPE_RULES``).

    A detector (see ``set_detector``) is a submodule: its weights and calibration travel with the pipeline.
    """

    def __init__(
        self,
        net: MultiTypeFCDD,
        mean: tuple[float, float, float] | list[float],
        std: tuple[float, float, float] | list[float],
        image_score: str = "max",
        type_rule: str = "raw",
    ) -> None:
        super().__init__()
        check_choice("image_score", image_score, IMAGE_SCORES)
        check_choice("type_rule", type_rule, TYPE_RULES)
        self.net = net
        self.image_score = image_score
        self.type_rule = type_rule
        m = net.num_types
        self.register_buffer("pixel_mean", torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([float(v) for v in std]).view(1, 3, 1, 1))
        self.register_buffer("heat_min", torch.zeros(m))
        self.register_buffer("heat_max", torch.ones(m))
        self.register_buffer("image_threshold", torch.full((m,), float("inf")))
        self.register_buffer("anomaly_scale", torch.ones(m))
        self.register_buffer("anomaly_threshold", torch.tensor(float("inf")))
        self.detector: InferencePipeline | None = None

    @property
    def num_types(self) -> int:
        """M, the number of heatmap channels."""
        return self.net.num_types

    @property
    def model_name(self) -> str:
        """``model.name`` of the network, ``<types>+<detector>`` with a detector (e.g. ``mtfcdd+patchcore``)."""
        name = self.net.model_name
        return name if self.detector is None else f"{name}+{self.detector.model_name}"

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Raw RGB [B, 3, H, W], uint8 0..255 or float in [0, 1] -> the backbone's normalised float32 input."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected RGB [B, 3, H, W], got {tuple(images.shape)}")
        pixels = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (pixels - self.pixel_mean) / self.pixel_std

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images -> pseudo-Huber maps A_k [B, M, h, w] at feature resolution (the network's part); with a
        detector, its map is appended as channel M ([B, M + 1, h, w])."""
        maps = self.net(self.normalise(images), upsample=False).maps
        if self.detector is None:
            return maps
        return torch.cat([maps, self.detector.maps(images).to(maps.dtype)], dim=1)

    def postprocess(self, maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> PipelineOutput:
        """Maps A_k [B, M, h, w] (with a detector [B, M + 1, h, w], see ``maps``) -> every output at input
        ``size`` (H, W)."""
        maps = maps.float()
        if self.detector is not None:
            detected = self.detector.postprocess(maps[:, self.num_types :], size)
            maps = maps[:, : self.num_types]
        heatmaps = self.net.upsample_maps(maps, size)
        low = self.heat_min.view(1, -1, 1, 1)
        span = (self.heat_max - self.heat_min).clamp_min(1e-12).view(1, -1, 1, 1)
        calibrated = ((heatmaps - low) / span).clamp(0.0, 1.0)
        scores = image_scores(heatmaps, self.image_score)
        if self.detector is None:
            anomaly_map = any_defect_map(heatmaps, self.anomaly_scale)
            anomaly_score = any_defect_scores(scores, self.anomaly_scale)
            anomalous = anomaly_score >= self.anomaly_threshold
        else:
            anomaly_map, anomaly_score, anomalous = detected.anomaly_map, detected.anomaly_score, detected.anomalous
        return PipelineOutput(
            maps=maps,
            heatmaps=heatmaps,
            calibrated=calibrated,
            scores=scores,
            decisions=scores >= self.image_threshold,
            anomaly_map=anomaly_map,
            anomaly_score=anomaly_score,
            anomalous=anomalous,
            predicted_type=self.type_scores(scores).argmax(dim=1),
        )

    def type_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The per-type scores [B, M] whose argmax is the predicted type: scores divided by their thresholds
        (``calibrated``, where a type has a finite positive threshold) or the raw scores."""
        if self.type_rule == "raw":
            return scores
        # finite and positive, written as comparisons: OpenVINO 2026.4 folds IsFinite(inf) of a constant to True
        usable = (self.image_threshold > 0) & (self.image_threshold < float("inf"))
        return torch.where(usable, scores / torch.where(usable, self.image_threshold, 1.0), scores)

    def forward(self, images: torch.Tensor) -> PipelineOutput:
        """Raw RGB images [B, 3, H, W] (uint8 or float in [0, 1]) -> ``PipelineOutput`` at input size."""
        return self.postprocess(self.maps(images), images.shape[-2:])

    def set_calibration(self, heat_min: torch.Tensor, heat_max: torch.Tensor, thresholds: torch.Tensor) -> None:
        """Store the per-type heat range [M] and image thresholds [M] (``inf`` where a type has none)."""
        for name, value in (("heat_min", heat_min), ("heat_max", heat_max), ("image_threshold", thresholds)):
            buffer = getattr(self, name)
            value = torch.as_tensor(value, dtype=buffer.dtype, device=buffer.device)
            if value.shape != buffer.shape:
                raise ValueError(f"{name}: expected shape {tuple(buffer.shape)}, got {tuple(value.shape)}")
            buffer.copy_(value)

    def set_detector(self, detector: InferencePipeline, image_size: int) -> None:
        """Take the any-defect view (map, score, calibrated decision) from ``detector``, a calibrated one-channel
        pipeline (mode single: PatchCore or MultiTypeFCDD) that maps ``image_size`` x ``image_size`` images at this
        network's resolution (checked on a blank image); the type channels keep saying which defect it is."""
        if detector.num_types != 1 or detector.detector is not None:
            raise ValueError(
                f"expected a one-channel pipeline without a detector of its own, got {detector.num_types} channels"
            )
        with torch.no_grad():
            probe = torch.zeros(1, 3, image_size, image_size)
            types, detected = self.maps(probe).shape[-2:], detector.maps(probe).shape[-2:]
        if types != detected:
            raise ValueError(
                f"it maps {image_size}x{image_size} images to {tuple(detected)}, the type channels to "
                f"{tuple(types)}: a detector must map at the type channels' resolution"
            )
        self.detector = detector

    def set_any_defect(self, scale: torch.Tensor, threshold: float) -> None:
        """Store the any-defect view's per-type scales [M] (> 0) and its image threshold (``inf``: never decides)."""
        scale = torch.as_tensor(scale, dtype=self.anomaly_scale.dtype, device=self.anomaly_scale.device)
        if scale.shape != self.anomaly_scale.shape or not bool((scale > 0).all()):
            raise ValueError(f"anomaly_scale: expected {self.num_types} positive values, got {scale.tolist()}")
        self.anomaly_scale.copy_(scale)
        self.anomaly_threshold.fill_(float(threshold))
