"""E[T] of the balanced epoch (Eq. 4 exactly, Eq. 5 by Monte Carlo) against independent references."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import mpmath
import numpy as np
import pytest
from scipy import stats

from mtfcdd.sampling.coupon import balanced_epoch, expected_draws, simulate_draws


def dp_expected_draws(quotas: tuple[int, ...]) -> Fraction:
    """E[T] by first-step analysis on the remaining quotas, in exact rational arithmetic.

    From remaining quotas r (z of them already 0): E(r) = 1 + (z E(r) + sum_{i: r_i > 0} E(r - e_i)) / n.
    """
    n = len(quotas)

    @cache
    def expected(remaining: tuple[int, ...]) -> Fraction:
        open_classes = [i for i, r in enumerate(remaining) if r > 0]
        if not open_classes:
            return Fraction(0)
        following = sum(expected(remaining[:i] + (remaining[i] - 1,) + remaining[i + 1 :]) for i in open_classes)
        return (n + following) / len(open_classes)

    return expected(tuple(quotas))


def exact_pmf(quotas: tuple[int, ...], max_draws: int) -> np.ndarray:
    """P(T = t) for t = 0..max_draws, counting sequences: P(T <= t) = t! [x^t] prod_i sum_{k >= m_i} x^k / k! / n^t."""
    n = len(quotas)
    coefficients = [Fraction(1)] + [Fraction(0)] * max_draws
    for quota in quotas:
        factor = [Fraction(1, math.factorial(k)) if k >= quota else Fraction(0) for k in range(max_draws + 1)]
        coefficients = [sum(coefficients[j] * factor[t - j] for j in range(t + 1)) for t in range(max_draws + 1)]
    done = [float(coefficients[t] * math.factorial(t) / Fraction(n) ** t) for t in range(max_draws + 1)]
    return np.diff(np.array(done), prepend=0.0)


@pytest.mark.parametrize("quotas", [(1, 1, 1), (5,), (3, 2, 1, 4), (2, 7), (4, 4, 4), (6, 1, 1, 2, 3)])
def test_exact_matches_first_step_dynamic_programme(quotas):
    assert expected_draws(quotas).mean == pytest.approx(float(dp_expected_draws(quotas)), rel=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3, 9, 20, 50])
def test_unit_quotas_give_n_times_harmonic_number(n):
    harmonic = sum(Fraction(1, k) for k in range(1, n + 1))
    assert expected_draws([1] * n).mean == pytest.approx(float(n * harmonic), rel=1e-10)


@pytest.mark.parametrize("m", [1, 17, 1000, 10**6])
def test_single_class_needs_exactly_its_quota(m):
    assert expected_draws([m]).mean == pytest.approx(m, rel=1e-11)


def test_exact_matches_high_precision_integral():
    quotas = (40, 35, 60, 8)
    mpmath.mp.dps = 30
    integrand = lambda t: 1 - mpmath.fprod(mpmath.gammainc(m, 0, t, regularized=True) for m in quotas)  # noqa: E731
    reference = len(quotas) * mpmath.quad(integrand, [0, 20, 40, 60, 80, 200, mpmath.inf])
    assert expected_draws(quotas).mean == pytest.approx(float(reference), rel=1e-10)


def test_simulation_reproduces_the_exact_distribution_of_T():
    """Poissonised simulation vs the exact pmf of T (chi-square goodness of fit)."""
    quotas = (2, 3, 1)
    pmf = exact_pmf(quotas, 80)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    pmf[-1] += 1.0 - pmf.sum()  # the last bin holds T >= 80
    trials = 20000
    draws = simulate_draws(quotas, trials, seed=5)
    assert draws.min() >= sum(quotas)
    observed = np.bincount(np.minimum(draws, 80), minlength=81).astype(float)
    # pool the support into bins expecting >= 20 draws each
    expected_bins, observed_bins, acc_e, acc_o = [], [], 0.0, 0.0
    for t in range(81):
        acc_e += trials * pmf[t]
        acc_o += observed[t]
        if acc_e >= 20:
            expected_bins.append(acc_e)
            observed_bins.append(acc_o)
            acc_e = acc_o = 0.0
    expected_bins[-1] += acc_e
    observed_bins[-1] += acc_o
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed_bins, expected_bins))
    assert len(expected_bins) > 10
    assert stats.chi2.sf(statistic, len(expected_bins) - 1) > 1e-4


@pytest.mark.parametrize(
    "quotas", [(1, 1, 1, 1), (30, 5, 12), (1000, 1000), (5000, 4900, 30, 1, 7), tuple(range(1, 51))]
)
def test_monte_carlo_agrees_with_exact(quotas):
    exact = expected_draws(quotas)
    mc = expected_draws(quotas, method="mc", trials=20000, seed=1)
    assert exact.stderr == 0.0 and exact.method == "exact" and mc.method == "mc"
    assert mc.stderr > 0
    assert abs(mc.mean - exact.mean) < 4 * mc.stderr


def test_monte_carlo_is_seeded():
    first = expected_draws((30, 5, 12), method="mc", trials=500, seed=3)
    assert expected_draws((30, 5, 12), method="mc", trials=500, seed=3) == first
    assert expected_draws((30, 5, 12), method="mc", trials=500, seed=4).mean != first.mean


def test_large_quotas_are_stable_and_bounded():
    """50 classes of 10^6: E[max_i G_i] lies in [m, m + sqrt(2 m ln n) + ln n] (Gamma(m) - m is sub-gamma (m, 1)).
    Speed: experiments/bench_index_and_sampling.py."""
    n, m = 50, 10**6
    exact = expected_draws([m] * n)
    mixed = expected_draws([m, 3, 10**5, 999_000] + [1] * (n - 4))
    assert math.isfinite(exact.mean) and math.isfinite(mixed.mean)
    assert n * m < exact.mean < n * (m + math.sqrt(2 * m * math.log(n)) + math.log(n))
    # normal approximation: E[max of 50 standard normals] = 2.2491, so E[T] ~ n (m + 2.2491 sqrt(m))
    assert exact.mean == pytest.approx(n * (m + 2.2491 * math.sqrt(m)), rel=1e-5)
    assert n * m < mixed.mean < exact.mean
    mc = expected_draws([m] * n, method="mc", trials=4000, seed=2)
    assert abs(mc.mean - exact.mean) < 4 * mc.stderr


@pytest.mark.parametrize(
    ("alpha", "with_mask", "paper_batches", "paper_std_epochs"),
    [(0.1, 3774, 15206.14, 8.41), (0.2, 7605, 14128.68, 7.82), (0.4, 15313, 11960.70, 6.62)],
)
def test_table2_follows_from_the_published_totals(alpha, with_mask, paper_batches, paper_std_epochs):
    """Paper Table 2 (MC, 10,000 trials, batch 32) from published totals only.

    The per-type train counts of Real-IAD's fuiad splits are not published here, but E[T] barely depends on them:
    57,840 train images of which ``with_mask`` are defective (realiad-format.md), so the normal class holds the
    rest and every defect class is far smaller, making E[T] ~ 9 x normal. Any split of the defective images over
    8 types must land within 4 Monte Carlo standard errors of the paper's value.
    """
    total, normal = 57_840, 57_840 - with_mask
    rng = np.random.default_rng(int(alpha * 10))
    for _ in range(3):
        defect = 1 + rng.multinomial(with_mask - 8, rng.dirichlet(np.ones(8)))
        counts = [normal, *defect.tolist()]
        assert sum(counts) == total
        row = balanced_epoch(counts, batch_size=32)
        mc_stderr = balanced_epoch(counts, batch_size=32, method="mc", trials=10000, seed=0).batches_stderr
        assert abs(row.batches - paper_batches) < 4 * mc_stderr
        assert round(row.standard_epochs, 2) == paper_std_epochs
        assert row.standard_iterations == 1807.5
        assert row.batches == pytest.approx(row.draws / 32) and row.standard_epochs == pytest.approx(row.draws / total)


@pytest.mark.parametrize(
    ("counts", "message"),
    [([], "empty"), ([3, 0], "positive"), ([4, -1], "positive"), ([2.5, 3], "integers"), ([True, 3], "integers")],
)
def test_bad_counts_are_rejected(counts, message):
    with pytest.raises(ValueError, match=message):
        expected_draws(counts)


def test_bad_method_trials_and_batch_size_are_rejected():
    with pytest.raises(ValueError, match="method must be one of exact, mc"):
        expected_draws([3, 4], method="integral")
    with pytest.raises(ValueError, match="trials"):
        expected_draws([3, 4], method="mc", trials=1)
    with pytest.raises(ValueError, match="batch_size"):
        balanced_epoch([3, 4], batch_size=0)
