"""estimate_eta_em on histograms and batches (``weight=``), the form Setting 2 runs: every problem of
a batch gets exactly what it gets alone from its raw counts (same EM, same clipping, same stopping)."""

import numpy as np
import pytest

from neuronaudit.aggregation import estimate_eta_em


def _counts(seed, n, m, eta=0.2, prev=0.35):
    rng = np.random.default_rng(seed)
    c = rng.random(n) < prev
    return (c[:, None] ^ (rng.random((n, m)) < eta)).sum(axis=1)


def _same(batch, i, alone, prior_given=False):
    assert batch.eta[i] == pytest.approx(alone.eta, rel=1e-10, abs=1e-15)
    assert batch.n_iter[i] == alone.n_iter and bool(batch.converged[i]) == alone.converged
    assert batch.log_likelihood[i] == pytest.approx(alone.log_likelihood, rel=1e-10)
    if not prior_given:
        assert batch.prevalence[i] == pytest.approx(alone.prevalence, rel=1e-10)


@pytest.mark.parametrize("kw", [{}, {"eta0": 0.1, "prevalence0": 0.6}, {"tol": 1e-4}, {"max_iter": 3},
                                {"eps": 0.2}])
def test_histogram_batch_equals_each_problem_alone(kw):
    m = 4
    ys = [_counts(s, n, m, eta=e) for s, n, e in ((0, 300, 0.2), (1, 40, 0.05), (2, 120, 0.35))]
    hist = np.stack([np.bincount(y, minlength=m + 1) for y in ys])
    batch = estimate_eta_em(np.arange(m + 1), m, weight=hist, **kw)
    assert batch.eta.shape == batch.prevalence.shape == batch.n_iter.shape == batch.converged.shape == (3,)
    for i, y in enumerate(ys):
        _same(batch, i, estimate_eta_em(y, np.full(len(y), m), **kw))
    # problems finish on their own: their iteration counts differ
    if not kw:
        assert len(set(batch.n_iter.tolist())) > 1 and batch.converged.all()


def test_batch_with_two_leading_axes_and_a_fixed_prior():
    m = 3
    ys = [[_counts(10 * a + b, 60 + 20 * b, m) for b in range(2)] for a in range(2)]
    hist = np.array([[np.bincount(y, minlength=m + 1) for y in row] for row in ys])
    for prior in (0.05, 0.4):
        batch = estimate_eta_em(np.arange(m + 1), m, prior=prior, weight=hist)
        assert batch.prevalence is None and batch.eta.shape == (2, 2)
        for a in range(2):
            for b in range(2):
                alone = estimate_eta_em(ys[a][b], np.full(len(ys[a][b]), m), prior=prior)
                assert batch.eta[a, b] == pytest.approx(alone.eta, rel=1e-10)
                assert batch.n_iter[a, b] == alone.n_iter
    # per-case priors broadcast along the cases: weight 1 per input is the raw-count problem
    y = ys[0][0]
    pri = np.linspace(0.01, 0.9, len(y))
    one = estimate_eta_em(y, m, prior=pri, weight=np.ones(len(y)))
    assert one.eta.shape == () and float(one.eta) == pytest.approx(estimate_eta_em(y, np.full(len(y), m), prior=pri).eta,
                                                                   rel=1e-10)


def test_weights_count_cases_and_empty_problems_are_nan():
    # two inputs with 3 of 3 and one with 0 of 3 == weights (2, 1)
    w = estimate_eta_em([3, 0], [3, 3], weight=[2.0, 1.0])
    alone = estimate_eta_em([3, 3, 0], [3, 3, 3])
    assert float(w.eta) == pytest.approx(alone.eta) and float(w.prevalence) == pytest.approx(alone.prevalence)
    assert int(w.n_iter) == alone.n_iter
    b = estimate_eta_em(np.arange(3), 2, weight=[[0, 0, 0], [5, 1, 4]])
    assert np.isnan(b.eta[0]) and np.isnan(b.prevalence[0]) and b.n_iter[0] == 0 and not b.converged[0]
    assert np.isnan(b.log_likelihood[0])
    assert np.isfinite(b.eta[1]) and b.converged[1] and 0 < b.eta[1] < 0.5
    # a problem with ratings but none with 2 or more cannot identify eta
    with pytest.raises(ValueError, match="at least 2 ratings"):
        estimate_eta_em([0, 1], [1, 1], weight=[[3, 2]])
    with pytest.raises(ValueError, match="at least 2 ratings"):
        estimate_eta_em(np.array([[0, 1], [0, 2]]), np.array([[1, 1], [2, 2]]), weight=np.array([[1, 1], [1, 1]]))
    # a case of weight 0 with 2 ratings does not make a 1-rating problem identifiable
    with pytest.raises(ValueError, match="at least 2 ratings"):
        estimate_eta_em([0, 1, 2], [1, 1, 2], weight=[[1, 1, 0]])
    # all-empty batch: nothing to estimate, all NaN
    e = estimate_eta_em(np.arange(3), 2, weight=np.zeros((2, 3)))
    assert np.isnan(e.eta).all() and (e.n_iter == 0).all()


def test_batch_clips_like_the_single_problem():
    hist = np.array([[0, 0, 0, 7], [0, 3, 3, 0]])  # perfect "yes" agreement; constant disagreement
    b = estimate_eta_em(np.arange(4), 3, weight=hist, max_iter=60)
    assert b.eta[0] == 1e-6 and b.prevalence[0] == 1 - 1e-3
    a = estimate_eta_em([1, 1, 1, 2, 2, 2], [3] * 6, max_iter=60)
    assert b.eta[1] == pytest.approx(a.eta) and b.prevalence[1] == pytest.approx(a.prevalence)
