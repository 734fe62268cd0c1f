"""Tests that pin down aggregation.py line by line (written against the survivors of ``make mutate``;
docs/testing.md lists what is left). References: the BRAgg posterior of SPEC sec. 4 written out
directly, the per-input model integrated by hand on the 100 bins of Beta(0.75, 2.5), EM against a
direct numerical maximisation of the likelihood (scipy.optimize), Fleiss' kappa on a hand-computed
example, and scipy's t-test."""

import re

import numpy as np
import pytest
from scipy import optimize, stats

from neuronaudit.aggregation import (
    BRAGG_BETA,
    PER_INPUT_ERROR_PRIOR,
    beta_error_bins,
    bragg_posterior,
    bragg_posterior_per_input,
    clip_prior,
    estimate_eta_em,
    fleiss_kappa,
    majority_vote,
    standard_error,
    two_sample_ttest,
)


def _raises(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        fn(*args, **kwargs)


def _posterior(yes, m, eta, pi):
    """SPEC sec. 4 as written: P(R|C) pi / (P(R|C) pi + P(R|~C) (1 - pi))."""
    l1 = (1 - eta) ** yes * eta ** (m - yes)
    l0 = eta**yes * (1 - eta) ** (m - yes)
    return l1 * pi / (l1 * pi + l0 * (1 - pi))


# ------------------------------------------------------------------------------------ counts, majority
def test_majority_vote_arrays_scalars_and_ties():
    np.testing.assert_array_equal(majority_vote([2, 1, 1, 0], 3), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(majority_vote([[2, 1], [0, 4]], [[4, 1], [0, 7]]), [[0.5, 1.0], [0.5, 1.0]])
    assert majority_vote(1, 2) == 0.5 and majority_vote(2, 2) == 1.0 and majority_vote(0, 1) == 0.0


def test_counts_errors_name_the_input():
    _raises(ValueError, "need 0 <= yes <= total; input 2 has yes=4, total=3", majority_vote, [0, 3, 4], 3)
    _raises(ValueError, "need 0 <= yes <= total; input 1 has yes=-1, total=2", majority_vote, [1, -1], [2, 2])
    # yes == total and yes == 0 are allowed
    np.testing.assert_array_equal(majority_vote([0, 3], [0, 3]), [0.5, 1.0])


# ------------------------------------------------------------------------------------------ priors, eta
def test_clip_prior_default_and_custom_eps():
    np.testing.assert_array_equal(clip_prior([0.0, 0.5, 1.0]), [1e-3, 0.5, 1 - 1e-3])
    np.testing.assert_array_equal(clip_prior([0.0, 0.05, 1.0], eps=0.1), [0.1, 0.1, 0.9])
    assert clip_prior(1).dtype == np.float64


def test_eta_must_lie_strictly_inside_zero_one():
    for eta in (0.0, 1.0, -0.1, 1.5):
        _raises(ValueError, f"eta must lie strictly in (0, 1); got {float(eta)}", bragg_posterior, 1, 2, eta)
    assert 0 < bragg_posterior(1, 2, 1e-9) < 1 and 0 < bragg_posterior(1, 2, 1 - 1e-9) < 1


# --------------------------------------------------------------------------------------------- BRAgg
def test_bragg_posterior_closed_form_default_prior_and_eps():
    assert BRAGG_BETA == 0.05
    yes = np.array([0, 1, 2, 3, 1, 5])
    m = np.array([3, 3, 3, 3, 1, 5])
    for eta in (0.1, 0.23, 0.4):
        np.testing.assert_allclose(bragg_posterior(yes, m, eta), _posterior(yes, m, eta, 0.05), rtol=1e-12)
    # 2-yes-of-3 with eta = 0.2 and beta = 0.05 by hand: 0.8^2 0.2 * 0.05 / (... + 0.2^2 0.8 * 0.95) = 4/23
    assert bragg_posterior(2, 3, 0.2) == pytest.approx(0.128 * 0.05 / (0.128 * 0.05 + 0.032 * 0.95), rel=1e-12)
    assert bragg_posterior(2, 3, 0.2) == pytest.approx(4 / 23, rel=1e-12)
    # model prior per input; 0 and 1 are clipped to eps so that the ratings can move them
    prior = np.array([0.0, 1.0, 0.3])
    got = bragg_posterior([3, 0, 1], [3, 3, 2], 0.2, prior)
    np.testing.assert_allclose(got, _posterior(np.array([3, 0, 1]), np.array([3, 3, 2]), 0.2, np.array([1e-3, 1 - 1e-3, 0.3])),
                               rtol=1e-12)
    got = bragg_posterior([3, 0], [3, 3], 0.2, [0.0, 1.0], eps=0.01)
    np.testing.assert_allclose(got, _posterior(np.array([3, 0]), 3, 0.2, np.array([0.01, 0.99])), rtol=1e-12)
    # no ratings: the posterior is the prior
    assert bragg_posterior(0, 0, 0.3, prior=0.2) == pytest.approx(0.2, rel=1e-12)


# ------------------------------------------------------------------------------- per-input error model
def test_beta_error_bins_midpoints_and_exact_mass():
    assert PER_INPUT_ERROR_PRIOR == (0.75, 2.5)
    eta, w = beta_error_bins()
    np.testing.assert_allclose(eta, (np.arange(100) + 0.5) / 100, rtol=0, atol=1e-15)
    cdf = stats.beta(0.75, 2.5).cdf
    np.testing.assert_allclose(w, [cdf((i + 1) / 100) - cdf(i / 100) for i in range(100)], rtol=1e-12)
    eta4, w4 = beta_error_bins(4, 2.0, 3.0)
    np.testing.assert_allclose(eta4, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(w4, np.diff(stats.beta(2.0, 3.0).cdf([0, 0.25, 0.5, 0.75, 1.0])))


def _per_input_by_hand(yes, m, pi, a=0.75, b=2.5, n_bins=100):
    """The 100-bin integral written out: sum over bins of the Beta mass times the likelihood at the midpoint."""
    cdf = stats.beta(a, b).cdf
    i1 = i0 = 0.0
    for k in range(n_bins):
        e = (k + 0.5) / n_bins
        w = cdf((k + 1) / n_bins) - cdf(k / n_bins)
        i1 += w * (1 - e) ** yes * e ** (m - yes)
        i0 += w * e**yes * (1 - e) ** (m - yes)
    return pi * i1 / (pi * i1 + (1 - pi) * i0)


def test_per_input_posterior_equals_the_100_bin_sum():
    yes = np.array([[0, 2, 3], [1, 2, 0]])
    m = np.array([[3, 3, 3], [1, 3, 0]])
    got = bragg_posterior_per_input(yes, m)  # defaults: beta = 0.05, Beta(0.75, 2.5), 100 bins
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert got[i, j] == pytest.approx(_per_input_by_hand(yes[i, j], m[i, j], 0.05), rel=1e-10)
    # other a, b, n_bins; a per-input prior with 0 and 1 clipped to eps
    got = bragg_posterior_per_input([2, 1], [3, 3], prior=[0.0, 1.0], a=2.0, b=5.0, n_bins=10, eps=0.01)
    np.testing.assert_allclose(got, [_per_input_by_hand(2, 3, 0.01, 2.0, 5.0, 10), _per_input_by_hand(1, 3, 0.99, 2.0, 5.0, 10)],
                               rtol=1e-10)
    got = bragg_posterior_per_input([3], [3], prior=[1.0])
    assert got[0] == pytest.approx(_per_input_by_hand(3, 3, 1 - 1e-3), rel=1e-10)
    # the per-input model is less sure than the uniform model at the Beta mean error
    assert bragg_posterior_per_input(3, 3) < bragg_posterior(3, 3, 0.75 / 3.25)


# ------------------------------------------------------------------------------------------------- EM
def _neg_ll(eta, pi, yes, m):
    return -np.sum(np.log(pi * (1 - eta) ** yes * eta ** (m - yes) + (1 - pi) * eta**yes * (1 - eta) ** (m - yes)))


def _ratings(seed=3, n=400, m=4, eta=0.2, prevalence=0.35):
    rng = np.random.default_rng(seed)
    c = rng.random(n) < prevalence
    r = (rng.random((n, m)) < eta) ^ c[:, None]
    return r.sum(axis=1), np.full(n, m)


def test_em_reaches_the_maximum_likelihood_free_prevalence():
    yes, m = _ratings()
    res = estimate_eta_em(yes, m)
    direct = optimize.minimize(lambda p: _neg_ll(p[0], p[1], yes, m), x0=[0.3, 0.5],
                               bounds=[(1e-4, 0.5), (1e-3, 1 - 1e-3)], method="L-BFGS-B", options={"ftol": 1e-14})
    assert res.converged and 1 < res.n_iter < 500
    assert res.eta == pytest.approx(direct.x[0], abs=1e-4)
    assert res.prevalence == pytest.approx(direct.x[1], abs=1e-4)
    assert res.log_likelihood == pytest.approx(-direct.fun, abs=1e-6)


def test_em_with_fixed_prior_maximises_over_eta_only():
    yes, m = _ratings(seed=4, m=3)
    for prior in (0.05, 0.35):
        res = estimate_eta_em(yes, m, prior=prior)
        direct = optimize.minimize_scalar(lambda e, prior=prior: _neg_ll(e, prior, yes, m), bounds=(1e-4, 0.5),
                                          method="bounded", options={"xatol": 1e-10})
        assert res.prevalence is None and res.converged
        assert res.eta == pytest.approx(direct.x, abs=1e-5)
        assert res.log_likelihood == pytest.approx(-direct.fun, abs=1e-6)
    # a per-input model prior, with 0 and 1 clipped to eps
    rng = np.random.default_rng(9)
    prior = np.clip(rng.random(len(yes)), 0, 1)
    prior[:5] = 0.0
    pc = np.clip(prior, 0.01, 0.99)
    res = estimate_eta_em(yes, m, prior=prior, eps=0.01)
    direct = optimize.minimize_scalar(lambda e: _neg_ll(e, pc, yes, m), bounds=(1e-4, 0.5), method="bounded",
                                      options={"xatol": 1e-10})
    assert res.eta == pytest.approx(direct.x, abs=1e-5)


def test_em_one_step_is_the_m_step_formula():
    yes, m = np.array([3, 0, 2, 1, 3]), np.array([3, 3, 3, 2, 4])
    res = estimate_eta_em(yes, m, max_iter=1)
    assert res.n_iter == 1 and not res.converged
    # one E-step at the defaults eta0 = 0.2, prevalence0 = 0.3, then eta = sum(c (m - a) + (1 - c) a) / sum m
    c = _posterior(yes, m, 0.2, 0.3)
    assert res.eta == pytest.approx(np.sum(c * (m - yes) + (1 - c) * yes) / m.sum(), rel=1e-12)
    assert res.prevalence == pytest.approx(c.mean(), rel=1e-12)
    assert res.log_likelihood == pytest.approx(-_neg_ll(0.2, 0.3, yes, m), rel=1e-12)
    res = estimate_eta_em(yes, m, eta0=0.1, prevalence0=0.6, max_iter=1)
    c = _posterior(yes, m, 0.1, 0.6)
    assert res.eta == pytest.approx(np.sum(c * (m - yes) + (1 - c) * yes) / m.sum(), rel=1e-12)
    # the given prior is held fixed: with prior=0.6 and eta0=0.1 the first step is the same
    assert estimate_eta_em(yes, m, prior=0.6, eta0=0.1, max_iter=1).eta == pytest.approx(res.eta, rel=1e-12)


def test_em_clips_eta_and_prevalence():
    # perfect agreement, every input "yes": eta -> 0 (clipped at 1e-6), prevalence -> 1 (clipped at 1 - eps)
    res = estimate_eta_em([3, 3, 3], [3, 3, 3])
    assert res.eta == 1e-6 and res.prevalence == 1 - 1e-3 and res.converged
    res = estimate_eta_em([3, 3, 3], [3, 3, 3], eps=0.05)
    assert res.prevalence == 0.95
    # raters who disagree on everything: eta stays below 1/2 (better than chance)
    res = estimate_eta_em([1, 1, 1, 1], [2, 2, 2, 2], max_iter=50)
    assert res.eta == pytest.approx(0.5 - 1e-6, abs=1e-12)


def test_em_stopping_rule_and_inputs_with_one_rating():
    yes, m = _ratings(seed=5)
    loose = estimate_eta_em(yes, m, tol=1e-3)
    tight = estimate_eta_em(yes, m)
    assert loose.converged and loose.n_iter < tight.n_iter
    # stops when the log-likelihood changes by less than tol * max(1, |ll|)
    prev = estimate_eta_em(yes, m, tol=1e-3, max_iter=loose.n_iter - 1)
    assert not prev.converged and abs(loose.log_likelihood - prev.log_likelihood) < 1e-3 * abs(loose.log_likelihood)
    # inputs with a single rating take part once some input has two or more
    res = estimate_eta_em([1, 0, 2], [1, 1, 2])
    assert res.converged and 0 < res.eta < 0.5
    _raises(ValueError, "EM for eta needs inputs with at least 2 ratings; give eta explicitly", estimate_eta_em,
            [1, 0], [1, 1])


# ------------------------------------------------------------------------------------------ agreement
def test_fleiss_kappa_hand_computed():
    # 4 items x 3 raters, yes counts 3, 0, 2, 1: P_i = 1, 1, 1/3, 1/3 -> P_bar = 2/3; p_yes = 6/12 -> P_e = 1/2;
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3
    ratings = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 1, 0]])
    assert fleiss_kappa(ratings) == pytest.approx(1 / 3, rel=1e-12)
    assert fleiss_kappa([3, 0, 2, 1], [3, 3, 3, 3]) == pytest.approx(1 / 3, rel=1e-12)
    # skewed marginals: yes counts 2, 2, 2, 0 of 2 -> P_bar = 1, p_yes = 3/4, P_e = 10/16 -> kappa = 1
    assert fleiss_kappa([2, 2, 2, 0], 2) == pytest.approx(1.0)
    # 2 items, yes 1 of 2 each: P_bar = 0, P_e = 1/2 -> kappa = -1
    assert fleiss_kappa([1, 1], [2, 2]) == pytest.approx(-1.0)


