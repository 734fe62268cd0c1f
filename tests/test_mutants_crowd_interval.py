"""Tests written against the survivors of `make mutate MODULES=crowd/interval` (docs/testing.md).

Values are checked against definitions: the delta-method formula of the module docstring written out per
sample, the normal quantile of the level, the documented generative model of ``simulate_pairs`` replayed on
the same random stream, and the columns of ``interval_coverage`` recomputed from their descriptions.
"""

from __future__ import annotations

import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from neuronaudit.crowd import interval as iv
from neuronaudit.crowd.interval import (
    RhoInterval,
    interval_coverage,
    rho_gradient,
    rho_interval,
    rho_interval_from_draws,
    rho_of_means,
    simulate_pairs,
)
from neuronaudit.sampling import PairDraws, exact_rho, sampler_label


def _by_hand(a, c, w, cc, estimator="unbiased", level=0.95):
    """(rho_hat, se, lo, hi, degenerate) of one sample, written out from the module docstring."""
    a, c, w, cc = (np.asarray(x, dtype=np.float64) for x in (a, c, w, cc))
    n = len(a)
    t = np.stack([w, w * a * c, w * c, w * cc])  # (4, n)
    m = t.mean(axis=1)
    big = m[1:] / m[0] if estimator == "self_normalised" else m[1:]
    v = big[2] - big[1] ** 2
    if not v > 0:
        return 0.0, np.nan, np.nan, np.nan, True
    rho = big[0] / np.sqrt(v)
    g = np.array([1 / np.sqrt(v), big[0] * big[1] / v**1.5, -big[0] / (2 * v**1.5)])
    if estimator == "self_normalised":
        grad = np.r_[-(g * big).sum() / m[0], g / m[0]]
    else:
        grad = np.r_[0.0, g]
    se = np.sqrt(np.var(grad @ t, ddof=1) / n) if n > 1 else np.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return rho, se, max(-1.0, min(1.0, rho - z * se)), max(-1.0, min(1.0, rho + z * se)), False


# -- _z_value and contains ------------------------------------------------------------------------

@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.2])
def test_level_outside_the_open_unit_interval_is_an_error(level):
    a, c = np.arange(6.0), np.array([0, 1, 0, 1, 1, 0.0])
    with pytest.raises(ValueError) as e:
        rho_interval(a, c, level=level)
    assert str(e.value) == f"level must lie in (0, 1), got {level}"


def test_contains_is_closed_at_both_ends():
    r = RhoInterval(rho_hat=np.array([0.2, 0.2]), se=np.array([0.1, 0.1]), lo=np.array([0.1, 0.1]),
                    hi=np.array([0.3, 0.3]), degenerate=np.array([False, False]))
    np.testing.assert_array_equal(r.contains([0.1, 0.3]), [True, True])
    np.testing.assert_array_equal(r.contains([0.0999, 0.3001]), [False, False])


# -- rho_of_means / rho_gradient --------------------------------------------------------------------

def test_defaults_are_the_unbiased_estimator():
    m = np.array([1.2, 0.3, 0.25, 0.3])
    assert rho_of_means(m) == rho_of_means(m, "unbiased")
    np.testing.assert_array_equal(rho_gradient(m), rho_gradient(m, "unbiased"))
    assert rho_of_means(m) == pytest.approx(0.3 / np.sqrt(0.3 - 0.25**2), rel=1e-15)


@pytest.mark.parametrize("estimator", ["unbiased", "self_normalised"])
def test_means_are_computed_in_float64(estimator):
    m32 = np.array([[1.1, 0.31, 0.27, 0.33], [0.9, -0.2, 0.4, 0.5]], dtype=np.float32)
    m64 = m32.astype(np.float64)
    r, g = rho_of_means(m32, estimator), rho_gradient(m32, estimator)
    assert r.dtype == np.float64 and g.dtype == np.float64
    np.testing.assert_array_equal(r, rho_of_means(m64, estimator))
    np.testing.assert_array_equal(g, rho_gradient(m64, estimator))


