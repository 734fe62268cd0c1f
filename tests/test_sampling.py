import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronaudit.sampling import (
    ag_is_q,
    check_q,
    draw_samples,
    estimate_moments,
    estimate_rho,
    exact_rho,
    importance_weights,
    mg_is_q,
    relative_corr_error,
    sampling_grid,
    sampling_grid_loop,
    standardise_activations,
    summarise_rce,
)


def _toy(n=400, k=3, seed=0):
    rng = np.random.default_rng(seed)
    c = (rng.random((n, k)) < 0.1).astype(float)
    a = rng.standard_normal((n, k)) + 1.5 * c
    g = np.clip(0.7 * c + 0.3 * rng.random((n, k)), 0.01, 1)
    return a, c, g


def test_unbiased_moments_monte_carlo_within_standard_error():
    a, c, g = _toy(n=300, k=1)
    ah, c, g = standardise_activations(a)[:, 0], c[:, 0], g[:, 0]
    q = mg_is_q(ah, g, gamma=0.2)
    rng = np.random.default_rng(5)
    reps, n = 4000, 20
    idx = rng.choice(len(q), size=(reps, n), p=q)
    w = importance_weights(q[idx], len(q))
    m_ac, m_c, _ = estimate_moments(ah[idx], c[idx], w, "unbiased")
    for est, exact in ((m_ac, np.mean(ah * c)), (m_c, np.mean(c))):
        se = est.std(ddof=1) / np.sqrt(reps)
        assert abs(est.mean() - exact) < 3 * se  # within its standard error (3 SE: a 0.3% false-alarm rate)


def test_q_equal_p_gives_plain_estimator():
    a, c, _ = _toy(n=100, k=1)
    ah, c = standardise_activations(a)[:, 0], c[:, 0]
    idx = np.random.default_rng(0).integers(0, 100, 30)
    w = importance_weights(np.full(30, 1 / 100), 100)
    plain = np.mean(ah[idx] * c[idx]) / np.sqrt(np.mean(c[idx] ** 2) - np.mean(c[idx]) ** 2)
    for est in ("unbiased", "self_normalised"):
        assert np.isclose(estimate_rho(ah[idx], c[idx], w, est), plain)


def test_n_equals_N_without_replacement_is_exact():
    a, c, _ = _toy(n=250, k=1)
    ah, c = standardise_activations(a)[:, 0], c[:, 0]
    idx = draw_samples(np.full(250, 1 / 250), 250, np.random.default_rng(1), replace=False)
    assert np.isclose(estimate_rho(ah[idx], c[idx]), np.corrcoef(a[:, 0], c)[0, 1])
    assert np.isclose(exact_rho(ah, c), np.corrcoef(a[:, 0], c)[0, 1])
    with pytest.raises(ValueError, match="uniform"):
        draw_samples(np.r_[0.5, 0.25, 0.25], 3, np.random.default_rng(0), replace=False)


def test_soft_c_uses_soft_square():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(500)
    c = rng.random(500)
    assert np.isclose(exact_rho(standardise_activations(a), c), np.corrcoef(a, c)[0, 1])


def test_zero_q_where_p_positive_raises():
    ah = np.array([1.0, -1.0, 0.5, 0.2])
    q = mg_is_q(ah, np.array([0.5, 0.0, 0.3, 0.1]), gamma=0.0)
    with pytest.raises(ValueError, match="input 1"):
        check_q(q)
    a, c, g = _toy(n=200, k=2)
    g[:, 1] = 0.0
    g[:3, 1] = 1.0
    with pytest.raises(ValueError, match="pair 1"):
        sampling_grid(a, c, g, samplers=[{"name": "mg_is", "gamma": 0.0}], ns=[10], seeds=range(2))
    assert np.all(ag_is_q(standardise_activations(a), 2, 0.2) > 0)


def test_rce():
    assert np.allclose(relative_corr_error([0.15, 0.1], [0.1, -0.1]), [0.5, 2.0])
    assert np.isnan(relative_corr_error(0.1, 0.0))