def test_fleiss_kappa_missing_ratings_and_degenerate_cases():
    # -1 and NaN are missing; rows with fewer than 2 ratings are skipped
    ratings = np.array([[1, 1, 1], [0, 0, -1], [1, 1, 0], [0, 1, np.nan], [1, -1, -1]])
    # kept: yes/m = 3/3, 0/2, 2/3, 1/2: P_i = 1, 1, 1/3, 0 -> P_bar = 7/12; p_yes = 6/10 -> P_e = 0.52
    assert fleiss_kappa(ratings) == pytest.approx((7 / 12 - 0.52) / 0.48, rel=1e-12)
    # everybody always says yes: P_e = 1 -> undefined (returned as NaN, not computed as 0/0)
    with np.errstate(all="raise"):
        assert np.isnan(fleiss_kappa(np.ones((5, 3))))
        assert np.isnan(fleiss_kappa([0, 0], [2, 3]))
    _raises(ValueError, "Fleiss' kappa needs inputs with at least 2 ratings", fleiss_kappa, [1, 0], [1, 1])


def test_standard_error_and_ttest_against_scipy():
    x = np.array([[1.0, 4.0], [2.0, 6.0], [4.0, np.nan]])
    np.testing.assert_allclose(standard_error(x, axis=0), [stats.sem([1.0, 2.0, 4.0]), stats.sem([4.0, 6.0])])
    assert standard_error([2.0, 4.0]) == pytest.approx(1.0)  # std(ddof=1) = sqrt(2), / sqrt(2)
    a = np.array([5.1, 6.3, 7.0, 8.2, np.nan])
    b = np.array([1.0, 2.5, 3.1, 4.4, 9.0, 0.3])
    fin = a[np.isfinite(a)]
    for alt in ("greater", "less", "two-sided"):
        for ev in (True, False):
            ref = stats.ttest_ind(fin, b, equal_var=ev, alternative=alt)
            t, p = two_sample_ttest(a, b, alternative=alt, equal_var=ev)
            assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    ref = stats.ttest_ind(fin, b, equal_var=True, alternative="greater")
    assert two_sample_ttest(a, b) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    t, p = two_sample_ttest(b, a)
    assert isinstance(t, float) and isinstance(p, float)