def test_zero_variance_is_undefined_not_infinite():
    # v = m3 - m2^2 = 0.25 - 0.5^2 = 0 exactly
    m = np.array([1.0, 0.5, 0.5, 0.25])
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(rho_of_means(m))
        g = rho_gradient(m)
    assert np.isnan(g[1:]).all()


# -- rho_interval ---------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", ["unbiased", "self_normalised"])
def test_degenerate_follows_the_estimators_own_variance(estimator):
    # c = (1, 0) with weights (3, 1): m0 = 2, m2 = m3 = 1.5. Unbiased: v = 1.5 - 2.25 < 0 (degenerate);
    # self-normalised: v = 0.75 - 0.5625 > 0 (defined).
    a, c, w = np.array([1.0, -1.0]), np.array([1.0, 0.0]), np.array([3.0, 1.0])
    res = rho_interval(a, c, w, estimator)
    exp = _by_hand(a, c, w, c * c, estimator)
    assert bool(res.degenerate) == exp[4] == (estimator == "unbiased")
    np.testing.assert_allclose([res.rho_hat, res.se, res.lo, res.hi], exp[:4], rtol=1e-12)


def test_constant_soft_presence_is_degenerate():
    # c = 0.5 everywhere: v = E[c^2] - E[c]^2 = 0.25 - 0.25 = 0
    res = rho_interval(np.array([1.0, -1.0, 0.5, 0.2]), np.full(4, 0.5))
    assert bool(res.degenerate) and res.rho_hat == 0.0 and np.isnan(res.se)


def test_presence_outside_0_1_uses_its_own_square():
    # c = (2, 2, 2, 1.9) (a linear explanation's presence): E[c] = 1.975, E[c^2] = 3.9025 > E[c]^2
    a, c = np.array([1.0, -0.5, 0.3, -1.2]), np.array([2.0, 2.0, 2.0, 1.9])
    res = rho_interval(a, c)
    exp = _by_hand(a, c, np.ones(4), c * c)
    assert not res.degenerate and not exp[4]
    np.testing.assert_allclose([res.rho_hat, res.se], exp[:2], rtol=1e-9)
    c2 = np.array([2.0, 0.0])  # E[c] = 1, E[c^2] = 2: v = 1
    res2 = rho_interval(np.array([1.0, -1.0]), c2)
    assert not res2.degenerate and res2.rho_hat == pytest.approx(1.0 / 1.0)


def test_nan_activation_is_not_counted_as_degenerate():
    res = rho_interval(np.array([np.nan, 1.0, 2.0]), np.array([1.0, 1.0, 1.0]))
    assert not bool(res.degenerate) and np.isnan(res.rho_hat)


