"""Eq. 3 against a float64 direct evaluation; stability near z = 0 and for large z."""

import math

import mpmath
import pytest
import torch

from mtfcdd.model.multitype_fcdd.loss import MultiTypeFCDDLoss, log1mexp
from mtfcdd.model.multitype_fcdd.network import pseudo_huber


def direct_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z, y = z.double(), y.double()
    return ((1 - y) * z - y * torch.log(1 - torch.exp(-z))).mean()


def test_loss_matches_float64_direct_evaluation():
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(64, 8, generator=gen) * 5 + 1e-3
    y = (torch.rand(64, 8, generator=gen) < 0.3).float()
    ours = MultiTypeFCDDLoss()(z, y)
    assert ours.dtype == torch.float32
    assert ours.item() == pytest.approx(direct_loss(z, y).item(), rel=1e-5)


@pytest.mark.parametrize("z", [1e-5, 1e-3, 0.1, math.log(2.0), 0.7, 2.0, 10.0, 30.0, 80.0])
def test_log1mexp_float32_matches_high_precision(z):
    with mpmath.workdps(50):
        exact = float(mpmath.log(1 - mpmath.exp(-mpmath.mpf(z))))
    got = log1mexp(torch.tensor([z], dtype=torch.float32)).item()
    assert got == pytest.approx(exact, rel=1e-5, abs=1e-30)


def test_gradient_matches_float64_autograd():
    z = torch.tensor([[1e-4, 0.05, 0.69, 0.70, 3.0, 40.0]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    MultiTypeFCDDLoss()(z, y).backward()
    z64 = z.detach().double().requires_grad_(True)
    direct_loss(z64, y).backward()
    torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_at_zero_and_large_scores(dtype):
    """A batch of 32 images x 8 types (the paper's) holding z = 0, tiny and huge scores, in every training dtype."""
    special = torch.tensor([0.0, 1e-12, 1e-7, 50.0, 1e4])
    z = torch.rand(32, 8).mul(3).index_put_((torch.zeros(5, dtype=torch.long), torch.arange(5)), special)
    z = z.to(dtype).requires_grad_(True)
    y = torch.ones_like(z)
    loss = MultiTypeFCDDLoss()(z, y)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # the anomalous term still pushes z up (negative gradient) below the floor
    assert (z.grad[0, :3] < 0).all()


def test_normal_images_cost_their_score():
    z = torch.tensor([[0.5, 2.0]])
    assert MultiTypeFCDDLoss()(z, torch.zeros_like(z)).item() == pytest.approx(1.25)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="one shape"):
        MultiTypeFCDDLoss()(torch.zeros(2, 8), torch.zeros(2, 1))


def test_pseudo_huber_matches_definition_and_is_stable():
    phi = torch.tensor([-1e4, -3.0, -1e-4, 0.0, 1e-4, 0.5, 1e4], dtype=torch.float64)
    expected = torch.sqrt(phi**2 + 1) - 1
    torch.testing.assert_close(pseudo_huber(phi), expected, rtol=1e-9, atol=1e-12)
    small = pseudo_huber(torch.tensor([1e-4], dtype=torch.float32))
    assert small.item() == pytest.approx(5e-9, rel=1e-4)  # the naive form gives 0 in float32