def test_grid_converges_and_agrees_with_loop_reference():
    a, c, g = _toy(n=2000, k=4, seed=3)
    samplers = [{"name": "uniform"}, {"name": "mg_is"}, {"name": "ag_is"}]
    ns = [50, 400]
    grid = sampling_grid(a, c, g, samplers=samplers, ns=ns, seeds=range(40), rng=1, chunk_size=2)
    ref = sampling_grid_loop(a, c, g, samplers=samplers, ns=ns, seeds=range(40), rng=2)
    assert list(grid.columns) == ["pair", "sampler", "n", "seed", "rho", "rho_hat", "rce", "n_distinct", "no_variation",
                                  "se", "lo", "hi"]
    np.testing.assert_allclose(grid.groupby("pair")["rho"].first(), ref.groupby("pair")["rho"].first())
    g_rce = grid.groupby(["sampler", "n"], observed=True)["rce"].mean()
    r_rce = ref.groupby(["sampler", "n"])["rce"].mean()
    for key, val in g_rce.items():
        assert val == pytest.approx(r_rce[key], rel=0.35, abs=0.01)
    big = grid[grid.n == 400].groupby(["sampler", "pair"], observed=True)[["rho_hat", "rho"]].mean()
    assert np.allclose(big["rho_hat"], big["rho"], atol=0.05)
    assert (grid["n_distinct"] <= grid["n"]).all()
    # MG-IS beats uniform here (concept model is accurate)
    assert g_rce[("mg_is", 400)] < g_rce[("uniform", 400)]
    sn = sampling_grid(a, c, g, samplers=samplers[:2], ns=ns, seeds=range(5), estimator="self_normalised")
    assert np.isfinite(sn["rho_hat"]).all()


def test_grid_threads_do_not_change_results_and_constant_neurons_are_nan():
    a, c, g = _toy(n=500, k=5)
    a[:, 2] = 1.0
    kw = dict(samplers=[{"name": "uniform"}, {"name": "mg_is"}], ns=[20, 60], seeds=range(3), rng=7, chunk_size=2)
    one = sampling_grid(a, c, g, n_threads=1, **kw)
    two = sampling_grid(a, c, g, n_threads=2, **kw)
    assert one.equals(two)
    assert one.loc[one.pair == 2, ["rho", "rho_hat", "rce"]].isna().all().all()
    s = summarise_rce(one, floor=0.05)
    assert (s["n_excluded"] >= 1).all()


def test_grid_with_pair_indices_and_soft_truth():
    a, c, g = _toy(n=600, k=3)
    df = sampling_grid(a, g, g, neuron_index=[0, 2, 2], concept_index=[1, 2, 0], samplers=[{"name": "mg_is"}], ns=[30], seeds=range(2))
    expected = exact_rho(standardise_activations(a[:, [0, 2, 2]]), g[:, [1, 2, 0]])
    np.testing.assert_allclose(df.groupby("pair")["rho"].first(), expected)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_guided_inverse_cdf_matches_searchsorted_unsorted_uniforms(n, seed):
    from neuronaudit.sampling import PairDraws

    rng = np.random.default_rng(seed)
    q = rng.random((3, n)) ** 3
    q[:, rng.random(n) < 0.3] = 0.0  # zero-probability runs
    q[:, -1] += 1e-3
    nq = q * n / q.sum(axis=1, keepdims=True)  # N q, as the engine holds it
    u = rng.random(3 * 50)
    u[:3] = [0.0, 1 - 2**-53, 0.5]
    rows = np.repeat(np.arange(3), 50)
    d = PairDraws(np.empty((3, 50), dtype=np.intp), nq, n, [50], 1)  # one seed: a row per pair
    d._run(0, u, None, None, False)  # the engine's draws (q = 0 is refused earlier, by PairDraws.draw)
    got = d.flat.ravel() - rows * n
    t = u * np.nextafter(float(n), 0.0)  # the scaled uniforms the search compares with
    z = np.cumsum(nq, axis=1)
    z[:, -1] = np.inf
    want = np.array([np.searchsorted(z[r], t[i], side="right") for i, r in enumerate(rows)])
    np.testing.assert_array_equal(got, want)
    assert np.all(q[rows, got] > 0)  # never lands on a zero-probability input


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_distinct_prefix_counts_match_unique(n_values, seed):
    from neuronaudit.sampling import _distinct_prefix_counts

    rng = np.random.default_rng(seed)
    ns = np.array([1, 3, 10, 40])
    idx = rng.integers(0, n_values, size=(5, 40)) + 1000 * np.arange(5)[:, None]
    got = _distinct_prefix_counts(idx, ns)
    want = np.array([[len(np.unique(row[:m])) for m in ns] for row in idx])
    np.testing.assert_array_equal(got, want)