# ------------------------------------------------------------------------------------- EM, batched
def _em_reference(yes, m, w, prior=None, eta0=0.2, prev0=0.3, max_iter=500, tol=1e-9, eps=1e-3):
    """The docstring's EM as a plain loop over one weighted problem: returns (eta, pi, n_iter, converged, ll)."""
    yes, m, w = (np.asarray(x, dtype=float) for x in np.broadcast_arrays(yes, m, w))
    fixed = prior is not None
    pi = np.clip(np.broadcast_to(np.asarray(prior, dtype=float), yes.shape), eps, 1 - eps) if fixed else prev0
    eta, prev_ll, ll = eta0, -np.inf, np.nan
    for it in range(1, max_iter + 1):
        p1 = pi * (1 - eta) ** yes * eta ** (m - yes)
        p0 = (1 - pi) * eta**yes * (1 - eta) ** (m - yes)
        ll = float(np.sum(w * np.log(p1 + p0)))
        c = p1 / (p1 + p0)
        eta = min(max(np.sum(w * (c * (m - yes) + (1 - c) * yes)) / np.sum(w * m), 1e-6), 0.5 - 1e-6)
        if not fixed:
            pi = min(max(np.sum(w * c) / np.sum(w), eps), 1 - eps)
        if abs(ll - prev_ll) < tol * max(1.0, abs(ll)):
            return eta, (None if fixed else pi), it, True, ll
        prev_ll = ll
    return eta, (None if fixed else pi), max_iter, False, ll


