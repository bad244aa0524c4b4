"""A stand-in for the paper's ImageNet Inception-ResNet-v2 where the model hub cannot be reached: timm's network with
random weights (seed 0) and BatchNorm statistics measured on synthetic Real-IAD-like images at 299x299, saved as a
timm state dict for ``model.backbone.weights_path``. It lets the paper network (cut, 512-wide head, 299x299) be
trained and benchmarked offline, e.g. to judge int8 engines on a trained head (docs/deployment.md). Its
features are not ImageNet's: detection quality says nothing about the paper's.

    python experiments/paper_backbone_stand_in.py build/inception_resnet_v2_stand_in.pth [--images 64]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mtfcdd.core.atomic_io import write_bytes_atomic
from mtfcdd.inference.int8_images import load_images
from mtfcdd.measure.subject import recalibrate_batchnorm
from mtfcdd.model.components.backbones import backbone_normalisation

NAME = "inception_resnet_v2"


def main() -> None:
    """Build the stand-in backbone and write its state dict to the given file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the state dict file to write (.pth)")
    parser.add_argument("--images", type=int, default=64, help="images the BatchNorm statistics are measured on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = timm.create_model(NAME, pretrained=False).eval()
    mean, std = (torch.tensor(values)[:, None, None] for values in backbone_normalisation(NAME))
    # offset: images disjoint from those int8_images serves for calibration
    images = (load_images(args.images, 299, source="synthetic", offset=1000, seed=args.seed + 1) - mean) / std
    # the whole classifier as the "backbone" whose BatchNorm statistics the benchmark's helper measures
    layers = recalibrate_batchnorm(SimpleNamespace(backbone=model, head=None), images, backbone=True, head=False)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_bytes_atomic(args.output, buffer.getvalue())
    print(
        f"{args.output}: {NAME}, random weights (seed {args.seed}), BatchNorm statistics of {layers} layers "
        f"measured on {len(images)} synthetic images"
    )


if __name__ == "__main__":
    main()
