"""Delta-method standard error and confidence interval of the IS estimate of rho (issue 9, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from neuronaudit.crowd.interval import (
    interval_coverage,
    rho_gradient,
    rho_interval,
    rho_interval_from_draws,
    rho_of_means,
    simulate_pairs,
)
from neuronaudit.sampling import PairDraws, estimate_rho, moment_table, sampler_q

ESTIMATORS = ("unbiased", "self_normalised")
SAMPLERS = ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2}, {"name": "ag_is", "alpha": 2, "gamma": 0.2})


@pytest.fixture(scope="module")
def sim():
    return simulate_pairs(n_pairs=10, n_inputs=4000, seed=3)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("spec", SAMPLERS[:2], ids=["uniform", "mg_is"])
def test_se_matches_empirical_sd_at_400(sim, spec, estimator):
    a_hat, c, guide = sim
    draws = PairDraws.draw(spec, a_hat, guide, np.array([400]), 600, np.random.default_rng(11))
    res = rho_interval_from_draws(draws, a_hat, c, estimator)
    assert not res.degenerate.any()
    sd = res.rho_hat[:, :, 0].std(axis=1, ddof=1)  # per pair, over seeds
    mean_se = res.se[:, :, 0].mean(axis=1)
    ratio = mean_se / sd
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
    assert abs(np.median(ratio) - 1) < 0.06, ratio


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_coverage_at_n_100_and_more(sim, estimator):
    a_hat, c, guide = sim
    table = interval_coverage(a_hat, c, guide, samplers=SAMPLERS, ns=(25, 50, 100, 180, 400), n_seeds=300,
                              seed=5, estimator=estimator)
    assert len(table) == 15
    big = table[(table.n >= 100) & table.sampler.isin(["uniform", "mg_is"])]
    assert big.coverage.between(0.90, 0.99).all(), big
    assert (big.degenerate == 0).all()
    # AG-IS and small n may undercover (reported, not required) but stay sane
    assert table.coverage.between(0.80, 1.0).all(), table
    assert (table.intervals == 10 * 300).all()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_gradient_matches_finite_differences(estimator):
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = np.array([rng.uniform(0.7, 1.3), rng.normal(0, 0.3), rng.uniform(0.1, 0.3), 0.0])
        m[3] = m[2] * rng.uniform(1.0, 1.5) * (m[0] if estimator == "self_normalised" else 1.0) + 0.05
        m[2] *= m[0] if estimator == "self_normalised" else 1.0
        assert np.isfinite(rho_of_means(m, estimator))
        grad = rho_gradient(m, estimator)
        fd = np.empty(4)
        h = 1e-6
        for k in range(4):
            e = np.zeros(4)
            e[k] = h
            fd[k] = (rho_of_means(m + e, estimator) - rho_of_means(m - e, estimator)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    if estimator == "unbiased":
        assert grad[0] == 0.0


def test_degenerate_samples():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 30))
    c = np.zeros((4, 30))
    c[2, ::3] = 1.0  # only row 2 has variation
    c[3] = 1.0  # all positive, w = 1: no variation
    res = rho_interval(a, c)
    np.testing.assert_array_equal(res.degenerate, [True, True, False, True])
    np.testing.assert_array_equal(res.rho_hat[[0, 1, 3]], 0.0)
    assert np.isnan(res.se[[0, 1, 3]]).all() and np.isnan(res.lo[[0, 1, 3]]).all()
    assert np.isnan(res.hi[[0, 1, 3]]).all()
    assert np.isfinite(res.se[2]) and res.lo[2] <= res.rho_hat[2] <= res.hi[2]
    assert not res.contains(np.zeros(4))[[0, 1, 3]].any()
    np.testing.assert_allclose(res.rho_hat, estimate_rho(a, c))
    # a single draw: rho_hat may be undefined; the SE always is
    one = rho_interval(a[:, :1], c[:, :1])
    assert np.isnan(one.se).all()
    # counted in the coverage table: rare concept, tiny n
    a_hat, c_sim, guide = simulate_pairs(n_pairs=3, n_inputs=2000, seed=0, prevalence=(0.01, 0.02))
    table = interval_coverage(a_hat, c_sim, guide, samplers=({"name": "uniform"},), ns=(5, 400), n_seeds=50)
    assert table.degenerate.iloc[0] > 0
    assert table.coverage.iloc[0] <= table.coverage_defined.iloc[0]


def _loop_reference(a_hat, c, q, idx, ns, estimator):
    """Plain loop over (pair, seed, n): explicit covariance matrix of the per-draw terms and gradient."""
    kb, n_seeds, _ = idx.shape
    n_in = a_hat.shape[1]
    out = np.full((2, kb, n_seeds, len(ns)), np.nan)
    for k in range(kb):
        for s in range(n_seeds):
            for b, n in enumerate(ns):
                i = idx[k, s, :n]
                w = 1.0 / (n_in * q[k, i])
                t = np.stack([w, w * a_hat[k, i] * c[k, i], w * c[k, i], w * c[k, i] ** 2])
                m = t.mean(axis=1)
                rho = float(estimate_rho(a_hat[k, i], c[k, i], w, estimator))
                g = rho_gradient(m, estimator)
                out[0, k, s, b] = rho
                out[1, k, s, b] = np.sqrt(g @ np.cov(t) @ g / n)
    return out


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_vectorised_equals_loop(estimator):
    rng = np.random.default_rng(7)
    a_hat, c, guide = simulate_pairs(n_pairs=5, n_inputs=60, seed=2)  # small N: many duplicates
    c[1, 0:6] = np.array([0.2, 0.7, 0.0, 1.0, 0.5, 0.9])  # soft values too
    q = sampler_q({"name": "mg_is", "gamma": 0.2}, a_hat, guide, axis=1)
    ns = np.array([10, 40, 100])
    idx = np.stack([rng.choice(60, size=(4, 100), p=q[k]) for k in range(5)])
    draws = PairDraws.from_indices(idx, q, ns)
    res = rho_interval_from_draws(draws, a_hat, c, estimator, cc=c * c)
    ref = _loop_reference(a_hat, c, q, idx, ns, estimator)
    np.testing.assert_allclose(res.rho_hat, ref[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.se, ref[1], rtol=1e-8, atol=1e-12)
    half = np.minimum(res.hi - res.rho_hat, res.rho_hat - res.lo)
    np.testing.assert_allclose(half, np.minimum(1.959963984540054 * res.se, half), rtol=1e-12)
    assert (res.lo >= -1).all() and (res.hi <= 1).all()
    # the engine's own estimate, and the per-distinct-input path (ratings) give the same numbers
    acc = moment_table(a_hat, c)
    rh, _ = draws.estimate(acc, c * c, estimator)
    np.testing.assert_allclose(res.rho_hat, rh, rtol=1e-10, atol=1e-12)
    groups = draws.groups()
    c_group = np.take(c.ravel(), groups.flat)
    res_g = rho_interval_from_draws(draws, a_hat, c_group=c_group, estimator=estimator)
    np.testing.assert_allclose(res_g.se, res.se, rtol=1e-10)
    np.testing.assert_allclose(res_g.rho_hat, res.rho_hat, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="exactly one"):
        rho_interval_from_draws(draws, a_hat, estimator=estimator)
    with pytest.raises(ValueError, match="estimator"):
        rho_interval(a_hat, c, estimator="nope")