def test_grid_draw_frequencies_follow_q():
    """Pooled over seeds, the inputs drawn by the grid follow q (chi-square-like check via n_distinct
    and via the unbiased estimate of E_p[c] being within Monte Carlo error for every sampler)."""
    a, c, g = _toy(n=300, k=2, seed=4)
    grid = sampling_grid(a, c, g, ns=[5, 300], seeds=range(300), rng=3, chunk_size=1)
    # E[rho_hat] over 300 seeds at n = 300 is close to rho for every sampler and pair
    m = grid[grid.n == 300].groupby(["sampler", "pair"], observed=True)[["rho_hat", "rho"]].mean()
    assert np.allclose(m["rho_hat"], m["rho"], atol=0.03)
    # expected number of distinct inputs among 5 uniform draws from 300: 300 (1 - (299/300)^5)
    nd = grid[(grid.sampler == "uniform") & (grid.n == 5)]["n_distinct"]
    # within 4 standard errors of the mean over the 600 samples (a wrong draw, e.g. one input short,
    # moves it by ~0.03, ~4 SE)
    assert nd.mean() == pytest.approx(300 * (1 - (299 / 300) ** 5), abs=4 * nd.std(ddof=1) / np.sqrt(len(nd)))


def test_grid_results_do_not_depend_on_the_column_groups_or_threads(monkeypatch):
    import neuronaudit.sampling as sampling

    a, c, g = _toy(n=500, k=7, seed=6)
    kw = dict(ns=[10, 40], seeds=range(4), rng=11, chunk_size=3)
    big = sampling_grid(a, c, g, **kw)  # all chunks' columns copied as one group
    monkeypatch.setattr(sampling, "_GROUP_COLUMNS", 1)  # one chunk per group
    assert big.equals(sampling_grid(a, c, g, **kw))
    assert big.equals(sampling_grid(a, c, g, n_threads=1, **kw))
    monkeypatch.setattr(sampling, "_GROUP_COLUMNS", 128)
    monkeypatch.setattr(sampling, "_GROUP_BYTES", 1)  # a budget below one chunk: still one chunk per group
    assert big.equals(sampling_grid(a, c, g, n_threads=3, **kw))
    # groups of two chunks, the second group starting at pair 6: each chunk still gets its own 3 pairs
    a, c, g = _toy(n=300, k=12, seed=7)
    monkeypatch.setattr(sampling, "_GROUP_BYTES", 2**30)
    big = sampling_grid(a, c, g, **kw)
    monkeypatch.setattr(sampling, "_GROUP_COLUMNS", 6)
    assert big.equals(sampling_grid(a, c, g, **kw))


def test_grid_checks_gamma_before_it_starts():
    a, c, g = _toy(n=100, k=2)
    for gamma in (1.5, -0.1):
        with pytest.raises(ValueError, match="^gamma must lie in"):  # before any pair: no pair in the message
            sampling_grid(a, c, g, samplers=["uniform", {"name": "ag_is", "gamma": gamma}], ns=[5], seeds=range(2))


def test_no_variation_in_the_sample_gives_rho_hat_zero_and_is_counted():
    """A sample with no variation in c (e.g. no positive drawn) has an undefined estimate: rho_hat = 0
    (RCE = 1, a failure rather than a dropped sample), flagged ``no_variation`` and counted per group."""
    ah = np.array([1.0, -0.5, 2.0])
    for c in (np.zeros(3), np.ones(3), np.full(3, 0.4)):
        for est in ("unbiased", "self_normalised"):
            assert estimate_rho(ah, c, np.array([1.0, 2.0, 0.5]), est) == 0.0
    assert np.isnan(estimate_rho(np.array([np.nan, 1.0]), np.array([0.0, 1.0])))
    # the grid: a rare concept (2 positives in 400) is mostly missed by 5 uniform draws
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 2))
    c = np.zeros((400, 2))
    c[:2, 0] = 1.0
    c[:, 1] = rng.random(400) < 0.5
    a[:2, 0] += 3
    df = sampling_grid(a, c, np.clip(c + 0.1, 0, 1), samplers=[{"name": "uniform"}], ns=[5, 400], seeds=range(20), rng=1)
    nv = df["no_variation"].to_numpy()
    assert (df.loc[nv, "rho_hat"] == 0).all() and (df.loc[nv, "rce"] == 1).all()
    missed = df[(df.pair == 0) & (df.n == 5)]
    assert missed["no_variation"].sum() >= 15  # P(no positive in 5 of 400 with 2 positives) = 0.975
    assert not df.loc[(df.pair == 1) & (df.n == 400), "no_variation"].any()  # 5 draws: P = 2 / 2^5 each
    s = summarise_rce(df, floor=0.0)
    row = s[(s.n == 5)].iloc[0]
    at5 = df.loc[df.n == 5, "no_variation"].sum()  # both pairs' samples at n = 5 (20 seeds each)
    assert at5 >= missed["no_variation"].sum() and row["n_no_variation"] == at5
    assert row["share_no_variation"] == pytest.approx(at5 / 40)
    assert list(s.columns[-2:]) == ["n_no_variation", "share_no_variation"]
    # without the column (older tables) the summary has no such columns
    assert "n_no_variation" not in summarise_rce(df.drop(columns="no_variation"), floor=0.0)