def test_em_matches_the_plain_loop_step_for_step():
    # a small problem with |ll| < 2, where the stopping rule's max(1, |ll|) matters
    # ([2, 0], [2, 2], tol 1e-4): |ll| = 1.39, stops at step 6 (with max(2, |ll|) it would stop at 5)
    for yes, m, tol in (([2, 0], [2, 2], 1e-4), ([3, 0, 2, 1, 3], [3, 3, 3, 2, 4], 1e-9), ([1, 1, 2], [2, 2, 2], 1e-2)):
        ref = _em_reference(yes, m, 1.0, tol=tol)
        res = estimate_eta_em(yes, m, tol=tol)
        assert (res.n_iter, res.converged) == (ref[2], ref[3])
        assert (res.eta, res.prevalence, res.log_likelihood) == pytest.approx(ref[0:2] + ref[4:], rel=1e-9, abs=1e-12)
    # tol = 0: "changes by less than 0" never holds, EM runs to max_iter even once ll stops changing
    res = estimate_eta_em([3, 3, 0], [3, 3, 3], tol=0.0, max_iter=300)
    assert res.n_iter == 300 and not res.converged and res.eta == 1e-6


def test_em_histogram_weights_equal_the_expanded_inputs():
    # 40 inputs rated by 3: histogram of yes-counts 0..3
    hist = np.array([20.0, 5.0, 4.0, 11.0])
    yes = np.repeat(np.arange(4), hist.astype(int))
    one = estimate_eta_em(yes, 3)
    res = estimate_eta_em(np.arange(4), 3, weight=hist)
    assert res.eta.shape == () and res.n_iter.dtype == np.int64 and res.converged.dtype == bool
    assert float(res.eta) == pytest.approx(one.eta, rel=1e-10) and float(res.prevalence) == pytest.approx(
        one.prevalence, rel=1e-10)
    assert int(res.n_iter) == one.n_iter and bool(res.converged) and float(res.log_likelihood) == pytest.approx(
        one.log_likelihood, rel=1e-10)
    # a scalar case with a weight is one problem of one case
    r = estimate_eta_em(2, 3, weight=5.0, max_iter=3)
    assert r.eta.shape == () and r.n_iter.shape == () and r.converged.shape == () and r.log_likelihood.shape == ()
    ref = _em_reference(2, 3, 5.0, max_iter=3)
    assert float(r.eta) == pytest.approx(ref[0], rel=1e-12) and int(r.n_iter) == ref[2]
    assert float(r.log_likelihood) == pytest.approx(ref[4], rel=1e-12)


