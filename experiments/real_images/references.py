"""The plain supervised references of the real-image benchmark, on the same split and labels as MultiTypeFCDD.

- ``linear_probe``: logistic regression (L2, strength chosen on the validation cells) on the frozen backbone's
  globally average-pooled features;
- ``fine_tuned_classifier``: the whole EfficientNet-Lite0 ImageNet classifier fine-tuned as a binary classifier
  (the strongest plain supervised model a user could train on 2 CPU cores), epoch chosen on the validation cells.

Both read images as ``predict`` does (``ImageFileDataset``: the evaluation transform) and normalise them as the
backbone of the ``data=folder`` recipe expects; the classifier is that backbone's whole timm classifier, loaded from
the same weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from mtfcdd.data.images import ImageFileDataset
from mtfcdd.metrics.image_metrics import binary_image_metrics
from mtfcdd.model.components.backbones import FrozenBackbone, backbone_normalisation, load_classifier_state


@dataclass
class Scored:
    """A method's scores on the test cells (and the unsure cells), with its training time (s) and speed."""

    test: np.ndarray
    unsure: dict[str, np.ndarray]
    train_s: float
    ms_per_image: float


def load_images(paths: Sequence[Path], image_size: int) -> torch.Tensor:
    """Images as ``predict`` serves them: float32 [N, 3, S, S] in [0, 1]; an unreadable file stops the benchmark."""
    dataset = ImageFileDataset(paths, image_size)
    samples = [dataset[i] for i in range(len(dataset))]
    errors = [sample["error"] for sample in samples if sample["error"]]
    if errors:
        raise RuntimeError(f"{len(errors)} unreadable images, e.g. {errors[0]}")
    return torch.stack([sample["image"] for sample in samples])


def normaliser(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """[0, 1] images -> the normalised input of the timm model ``name``."""
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in backbone_normalisation(name))
    return lambda images: (images - mean) / std


def batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """``fn`` over ``images`` in batches, without autograd."""
    with torch.no_grad():
        return torch.cat([fn(images[i : i + batch]) for i in range(0, len(images), batch)])


def timed_ms(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(outputs, ms per image) of ``fn`` in batches of 32, after one warm-up batch."""
    batched(fn, images[:32])
    start = time.perf_counter()
    out = batched(fn, images)
    return out, 1000.0 * (time.perf_counter() - start) / len(images)


def score_cells(
    score: Callable[[torch.Tensor], torch.Tensor], images: dict[str, torch.Tensor], train_s: float
) -> Scored:
    """A method's scores on the test cells (timed) and on every ``unsure/<name>`` group."""
    test, ms = timed_ms(score, images["test"])
    unsure = {k: batched(score, v).numpy() for k, v in images.items() if k.startswith("unsure/")}
    return Scored(test.numpy(), unsure, train_s, ms)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Image AUROC (the project's exact metric)."""
    return binary_image_metrics(scores, labels).auroc


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, weight_decay: float) -> nn.Linear:
    """L2-regularised logistic regression fitted to convergence with L-BFGS (classes weighted equally)."""
    linear = nn.Linear(x.shape[1], 1)
    positive = float(y.mean())
    weights = torch.where(y > 0, 0.5 / positive, 0.5 / (1.0 - positive))
    optimiser = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logits = linear(x).squeeze(1)
        loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * weights).mean()
        loss = loss + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return linear


def linear_probe(backbone: FrozenBackbone, images: dict[str, torch.Tensor], labels: dict[str, np.ndarray]) -> Scored:
    """Logistic regression on the frozen ``backbone``'s pooled features; ``images``/``labels`` by split
    (``train``, ``val``, ``test``, and ``unsure/<name>`` images without labels)."""
    normalised = normaliser(backbone.name)

    def features(batch: torch.Tensor) -> torch.Tensor:
        return backbone(normalised(batch)).mean(dim=(2, 3))

    start = time.perf_counter()
    train = batched(features, images["train"])
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    y = torch.as_tensor(labels["train"], dtype=torch.float32)
    val = (batched(features, images["val"]) - mean) / std
    best = None
    for weight_decay in (1e-4, 1e-3, 1e-2, 1e-1):
        linear = _fit_logistic((train - mean) / std, y, weight_decay)
        score = auroc(linear(val).squeeze(1).detach().numpy(), labels["val"])
        if best is None or score > best[0]:
            best = (score, linear)
    linear = best[1]
    train_s = time.perf_counter() - start

    return score_cells(lambda batch: linear((features(batch) - mean) / std).squeeze(1), images, train_s)


def pretrained_classifier(name: str, weights_path: str, weights_mapping: str) -> nn.Module:
    """The whole timm classifier ``name`` with the backbone's ImageNet weights and a new one-logit head."""
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(load_classifier_state(name, weights_path, weights_mapping))
    model.reset_classifier(1)
    return model


def fine_tuned_classifier(
    backbone: Mapping[str, Any],
    images: dict[str, torch.Tensor],
    labels: dict[str, np.ndarray],
    epochs: int = 12,
    lr: float = 1e-3,
    batch: int = 32,
    seed: int = 0,
) -> Scored:
    """Fine-tune every layer of the classifier of ``backbone`` (its config: ``name``, ``weights_path``,
    ``weights_mapping``) with AdamW, a one-cycle schedule, class-balanced batches, flips and 90-degree rotations (a
    cell is symmetric under them); the epoch with the best validation AUROC is tested."""
    torch.manual_seed(seed)
    model = pretrained_classifier(backbone["name"], backbone["weights_path"], backbone["weights_mapping"])
    normalised = normaliser(backbone["name"])
    x, y = images["train"], torch.as_tensor(labels["train"], dtype=torch.float32)
    steps = epochs * (len(x) // batch)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    sample_weights = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    start = time.perf_counter()
    best = None
    for _ in range(epochs):
        model.train()
        order = torch.multinomial(sample_weights, len(x), replacement=True, generator=generator)
        for k in range(len(x) // batch):
            index = order[k * batch : (k + 1) * batch]
            inputs = x[index]
            if torch.rand(1, generator=generator) < 0.5:
                inputs = inputs.flip(3)
            inputs = torch.rot90(inputs, int(torch.randint(4, (1,), generator=generator)), dims=(2, 3))
            loss = F.binary_cross_entropy_with_logits(model(normalised(inputs)).squeeze(1), y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        model.eval()
        val = auroc(batched(lambda b: model(normalised(b)).squeeze(1), images["val"]).numpy(), labels["val"])
        if best is None or val >= best[0]:
            best = (val, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    model.eval()
    train_s = time.perf_counter() - start

    return score_cells(lambda batch: model(normalised(batch)).squeeze(1), images, train_s)