def test_two_draws_give_an_se_and_one_draw_quietly_none():
    a, c = np.array([1.0, -1.0]), np.array([1.0, 0.0])
    res = rho_interval(a, c)
    exp = _by_hand(a, c, np.ones(2), c)
    assert np.isfinite(res.se)
    np.testing.assert_allclose([res.rho_hat, res.se], exp[:2], rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = rho_interval(np.array([[1.0], [0.5]]), np.array([[1.0], [0.0]]))
    assert np.isnan(one.se).all()


def test_interval_is_clipped_to_minus_one_one_on_both_sides():
    # unbiased weights of a badly matched guide push rho_hat beyond 1 (and beyond -1 for -a)
    a = np.tile([3.0, 3.0, 3.1, -0.1, -0.1], 20)
    c = np.tile([1.0, 1.0, 1.0, 0.0, 0.0], 20)
    w = np.tile([0.3, 0.3, 0.3, 1.0, 1.0], 20)
    up = rho_interval(a, c, w)
    down = rho_interval(-a, c, w)
    exp = _by_hand(a, c, w, c)
    assert exp[0] - 1.96 * exp[1] > 1.0  # the whole interval lies above 1
    assert up.lo == 1.0 and up.hi == 1.0 and down.lo == -1.0 and down.hi == -1.0
    assert up.rho_hat == pytest.approx(exp[0]) and down.rho_hat == pytest.approx(-exp[0])


def test_level_sets_the_quantile():
    rng = np.random.default_rng(4)
    a, c = rng.standard_normal(200), (rng.random(200) < 0.3).astype(float)
    for level in (0.5, 0.9, 0.99):
        res = rho_interval(a, c, level=level)
        exp = _by_hand(a, c, np.ones(200), c, level=level)
        np.testing.assert_allclose([res.lo, res.hi], exp[2:4], rtol=1e-12)


# -- rho_interval_from_draws ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    a_hat, c, guide = simulate_pairs(n_pairs=3, n_inputs=300, seed=5)
    rng = np.random.default_rng(9)
    draws = PairDraws.draw({"name": "mg_is", "gamma": 0.2}, a_hat, guide, np.array([20, 60]), 4, rng)
    return a_hat, c, draws


def _per_sample(draws, a_hat, c, cc, estimator="unbiased", level=0.95):
    """Every (pair, seed, n) sample by hand: the first n draws of each seed."""
    shape = (draws.n_pairs, draws.n_seeds, -1)  # the engine's rows are (pair, seed) pairs, pair-major
    a_d, c_d, cc_d, w_d = (x.reshape(shape) for x in (draws.gather(a_hat), draws.gather(c), draws.gather(cc),
                                                       draws.weights()))
    out = np.full((5, draws.n_pairs, draws.n_seeds, len(draws.ns)), np.nan)
    for k in range(draws.n_pairs):
        for s in range(draws.n_seeds):
            for b, n in enumerate(draws.ns):
                out[:, k, s, b] = _by_hand(a_d[k, s, :n], c_d[k, s, :n], w_d[k, s, :n], cc_d[k, s, :n],
                                           estimator, level)
    return out


def test_from_draws_shapes_each_field_pair_seed_n_and_uses_cc_and_level(small):
    a_hat, c, draws = small
    soft = np.clip(c * 0.8 + 0.1 * np.sin(np.arange(c.size)).reshape(c.shape), 0, 1)
    cc = soft  # c^2 given as something other than c * c
    res = rho_interval_from_draws(draws, a_hat, soft, cc=cc, level=0.8)
    ref = _per_sample(draws, a_hat, soft, cc, level=0.8)
    assert res.rho_hat.shape == (3, 4, 2)
    for j, name in enumerate(("rho_hat", "se", "lo", "hi")):
        np.testing.assert_allclose(getattr(res, name), ref[j], rtol=1e-9, atol=1e-12, err_msg=name)
    # default estimator is the unbiased one
    dflt = rho_interval_from_draws(draws, a_hat, c)
    np.testing.assert_array_equal(dflt.rho_hat, rho_interval_from_draws(draws, a_hat, c, "unbiased").rho_hat)


def test_from_draws_c_group_column_per_sample_size(small):
    a_hat, c, draws = small
    groups = draws.groups()
    base = np.take(c.ravel(), groups.flat)
    two = np.stack([base, 1.0 - base], axis=1)  # a different presence for the second sample size
    res = rho_interval_from_draws(draws, a_hat, c_group=two)
    first = rho_interval_from_draws(draws, a_hat, c_group=base)
    second = rho_interval_from_draws(draws, a_hat, c_group=1.0 - base)
    np.testing.assert_array_equal(res.rho_hat[..., 0], first.rho_hat[..., 0])
    np.testing.assert_array_equal(res.rho_hat[..., 1], second.rho_hat[..., 1])
    assert not np.allclose(res.rho_hat[..., 1], first.rho_hat[..., 1])


def test_from_draws_needs_exactly_one_presence(small):
    a_hat, c, draws = small
    with pytest.raises(ValueError) as e:
        rho_interval_from_draws(draws, a_hat, c, c_group=c.ravel())
    assert str(e.value) == "give exactly one of c (per input) and c_group (per distinct input)"


# -- simulate_pairs -------------------------------------------------------------------------------

def _replay(n_pairs, n_inputs, seed, prevalence, signal, guide_noise):
    """The docstring's model on the same random stream."""
    rng = np.random.default_rng(seed)
    prev = rng.uniform(prevalence[0], prevalence[1], size=(n_pairs, 1))
    c = (rng.random((n_pairs, n_inputs)) < prev).astype(np.float64)
    s = rng.uniform(signal[0], signal[1], size=(n_pairs, 1))
    a = s * c + rng.standard_normal((n_pairs, n_inputs))
    a_hat = (a - a.mean(axis=1, keepdims=True)) / a.std(axis=1, keepdims=True)
    logit = 2.0 * (2.0 * c - 1.0) + guide_noise * rng.standard_normal(c.shape) + np.log(prev / (1 - prev))
    return a_hat, c, 1.0 / (1.0 + np.exp(-logit))


def test_simulate_pairs_defaults_replay_the_documented_model():
    got = simulate_pairs()
    exp = _replay(8, 5000, 0, (0.1, 0.3), (0.5, 2.0), 1.0)
    assert got[0].shape == (8, 5000) and got[1].dtype == np.float64
    for g, e in zip(got, exp, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    # per pair: standardised activations, a prevalence in range, a guide in (0, 1)
    np.testing.assert_allclose(got[0].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(got[0].std(axis=1), 1, rtol=1e-12)
    assert ((got[2] > 0) & (got[2] < 1)).all()


def test_simulate_pairs_arguments_replay_the_documented_model():
    got = simulate_pairs(n_pairs=3, n_inputs=700, seed=4, prevalence=(0.2, 0.4), signal=(1.0, 3.0), guide_noise=0.5)
    exp = _replay(3, 700, 4, (0.2, 0.4), (1.0, 3.0), 0.5)
    for g, e in zip(got, exp, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


# -- interval_coverage ----------------------------------------------------------------------------

SAMPLERS = ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2})


@pytest.fixture(scope="module")
def cov_data():
    return simulate_pairs(n_pairs=3, n_inputs=400, seed=2)


def _coverage_reference(a_hat, c, guide, samplers, ns, n_seeds, seed, estimator="unbiased", level=0.95):
    """The table's columns from their descriptions in the docstring."""
    rho = exact_rho(a_hat, c, axis=1)
    rows = []
    for i, spec in enumerate(samplers):
        draws = PairDraws.draw(spec, a_hat, guide, np.asarray(ns), n_seeds, np.random.default_rng([seed, i]))
        res = rho_interval_from_draws(draws, a_hat, c, estimator, level=level)
        for b, n in enumerate(ns):
            lo, hi, se, rh = res.lo[:, :, b], res.hi[:, :, b], res.se[:, :, b], res.rho_hat[:, :, b]
            hit = (lo <= rho[:, None]) & (rho[:, None] <= hi)
            d = ~res.degenerate[:, :, b]
            rows.append({"sampler": sampler_label(spec), "n": n, "intervals": hit.size, "degenerate": int((~d).sum()),
                         "coverage": hit.mean(), "coverage_defined": hit[d].mean(), "mean_se": se[d].mean(),
                         "sd_rho_hat": np.mean([rh[k].std(ddof=1) for k in range(len(rh))]),
                         "mean_width": (hi - lo)[d].mean()})
    return pd.DataFrame(rows)


def test_coverage_columns_against_their_definitions(cov_data):
    a_hat, c, guide = cov_data
    table = interval_coverage(a_hat, c, guide, samplers=SAMPLERS, ns=(30, 80), n_seeds=20, seed=3, level=0.8)
    ref = _coverage_reference(a_hat, c, guide, SAMPLERS, (30, 80), 20, 3, level=0.8)
    assert list(table.columns) == ["sampler", "n", "intervals", "degenerate", "coverage", "coverage_defined",
                                   "mean_se", "sd_rho_hat", "mean_width"]
    pd.testing.assert_frame_equal(table, ref, check_dtype=False, rtol=1e-12)
    # the width is 2 z se where nothing is clipped
    z = NormalDist().inv_cdf(0.9)
    np.testing.assert_allclose(table.mean_width, 2 * z * table.mean_se, rtol=0.05)


def test_coverage_defaults(cov_data):
    a_hat, c, guide = cov_data
    table = interval_coverage(a_hat[:2, :200], c[:2, :200], guide[:2, :200], samplers=({"name": "uniform"},),
                              ns=(20,))
    assert (table.intervals == 2 * 200).all()
    again = interval_coverage(a_hat[:2, :200], c[:2, :200], guide[:2, :200], samplers=({"name": "uniform"},),
                              ns=(20,), seed=0, n_seeds=200)
    pd.testing.assert_frame_equal(table, again)


def test_coverage_inputs_of_other_dtypes_give_the_same_table(cov_data):
    a_hat, c, guide = cov_data
    kw = {"samplers": SAMPLERS[:1], "ns": (40,), "n_seeds": 10, "seed": 1}
    ref = interval_coverage(a_hat.astype(np.float32).astype(np.float64), c, guide, **kw)
    got = interval_coverage(a_hat.astype(np.float32), c.astype(bool), guide, **kw)
    pd.testing.assert_frame_equal(got, ref)


def test_all_degenerate_sample_size_is_reported_quietly():
    a_hat, c, guide = simulate_pairs(n_pairs=2, n_inputs=500, seed=1)
    c[:] = 0.0
    c[:, 0] = 1.0  # one positive in 500: samples of 2 draws (almost surely) never see it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = interval_coverage(a_hat, c, guide, samplers=({"name": "uniform"},), ns=(2,), n_seeds=5, seed=0)
    row = table.iloc[0]
    assert row.degenerate == 10 and row.coverage == 0.0
    assert np.isnan(row.coverage_defined) and np.isnan(row.mean_se) and np.isnan(row.mean_width)


def test_soft_presence_runs_without_the_binary_cross_check(cov_data):
    a_hat, c, guide = cov_data
    soft = np.clip(0.8 * c + 0.15, 0, 1)
    table = interval_coverage(a_hat, soft, guide, samplers=SAMPLERS[:1], ns=(50,), n_seeds=10, seed=2)
    ref = _coverage_reference(a_hat, soft, guide, SAMPLERS[:1], (50,), 10, 2)
    pd.testing.assert_frame_equal(table, ref, check_dtype=False, rtol=1e-12)


@pytest.mark.parametrize("scale", [1 + 3e-9, 1 - 3e-9])
def test_binary_presence_is_cross_checked_against_the_engine(cov_data, monkeypatch, scale):
    """For binary c the interval's rho_hat must equal PairDraws.estimate to rtol 1e-9 (+ atol 1e-12):
    an engine result off by a few parts in 1e9 is reported."""
    a_hat, c, guide = cov_data
    real = PairDraws.estimate

    def off(self, *args, **kwargs):
        ref, extra = real(self, *args, **kwargs)
        return ref * scale, extra

    monkeypatch.setattr(iv.PairDraws, "estimate", off)
    with pytest.raises(AssertionError) as e:
        interval_coverage(a_hat, c, guide, samplers=SAMPLERS[:1], ns=(50,), n_seeds=5, seed=0)
    assert str(e.value) == "rho_hat differs from PairDraws.estimate"
    # within the tolerance it passes
    monkeypatch.setattr(iv.PairDraws, "estimate", lambda self, *a, **k: (real(self, *a, **k)[0] * (1 + 5e-10),
                                                                        real(self, *a, **k)[1]))
    interval_coverage(a_hat, c, guide, samplers=SAMPLERS[:1], ns=(50,), n_seeds=5, seed=0)