def test_em_batch_problems_stop_on_their_own_and_broadcast():
    hists = np.array([[[20, 5, 4, 11], [0, 0, 0, 0], [3, 9, 9, 3]], [[1, 0, 0, 1], [50, 1, 1, 2], [0, 2, 0, 7]]], float)
    res = estimate_eta_em(np.arange(4), 3, weight=hists)
    assert res.eta.shape == (2, 3) and res.converged.shape == (2, 3) and res.log_likelihood.shape == (2, 3)
    assert res.n_iter.shape == (2, 3) and res.prevalence.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            if j == 1 and i == 0:  # all weights 0: no problem to solve
                assert np.isnan(res.eta[i, j]) and np.isnan(res.prevalence[i, j]) and res.n_iter[i, j] == 0
                assert not res.converged[i, j]
                continue
            ref = _em_reference(np.arange(4), 3, hists[i, j])
            assert (res.n_iter[i, j], res.converged[i, j]) == (ref[2], ref[3])
            assert res.eta[i, j] == pytest.approx(ref[0], rel=1e-9, abs=1e-12)
            assert res.prevalence[i, j] == pytest.approx(ref[1], rel=1e-9, abs=1e-12)
            assert res.log_likelihood[i, j] == pytest.approx(ref[4], rel=1e-9)
    # leading axes may come from yes, total or the prior; the prior is clipped with eps and held fixed
    w = np.array([6.0, 1.0, 2.0, 5.0])
    res = estimate_eta_em(np.arange(4), 3, prior=np.array([[0.0], [0.5]]), eps=0.01, weight=w)
    assert res.eta.shape == (2,) and res.prevalence is None
    for k, pr in enumerate((0.01, 0.5)):
        assert res.eta[k] == pytest.approx(_em_reference(np.arange(4), 3, w, prior=pr)[0], rel=1e-9)
    yes2 = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    res = estimate_eta_em(yes2, 3, weight=w)
    assert res.eta.shape == (2,)
    assert res.eta[1] == pytest.approx(_em_reference(yes2[1], 3, w)[0], rel=1e-9)
    res = estimate_eta_em(np.tile(np.arange(4), (2, 1)), np.array([[3], [4]]), weight=w)
    assert res.eta.shape == (2,)
    assert res.eta[1] == pytest.approx(_em_reference(np.arange(4), 4, w)[0], rel=1e-9)
    # the free prevalence is clipped into [eps, 1 - eps] in a batch too
    res = estimate_eta_em(np.arange(4), 3, weight=np.array([[9.0, 0, 0, 0], [0, 0, 0, 9.0]]), eps=0.02)
    np.testing.assert_allclose(res.prevalence, [0.02, 0.98])
    _raises(ValueError, "EM for eta needs inputs with at least 2 ratings; give eta explicitly", estimate_eta_em,
            np.array([0, 1]), 1, weight=np.array([[1.0, 1.0], [0.0, 0.0]]))


def test_float32_inputs_are_computed_in_float64():
    f = np.float32
    p32 = np.array([0.3, 0.01, 0.9], dtype=f)
    assert clip_prior(p32).dtype == np.float64
    got = bragg_posterior([2, 1, 0], 3, f(0.2), prior=p32)
    ref = _posterior(np.array([2, 1, 0]), 3, float(f(0.2)), p32.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-13)
    x = np.array([0.1, 0.7, 0.3, 0.45], dtype=f)
    assert standard_error(x) == pytest.approx(stats.sem(x.astype(np.float64)), rel=1e-13)
    y = np.array([0.5, 0.9, 0.8], dtype=f)
    ref = stats.ttest_ind(y.astype(np.float64), x.astype(np.float64), alternative="greater")
    assert two_sample_ttest(y, x) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-13)
