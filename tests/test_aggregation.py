import itertools

import numpy as np
import pytest
from scipy import integrate, stats

from neuronaudit.aggregation import (
    beta_error_bins,
    bragg_posterior,
    bragg_posterior_per_input,
    estimate_eta_em,
    fleiss_kappa,
    majority_vote,
    standard_error,
    two_sample_ttest,
)
from neuronaudit.raters import rating_counts, uniform_error_ratings


def test_majority_ties():
    np.testing.assert_array_equal(majority_vote([0, 1, 2, 3, 0], [3, 2, 3, 3, 0]), [0, 0.5, 1, 1, 0.5])


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_bragg_equals_brute_force_enumeration(m):
    eta, pi = 0.23, 0.07
    for pattern in itertools.product([0, 1], repeat=m):
        r = np.array(pattern)
        # joint P(C, R) by enumerating C and the raters' independent correctness
        p1 = pi * np.prod(np.where(r == 1, 1 - eta, eta))
        p0 = (1 - pi) * np.prod(np.where(r == 1, eta, 1 - eta))
        assert np.isclose(bragg_posterior(r.sum(), m, eta, prior=pi), p1 / (p1 + p0))
    # model prior per input, varying m_i
    yes, tot, prior = np.array([0, 2, 1]), np.array([1, 3, 2]), np.array([0.9, 0.01, 0.5])
    l1 = (1 - eta) ** yes * eta ** (tot - yes)
    l0 = eta**yes * (1 - eta) ** (tot - yes)
    np.testing.assert_allclose(bragg_posterior(yes, tot, eta, prior), l1 * prior / (l1 * prior + l0 * (1 - prior)))


def test_per_input_model_equals_quadrature():
    a, b = 0.75, 2.5
    pdf = stats.beta(a, b).pdf
    for yes, m, pi in [(0, 3, 0.05), (2, 3, 0.05), (3, 3, 0.3), (4, 7, 0.6), (1, 1, 0.05)]:
        i1 = integrate.quad(lambda e, yes=yes, m=m: (1 - e) ** yes * e ** (m - yes) * pdf(e), 0, 1, limit=200)[0]
        i0 = integrate.quad(lambda e, yes=yes, m=m: e**yes * (1 - e) ** (m - yes) * pdf(e), 0, 1, limit=200)[0]
        exact = pi * i1 / (pi * i1 + (1 - pi) * i0)
        assert bragg_posterior_per_input(yes, m, prior=pi, n_bins=100) == pytest.approx(exact, abs=5e-3)
        assert bragg_posterior_per_input(yes, m, prior=pi, n_bins=20000) == pytest.approx(exact, abs=1e-5)
    eta, w = beta_error_bins()
    assert len(eta) == 100 and np.isclose(w.sum(), 1.0)


def _fleiss_loop(ratings):
    """Textbook Fleiss (1971) for a complete (items x raters) 0/1 table, written as plain loops."""
    n_items, m = ratings.shape
    p_items, totals = [], [0, 0]
    for row in ratings:
        counts = [sum(1 for x in row if x == cat) for cat in (0, 1)]
        totals[0] += counts[0]
        totals[1] += counts[1]
        p_items.append((sum(k * k for k in counts) - m) / (m * (m - 1)))
    p_bar = sum(p_items) / n_items
    p_e = sum((t / (n_items * m)) ** 2 for t in totals)
    return (p_bar - p_e) / (1 - p_e)


def test_fleiss_kappa_matches_loop_and_limits():
    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        r = rng.integers(0, 2, size=(60, m))
        assert fleiss_kappa(r) == pytest.approx(_fleiss_loop(r))
        yes, tot = rating_counts(r)
        assert fleiss_kappa(yes, tot) == pytest.approx(_fleiss_loop(r))
    c = rng.integers(0, 2, 300)
    assert fleiss_kappa(np.repeat(c[:, None], 4, axis=1)) == pytest.approx(1.0)
    assert abs(fleiss_kappa(rng.integers(0, 2, size=(5000, 3)))) < 0.03


def test_em_recovers_planted_eta():
    rng = np.random.default_rng(1)
    c = (rng.random(4000) < 0.3).astype(int)
    for eta in (0.1, 0.25):
        r = uniform_error_ratings(c, 5, eta, rng)
        yes, tot = rating_counts(r)
        res = estimate_eta_em(yes, tot)
        assert res.converged and res.eta == pytest.approx(eta, abs=0.01)
        assert res.prevalence == pytest.approx(0.3, abs=0.03)
        assert estimate_eta_em(yes, tot, prior=0.3).eta == pytest.approx(eta, abs=0.01)
    with pytest.raises(ValueError, match="at least 2"):
        estimate_eta_em([1, 0], [1, 1])


def test_sem_and_ttest():
    x = np.array([1.0, 2.0, 3.0, np.nan])
    assert standard_error(x) == pytest.approx(1.0 / np.sqrt(3))
    t, p = two_sample_ttest([5, 6, 7, 8], [1, 2, 3, 4])
    assert t > 0 and p < 0.01
