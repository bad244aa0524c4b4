"""Fold inference-mode BatchNorm layers into the convolutions that feed them.

In eval mode ``BN(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + eps)`` and
``b' = (b - m) * g / sqrt(v + eps) + beta``: one pass over the activations less per folded pair. Works on any module
(timm ``ConvNormAct``/``BatchNormAct2d`` blocks, plain ``nn.Sequential``): pairs are found by running an example
input and matching each BatchNorm's input tensor to the convolution that produced it, then the folded copy is
checked against the original on that input, so a pairing that the graph does not allow (a conv output that also
feeds something else) can never change results silently.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class FoldingError(RuntimeError):
    """The folded module does not reproduce the original on the example input."""


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d)


def _replacement(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What is left of ``bn`` once its affine transform lives in the conv: Identity, or timm's drop -> act tail."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    if isinstance(drop, nn.Module) and isinstance(act, nn.Module):  # timm BatchNormAct2d: bn -> drop -> act
        return nn.Sequential(drop, act)
    return None


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) for each BatchNorm whose only input is the output of a conv called exactly once."""
    names = {module: name for name, module in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    conv_of_output: dict[int, nn.Module] = {}
    bn_inputs: dict[nn.Module, int] = {}
    keep_alive: list[torch.Tensor] = []  # tensor ids stay unique while every recorded tensor is alive

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        if isinstance(module, nn.Conv2d):
            conv_of_output[id(output)] = module
            keep_alive.append(output)
        else:
            bn_inputs[module] = id(inputs[0])
            keep_alive.append(inputs[0])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d) or _is_batchnorm(m)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for bn, input_id in bn_inputs.items():
        conv = conv_of_output.get(input_id)
        if conv is None or calls[bn] != 1 or calls[conv] != 1:
            continue
        if conv.out_channels != bn.num_features or not bn.track_running_stats or bn.running_var is None:
            continue
        if _replacement(bn) is not None:
            pairs.append((names[conv], names[bn]))
    return pairs


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor, rtol: float = 1e-4) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with every foldable BatchNorm merged into its conv, and how many were folded.

    ``example`` is a representative input; the copy must match the original on it to relative L2 error ``rtol``
    (float32 reassociation only), else ``FoldingError``. ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        reference = _first_tensor(folded(example))
    pairs = _conv_bn_pairs(folded, example)
    for conv_name, bn_name in pairs:
        bn = folded.get_submodule(bn_name)
        _fold_into(folded.get_submodule(conv_name), bn)
        _set_submodule(folded, bn_name, _replacement(bn))
    with torch.no_grad():
        result = _first_tensor(folded(example))
    error = (torch.linalg.vector_norm(result - reference) / torch.linalg.vector_norm(reference).clamp_min(1e-30)).item()
    if not error <= rtol:
        raise FoldingError(f"folding {len(pairs)} BatchNorm layers changed the output (relative error {error:.2e})")
    return folded, len(pairs)


def _first_tensor(output) -> torch.Tensor:
    while isinstance(output, (list, tuple)):
        output = output[-1]
    return output.float()
