"""Tests written to kill mutants of neuronaudit/sampling.py that the behavioural tests let through
(``make mutate``; survivors that are equivalent are listed in docs/testing.md). Each pins an exact
output: dtypes, error messages, defaults, edge cases, float64 arithmetic on float32 / int inputs."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import neuronaudit.sampling as sampling
from neuronaudit.sampling import (
    PairDraws,
    _pair_columns,
    ag_is_q,
    check_q,
    draw_samples,
    estimate_moments,
    estimate_rho,
    exact_rho,
    importance_weights,
    mg_is_q,
    moment_table,
    relative_corr_error,
    sampler_label,
    sampler_q,
    sampling_grid,
    sampling_grid_loop,
    standardise_activations,
    summarise_rce,
)


def _toy(n=200, k=3, seed=0):
    rng = np.random.default_rng(seed)
    c = (rng.random((n, k)) < 0.2).astype(float)
    a = rng.standard_normal((n, k)) + 1.5 * c
    g = np.clip(0.6 * c + 0.4 * rng.random((n, k)), 0.01, 1.0)
    return a, c, g


def _msg(text):
    return "^" + re.escape(text) + "$"


# ---- q, weights, draws, estimators on non-float64 inputs: float64 arithmetic ---------------------
def test_float32_and_int_inputs_are_computed_in_float64():
    rng = np.random.default_rng(1)
    a32 = rng.standard_normal((50, 2)).astype(np.float32)
    c32 = (rng.random((50, 2)) * 0.9 + 0.05).astype(np.float32)
    a64, c64 = a32.astype(np.float64), c32.astype(np.float64)
    for got, want in [
        (mg_is_q(a32, c32), mg_is_q(a64, c64)),
        (mg_is_q(a64, c32), mg_is_q(a64, c64)),
        (mg_is_q(a32, c64), mg_is_q(a64, c64)),
        (ag_is_q(a32, alpha=3.0), ag_is_q(a64, alpha=3.0)),
        (importance_weights(c32[:, 0], 7), 1.0 / (7 * c64[:, 0])),
        (exact_rho(a32, c64), exact_rho(a64, c64)),
        (exact_rho(a64, c32), exact_rho(a64, c64)),
        (relative_corr_error(c32[:, 0], c64[:, 1]), relative_corr_error(c64[:, 0], c64[:, 1])),
        (relative_corr_error(c64[:, 0], c32[:, 1]), relative_corr_error(c64[:, 0], c64[:, 1])),
    ]:
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)
    for est in ("unbiased", "self_normalised"):
        for args in [(a32[:, 0], c64[:, 0], c64[:, 1]), (a64[:, 0], c32[:, 0], c64[:, 1]),
                     (a64[:, 0], c64[:, 0], c32[:, 1])]:
            got = estimate_moments(*args, estimator=est)
            want = estimate_moments(a64[:, 0], c64[:, 0], c64[:, 1], estimator=est)
            for g_, w_ in zip(got, want, strict=True):
                assert g_.dtype == np.float64 and g_ == w_
    assert mg_is_q(np.arange(1, 5), np.ones(4), gamma=0.0).dtype == np.float64
    np.testing.assert_allclose(mg_is_q(np.arange(1, 5), np.ones(4), gamma=0.0), np.arange(1, 5) / 10, rtol=1e-15)


def test_q_defaults_gamma_one_and_broadcasting():
    a = np.array([1.0, -2.0, 0.5, 0.0])
    np.testing.assert_allclose(ag_is_q(a), 0.8 * a**2 / np.sum(a**2) + 0.05, rtol=1e-14)  # alpha = 2, gamma = 0.2
    np.testing.assert_allclose(mg_is_q(a, np.full(4, 0.5)), 0.8 * np.abs(a) / 3.5 + 0.05, rtol=1e-14)
    # gamma = 1: q = p even where the model or activation weights are all zero
    np.testing.assert_array_equal(mg_is_q(np.zeros(4), np.zeros(4), gamma=1.0), np.full(4, 0.25))
    np.testing.assert_array_equal(ag_is_q(np.zeros((4, 2)), gamma=1.0), np.full((4, 2), 0.25))
    q = mg_is_q(np.ones((4, 1)), np.ones((4, 3)), gamma=1.0)
    assert q.shape == (4, 3)
    q = mg_is_q(np.ones((4, 3)), np.ones((4, 1)), gamma=1.0)
    assert q.shape == (4, 3)
    with pytest.raises(ValueError, match=_msg("c_hat must be non-negative (a presence probability)")):
        mg_is_q(a, np.array([0.1, -0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=_msg("MG-IS: the unnormalised sampling weights sum to zero (or NaN) "
                                              "for column 0")):
        mg_is_q(a, np.zeros(4))
    # a 1-pair block along rows, and its column-0 message
    with pytest.raises(ValueError, match="for column 0$"):
        ag_is_q(np.zeros((1, 3)), axis=1)


def test_sampler_specs_labels_and_errors():
    a = np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(sampler_q("uniform", a), np.full(3, 1 / 3))
    np.testing.assert_array_equal(sampler_q("ag_is", a), ag_is_q(a, 2.0, 0.2))
    assert sampler_label("uniform") == "uniform" and sampler_label("mg_is") == "mg_is"
    assert sampler_label({"name": "mg_is", "gamma": 0.1}) == "mg_is(gamma=0.1)"
    assert sampler_label({"name": "ag_is", "alpha": 3, "gamma": 0.5}) == "ag_is(alpha=3,gamma=0.5)"
    assert sampler_label({"name": "ag_is", "alpha": 1}) == "ag_is(alpha=1)"
    assert sampler_label({"name": "ag_is", "alpha": 2.0, "gamma": 0.2}) == "ag_is"
    assert sampler_label({"name": "mg_is", "gamma": 0.1, "label": 7}) == "7"
    with pytest.raises(ValueError, match=_msg("unknown sampler 'is'; expected one of ['ag_is', 'mg_is', 'uniform']")):
        sampler_label("is")
    with pytest.raises(ValueError, match=_msg("sampler 'uniform' has unknown parameters ['gamma']")):
        sampler_label({"name": "uniform", "gamma": 0.2})
    with pytest.raises(ValueError, match=_msg("MG-IS needs c_guide (the concept model's presence estimates)")):
        sampler_q("mg_is", a)


def test_check_q_messages():
    check_q(np.array([0.5, 0.0, 0.5]), p=np.array([0.5, 0.0, 0.5]))  # q = 0 only where p = 0: fine
    tail = "where p > 0 ({} such inputs): importance sampling needs q > 0 wherever p > 0; use gamma > 0"
    with pytest.raises(ValueError, match=_msg("q is zero at input 1 " + tail.format(1))):
        check_q(np.array([0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match=_msg("q is zero at input 2 " + tail.format(1))):
        check_q(np.array([0.5, 0.0, 0.0]), p=np.array([0.5, 0.0, 0.5]))
    q = np.ones((3, 4))
    q[2, 1] = 0.0
    q[1, 3] = np.nan
    with pytest.raises(ValueError, match=_msg("q is zero at input 1 for pair 3 " + tail.format(2))):
        check_q(q)
    with pytest.raises(ValueError, match=_msg("q is zero at input 1 for pair d " + tail.format(2))):
        check_q(q, names=list("abcd"))
    with pytest.raises(ValueError, match=_msg("q is zero at input 2 for pair 1 " + tail.format(2))):
        check_q(q.T, axis=1)
    p = np.ones((3, 4))
    p[2, 1] = 0.0
    with pytest.raises(ValueError, match=_msg("q is zero at input 1 for pair 3 " + tail.format(1))):
        check_q(q, p=p)
    with pytest.raises(ValueError, match=_msg("q is zero at input 1 for pair 3 " + tail.format(1))):
        check_q(q, p=np.where(p > 0, 0.5, 0.0))  # p > 0, not p > 1


def test_draw_samples_is_rng_choice():
    q = np.array([0.1, 0.2, 0.3, 0.4]) * 2  # unnormalised
    got = draw_samples(q, 50, np.random.default_rng(3))
    want = np.random.default_rng(3).choice(4, size=50, replace=True, p=q / q.sum())
    np.testing.assert_array_equal(got, want)
    q32 = (q / q.sum()).astype(np.float32)
    np.testing.assert_array_equal(draw_samples(q32, 50, np.random.default_rng(3)), want)
    got = draw_samples(np.full(6, 1 / 6), 6, np.random.default_rng(2), replace=False)
    assert sorted(got) == list(range(6))
    np.testing.assert_array_equal(got, np.random.default_rng(2).choice(6, size=6, replace=False))
    with pytest.raises(ValueError, match=_msg("drawing without replacement is only supported for uniform q "
                                              "(weights p/q = 1)")):
        draw_samples(np.array([0.25, 0.25, 0.5]), 2, np.random.default_rng(0), replace=False)
    with pytest.raises(ValueError, match="q is zero at input 0"):
        draw_samples(np.array([0.0, 1.0]), 2, np.random.default_rng(0))


def test_estimators_axes_defaults_and_errors():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 7))
    c = rng.random((3, 7))
    w = rng.random((3, 7)) + 0.5
    m = estimate_moments(a, c, w)  # default: unbiased along the last axis
    np.testing.assert_allclose(m[0], (w * a * c).sum(axis=1) / 7, rtol=1e-14)
    sn = estimate_moments(a, c, w, "self_normalised")
    for got, h in zip(sn, (a * c, c, c * c), strict=True):
        np.testing.assert_allclose(got, (w * h).sum(axis=1) / w.sum(axis=1), rtol=1e-14)
    sn0 = estimate_moments(a.T, c.T, w.T, "self_normalised", axis=0)
    for got, want in zip(sn0, sn, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(estimate_rho(a.T, c.T, w.T, "self_normalised", axis=0),
                               estimate_rho(a, c, w, "self_normalised"), rtol=1e-14)
    np.testing.assert_allclose(estimate_rho(a, c), estimate_rho(a, c, np.ones_like(c), "unbiased"), rtol=1e-14)
    with pytest.raises(ValueError, match=_msg("estimator must be one of ('unbiased', 'self_normalised'), got 'x'")):
        estimate_moments(a, c, estimator="x")
    assert standardise_activations(a, axis=1).shape == (3, 7)
    np.testing.assert_allclose(standardise_activations(a, axis=1).mean(axis=1), 0, atol=1e-12)


def test_no_floating_point_warnings_on_undefined_cases():
    """Undefined cases give NaN or 0 quietly (a constant neuron or concept, rho = 0, no variation)."""
    a, c, g = _toy(n=120, k=3)
    a[:, 1] = 3.0
    c[:, 2] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(exact_rho(standardise_activations(a[:, 2]), c[:, 2]))
        assert np.isnan(relative_corr_error(0.0, 0.0)) and np.isnan(relative_corr_error(0.3, 0.0))
        assert estimate_rho(np.array([1.0, 2.0]), np.zeros(2)) == 0.0
        df = sampling_grid(a, c, g, samplers=["uniform", "ag_is"], ns=[5, 20], seeds=range(2))
    assert df.loc[df.pair > 0, "rho"].isna().all() and df.loc[df.pair == 0, "rho"].notna().all()


def test_rce_values():
    np.testing.assert_allclose(relative_corr_error([0.3, 0.1, np.nan], [0.2, 0.0, 0.5]), [0.5, np.nan, np.nan],
                               rtol=1e-15)
    assert relative_corr_error(-0.1, -0.2) == pytest.approx(0.5, rel=1e-15)


# ---- the engine ------------------------------------------------------------------------------------
def test_engine_draws_search_the_scaled_cdf():
    # N q rows summing to N = 4: z = [0.5, 2, 2, inf] and [1, 2, 3, inf]; a draw is the first i with
    # z_i > 4' u (4' the largest double below 4); input 2 of row 0 (q = 0) is never drawn
    nq = np.array([[0.5, 1.5, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    u = np.array([0.0, 0.124, 0.126, 0.6, 0.9999, 0.0, 0.249, 0.251, 0.6, 0.74, 0.76, 1 - 2**-53])
    want = np.array([0, 0, 1, 3, 3, 0, 0, 1, 2, 2, 3, 3]) + np.repeat([0, 4], 6)
    d = PairDraws(np.empty((2, 6), dtype=np.intp), nq, 4, [6], 1)
    d._run(0, u, None, None, False)
    np.testing.assert_array_equal(d.flat.ravel(), want)
    # the weights the sums use are 1 / (N q) at the draws (inf where q = 0: never drawn)
    sums, _, nd = d.moment_sums(moment_table(np.ones((2, 4)), np.ones((2, 4))), None)
    np.testing.assert_allclose(sums[:, 0, 0], [np.sum(1 / nq[0, want[:6]]), np.sum(1 / nq[1, want[6:] - 4])], rtol=1e-15)
    assert nd[:, 0].tolist() == [3, 4]


def test_pair_columns_long_and_non_contiguous():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 7)).astype(np.float32)
    for cols in ([2], [1, 2, 3], [0, 4, 5], [6, 5]):
        got = _pair_columns(x, np.asarray(cols))
        assert got.dtype == np.float64 and got.shape == (len(cols), 3000)
        np.testing.assert_array_equal(got, x[:, cols].T)
    np.testing.assert_array_equal(_pair_columns(x, [3.0, 4.0], block=100), x[:, [3, 4]].T)
    # dtype None keeps float32 / float64 (the grid converts a block at a time), makes anything else float64
    kept = _pair_columns(x, np.array([1, 2]), dtype=None)
    assert kept.dtype == np.float32 and kept.shape == (2, 3000)
    np.testing.assert_array_equal(kept, x[:, [1, 2]].T)
    assert _pair_columns(x.astype(np.float64), np.array([1]), dtype=None).dtype == np.float64
    ints = _pair_columns((x > 0).astype(np.int8), np.array([0, 3]), dtype=None)
    assert ints.dtype == np.float64 and np.array_equal(ints, (x[:, [0, 3]].T > 0))


def test_engine_pairs_weights_errors():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 5, size=(2, 3, 6))
    d = PairDraws.from_indices(idx, None, [2, 6], n_inputs=5)
    np.testing.assert_array_equal(d.pairs, [0, 1])
    assert d.n_pairs == 2 and d.n_inputs == 5 and d.nq is None
    np.testing.assert_array_equal(d.weights(), np.ones((6, 6)))
    np.testing.assert_array_equal(d.idx, idx)
    gr = d.groups()
    with pytest.raises(ValueError, match=_msg("estimator must be one of ('unbiased', 'self_normalised'), got 'sn'")):
        d.estimate_grouped(np.ones((2, 5)), np.ones(len(gr)), gr, "sn")
    with pytest.raises(ValueError, match=_msg("estimator must be one of ('unbiased', 'self_normalised'), got 'sn'")):
        d.estimate(moment_table(np.ones((2, 5)), np.ones((2, 5))), None, "sn")
    d2 = PairDraws.from_indices(idx[:, :, :4], np.full((2, 5), 0.2), [4], pairs=[7, 9])
    np.testing.assert_array_equal(d2.pairs, [7, 9])
    assert d2.flat.shape == (6, 4) and d2.idx.shape == (2, 3, 4)
    np.testing.assert_allclose(d2.weights(), np.ones((6, 4)), rtol=1e-15)
    # q = 0 where p > 0: the message names the pair (block position, or the given label)
    a = np.ones((2, 4))
    g = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]])
    spec = {"name": "mg_is", "gamma": 0.0}
    with pytest.raises(ValueError, match="q is zero at input 1 for pair 1 "):
        PairDraws.draw(spec, a, g, np.array([3]), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="q is zero at input 1 for pair 12 "):
        PairDraws.draw(spec, a, g, np.array([3]), 2, np.random.default_rng(0), pairs=np.array([11, 12]))
    ok = PairDraws.draw(spec, a, np.ones((2, 4)), [3], 2, np.random.default_rng(0))
    assert ok.flat.shape == (4, 3) and (ok.flat // 4 == np.repeat([0, 1], 2)[:, None]).all()


def test_engine_counts_dtypes():
    a, c, g = _toy(n=150, k=3)
    df = sampling_grid(a, c, g, ns=[5, 30], seeds=range(3), rng=2)
    assert df["n_distinct"].dtype == np.int32 and df["no_variation"].dtype == bool
    assert df["n"].dtype == np.int64 and df["seed"].dtype == np.int64 and df["rho_hat"].dtype == np.float64
    assert list(df["sampler"].cat.categories) == ["uniform", "mg_is", "ag_is"]


# ---- sampling_grid: validation, defaults, chunks ------------------------------------------------------
def test_grid_validation_messages():
    a, c, g = _toy(n=60, k=3)
    with pytest.raises(ValueError, match=_msg("estimator must be one of ('unbiased', 'self_normalised'), got 'sn'")):
        sampling_grid(a, c, g, estimator="sn")
    for bad_a, bad_c in ((a[:, 0], c), (a, c[:, 0]), (a[:50], c)):
        with pytest.raises(ValueError, match=_msg(f"acts and c_true must be (N, K) and (N, M) with equal N; got "
                                                  f"{bad_a.shape}, {bad_c.shape}")):
            sampling_grid(bad_a, bad_c, None, samplers=["uniform"])
    with pytest.raises(ValueError, match=_msg("c_guide shape (60, 2) differs from c_true shape (60, 3)")):
        sampling_grid(a, c, g[:, :2])
    with pytest.raises(ValueError, match=_msg("acts and c_true have different column counts: give "
                                              "neuron_index/concept_index")):
        sampling_grid(a[:, :2], c, g)
    with pytest.raises(ValueError, match=_msg("neuron_index and concept_index must have the same length")):
        sampling_grid(a, c, g, neuron_index=[0, 1], concept_index=[0])
    with pytest.raises(ValueError, match=_msg("give both neuron_index and concept_index (or neither)")):
        sampling_grid(a, c, g, neuron_index=[0, 1])
    with pytest.raises(ValueError, match=_msg("give both neuron_index and concept_index (or neither)")):
        sampling_grid(a, c, g, concept_index=[0, 1])
    with pytest.raises(ValueError, match=_msg("sampler labels must be unique; got ['mg_is', 'mg_is']")):
        sampling_grid(a, c, g, samplers=["mg_is", {"name": "mg_is"}])
    with pytest.raises(ValueError, match=_msg("MG-IS needs c_guide (the concept model's presence estimates)")):
        sampling_grid(a, c, None, samplers=["uniform", "mg_is"])
    with pytest.raises(ValueError, match=_msg("sample sizes must be >= 1")):
        sampling_grid(a, c, g, ns=[0, 5])
    with pytest.raises(ValueError, match=_msg("at most 127 sample sizes")):
        sampling_grid(a, c, g, ns=range(1, 129))
    # the boundaries are allowed; no guide is needed without MG-IS
    df = sampling_grid(a, c, None, samplers=["uniform", "ag_is"], ns=range(1, 128), seeds=[0], neuron_index=[2],
                       concept_index=[1])
    assert len(df) == 2 * 127 and set(df["n"]) == set(range(1, 128))
    assert (df.loc[df.n == 1, "n_distinct"] == 1).all()


def test_grid_defaults():
    a, c, g = _toy(n=80, k=40, seed=2)
    kw = dict(samplers=["uniform", "mg_is"], ns=[3, 9], seeds=range(2))
    base = sampling_grid(a, c, g, **kw)
    assert base.equals(sampling_grid(a, c, g, rng=0, chunk_size=32, estimator="unbiased", **kw))
    assert not base.equals(sampling_grid(a, c, g, rng=1, **kw))
    assert not base["rho_hat"].equals(sampling_grid(a, c, g, chunk_size=33, **kw)["rho_hat"])
    # neuron_index / concept_index given as lists of floats or ints select the same pairs
    sel = sampling_grid(a, c, g, neuron_index=[1.0, 2.0], concept_index=[1, 2], **kw)
    assert sel.equals(sampling_grid(a[:, 1:3], c[:, 1:3], g[:, 1:3], **kw))


def test_grid_loop_reference_is_reproducible_and_exact():
    """sampling_grid_loop: rng.choice(N, n, p=q) per (pair, sampler, seed, n), from default_rng(rng)."""
    a, c, g = _toy(n=90, k=2, seed=3)
    a[:, 1] = 1.0
    samplers = ["uniform", {"name": "ag_is", "alpha": 3.0}]
    df = sampling_grid_loop(a, c, g, samplers=samplers, ns=[4, 10], seeds=[5, 6], estimator="self_normalised")
    assert list(df.columns) == ["pair", "sampler", "n", "seed", "rho", "rho_hat", "rce", "n_distinct"]
    assert df.equals(sampling_grid_loop(a, c, g, samplers=samplers, ns=[10, 4], seeds=[5, 6], rng=0,
                                        estimator="self_normalised"))
    gen = np.random.default_rng(0)
    ah = standardise_activations(a[:, 0])
    rows = []
    for spec in samplers:
        q = sampler_q(spec, ah)
        for seed in (5, 6):
            for n in (4, 10):
                idx = gen.choice(90, size=n, replace=True, p=q)
                w = 1 / (90 * q[idx])
                rh = np.sum(w * ah[idx] * c[idx, 0]) / np.sum(w)
                m_c = np.sum(w * c[idx, 0]) / np.sum(w)
                var = np.sum(w * c[idx, 0] ** 2) / np.sum(w) - m_c**2
                rows.append((sampler_label(spec), seed, n, rh / np.sqrt(var) if var > 0 else 0.0, len(set(idx))))
    first = df[df.pair == 0]
    assert list(zip(first.sampler, first.seed, first.n, strict=True)) == [r[:3] for r in rows]
    np.testing.assert_allclose(first["rho_hat"], [r[3] for r in rows], rtol=1e-10)
    assert list(first["n_distinct"]) == [r[4] for r in rows]
    rho = exact_rho(ah, c[:, 0])
    np.testing.assert_allclose(first["rce"], np.abs(first["rho_hat"] - rho) / abs(rho), rtol=1e-12)
    # the constant neuron: every (sampler, seed, n) row, NaN estimates, no inputs
    const = df[df.pair == 1]
    assert len(const) == 2 * 2 * 2 and const[["rho", "rho_hat", "rce"]].isna().all().all()
    assert (const["n_distinct"] == 0).all()


# ---- summarise_rce ----------------------------------------------------------------------------------
def _long(rows):
    return pd.DataFrame(rows, columns=["sampler", "n", "pair", "seed", "rho", "rce", "n_distinct", "cost"])


def test_summarise_rce_groups_floor_extra_and_attrs():
    rows = []
    for pair, rho in ((0, 0.5), (1, -0.05), (2, 0.049), (3, np.nan)):
        for seed in (0, 1):
            rows.append(("u", 10, pair, seed, rho, 0.1 * (pair + 1) + 0.1 * seed, 9 + seed, 1.0 + seed))
    rows.append(("m", 10, 2, 0, 0.049, 0.3, 8, 2.0))  # a group whose only pair is excluded
    df = _long(rows)
    s = summarise_rce(df)  # floor 0.05: pair 1 (|rho| = 0.05) kept, 2 and 3 excluded
    assert list(s.columns) == ["sampler", "n", "rce", "sem", "n_pairs", "n_excluded", "mean_n_distinct"]
    u = s[s.sampler == "u"].iloc[0]
    assert u["n_pairs"] == 2 and u["n_excluded"] == 2
    assert u["rce"] == pytest.approx(np.mean([0.15, 0.25])) and u["mean_n_distinct"] == pytest.approx(9.5)
    assert u["sem"] == pytest.approx(np.std([0.15, 0.25], ddof=1) / np.sqrt(2))
    m = s[s.sampler == "m"].iloc[0]
    assert m["n_pairs"] == 0 and m["n_excluded"] == 1 and np.isnan(m["rce"])
    assert s["n_pairs"].dtype == np.int64 and s["n_excluded"].dtype == np.int64
    assert s.attrs == {"floor": 0.05, "n_excluded_pairs": 2}
    e = summarise_rce(df[df.sampler == "u"], floor=0.0, extra=("cost",))
    assert list(e.columns)[-1] == "mean_cost" and e["mean_cost"].iloc[0] == pytest.approx(1.5)
    assert e["n_pairs"].iloc[0] == 3 and e["n_excluded"].iloc[0] == 1 and e.attrs["n_excluded_pairs"] == 1
    # no pair excluded: n_excluded is 0, not NaN
    k = summarise_rce(df[df.pair == 0])
    assert k["n_excluded"].tolist() == [0] and k["n_pairs"].tolist() == [1]


def test_summarise_rce_categorical_and_missing_groups():
    df = _long([("u", 10, 0, 0, 0.5, 0.2, 9, 1.0), ("u", 10, 1, 0, 0.01, 0.9, 9, 1.0)])
    df["sampler"] = pd.Categorical(df["sampler"], categories=["u", "unused"])
    df["beta"] = np.nan
    df["no_variation"] = [True, False]
    s = summarise_rce(df, by=("sampler", "beta", "n"))
    assert len(s) == 1 and s["sampler"].tolist() == ["u"] and np.isnan(s["beta"].iloc[0])
    assert s["n_pairs"].tolist() == [1] and s["n_excluded"].tolist() == [1]
    assert s["n_no_variation"].tolist() == [1] and s["share_no_variation"].tolist() == [1.0]
    assert s["n_no_variation"].dtype == np.int64
    # all pairs of a group excluded: no samples counted, share undefined
    t = summarise_rce(df, floor=0.9, by=("sampler", "beta", "n"))
    assert t["n_no_variation"].tolist() == [0] and np.isnan(t["share_no_variation"].iloc[0])
    df["no_variation"] = [1, 0]  # counted as booleans
    assert summarise_rce(df, by=("sampler", "n"))["n_no_variation"].tolist() == [1]


def test_engine_checks_what_the_compiled_loop_relies_on():
    """The compiled loop has no bounds checks: shapes and given draws are checked before it runs."""
    from neuronaudit.sampling import _distinct_prefix_counts

    idx = np.zeros((2, 3, 4), dtype=int)
    bad = idx.copy()
    bad[0, 0, 0] = -1
    with pytest.raises(ValueError, match=_msg("draw indices must lie in [0, 5); got -1 .. 0")):
        PairDraws.from_indices(bad, None, [4], n_inputs=5)
    bad[0, 0, 0] = 5
    with pytest.raises(ValueError, match=_msg("draw indices must lie in [0, 5); got 0 .. 5")):
        PairDraws.from_indices(bad, None, [4], n_inputs=5)
    d = PairDraws.from_indices(idx, None, [4], n_inputs=5)
    ok = moment_table(np.ones((2, 5)), np.ones((2, 5)))
    assert d.moment_sums(ok, None)[2].tolist() == [[1]] * 6
    with pytest.raises(ValueError, match=_msg("tables of 8 (and 0) entries for 2 pairs x 5 inputs")):
        d.moment_sums(moment_table(np.ones((2, 4)), np.ones((2, 4))), None)
    with pytest.raises(ValueError, match=_msg("tables of 10 (and 4) entries for 2 pairs x 5 inputs")):
        d.moment_sums(ok, np.ones(4))
    with pytest.raises(ValueError, match=_msg("draws of shape (6, 3); expected (6, 4)")):
        PairDraws(np.zeros((6, 3), dtype=np.intp), None, 5, [4], 3).moment_sums(ok, None)
    with pytest.raises(ValueError, match=_msg("draws must lie in [0, 10); got 10 .. 10")):
        PairDraws(np.full((6, 4), 10, dtype=np.intp), None, 5, [4], 3).moment_sums(ok, None)
    with pytest.raises(ValueError, match=_msg("nq has shape (3, 5); expected (2, 5)")):
        PairDraws(np.zeros((6, 4), dtype=np.intp), np.ones((3, 5)), 5, [4], 3).moment_sums(ok, None)
    with pytest.raises(ValueError, match=_msg("expected 24 uniforms, got shape (5,)")):
        PairDraws.draw("uniform", np.ones((2, 5)), None, [4], 3, None, u=np.zeros(5))
    with pytest.raises(ValueError, match=_msg("idx must hold non-negative values and >= 4 columns")):
        _distinct_prefix_counts(np.array([[0, -1, 2, 3]]), np.array([2, 4]))
    with pytest.raises(ValueError, match=_msg("idx must hold non-negative values and >= 4 columns")):
        _distinct_prefix_counts(np.array([[0, 1, 2]]), np.array([2, 4]))
    with pytest.raises(ValueError, match=_msg("idx must hold non-negative values and >= 10 columns")):
        _distinct_prefix_counts(np.zeros((1, 5), dtype=int), np.array([2, 4, 10]))
    # given uniforms are used as given: the same draws as from the generator that made them
    u = np.random.default_rng(3).random(2 * 3 * 4)
    a = np.random.default_rng(4).standard_normal((2, 5))
    for spec in ("uniform", {"name": "ag_is"}):
        d1 = PairDraws.draw(spec, a, None, [2, 4], 3, np.random.default_rng(3))
        d2 = PairDraws.draw(spec, a, None, [2, 4], 3, None, u=u)
        np.testing.assert_array_equal(d1.flat, d2.flat)


def test_draw_and_sum_is_draw_then_moment_sums_and_reuses_the_workspace():
    a, c, g = _toy(n=300, k=3, seed=5)
    ah = standardise_activations(a).T.copy()
    acc = moment_table(ah, c.T)
    ns = np.array([3, 20, 60])
    u = np.random.default_rng(1).random(3 * 4 * 60)
    work = sampling._Workspace(300)
    for spec in ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2}, {"name": "ag_is", "alpha": 3.0}):
        for cc in (None, c.T * 0.5):
            d, sums, sq, nd = PairDraws.draw_and_sum(spec, ah, g.T, ns, 4, u, acc, cc, work=work)
            ref = PairDraws.draw(spec, ah, g.T, ns, 4, None, u=u)
            np.testing.assert_array_equal(d.flat, ref.flat)
            assert d.flat.base is not None and np.shares_memory(d.flat, work._flat)  # the workspace's buffer
            rs, rq, rn = ref.moment_sums(acc, cc, second=True)
            np.testing.assert_array_equal(sums, rs)
            np.testing.assert_array_equal(sq, rq)
            np.testing.assert_array_equal(nd, rn)
            assert nd.dtype == np.int32 and sums.shape == (12, 3, 4) and sq.shape == (12, 3, 10)
            # second=False: no products
            _, _, sq0, _ = PairDraws.draw_and_sum(spec, ah, g.T, ns, 4, u, acc, cc, second=False)
            assert sq0 is None
    # a workspace for another N: its scratch tables are not used (fresh ones are made), same results
    small = sampling._Workspace(10)
    d, sums, _, nd = PairDraws.draw_and_sum({"name": "mg_is"}, ah, g.T, ns, 4, u, acc, work=small)
    ref = PairDraws.draw({"name": "mg_is"}, ah, g.T, ns, 4, None, u=u)
    np.testing.assert_array_equal(d.flat, ref.flat)
    np.testing.assert_array_equal(sums, ref.moment_sums(acc, None)[0])
    # the buffer grows when a call needs more draws, and is reused otherwise
    w = sampling._Workspace(300)
    b1 = w.flat_buffer(2, 5)
    b2 = w.flat_buffer(1, 10)
    assert b1.shape == (2, 5) and b2.shape == (1, 10) and np.shares_memory(b1, b2)
    assert w.flat_buffer(3, 5).shape == (3, 5) and w._flat.size == 15


def test_estimate_shapes():
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 6, size=(2, 3, 8))
    d = PairDraws.from_indices(idx, None, [4, 8], n_inputs=6)
    rh, nv = d.estimate(moment_table(rng.standard_normal((2, 6)), (rng.random((2, 6)) < 0.5) * 1.0), None, "unbiased")
    assert rh.shape == nv.shape == (2, 3, 2) and nv.dtype == bool


# ---- the grid's compiled paths (issue 8: speed) ------------------------------------------------------
def test_prepare_is_standardise_exact_rho_and_moment_table():
    """_k_prepare (the grid's per-block pass) == standardise_activations, exact_rho and moment_table,
    float32 and float64 inputs, binary and soft c; undefined rows (constant a or c) get a_hat = 1."""
    rng = np.random.default_rng(4)
    n = 1001  # odd: the interleaved partial sums have a remainder
    a = rng.standard_normal((5, n)) * 3 + 7
    c = (rng.random((5, n)) < 0.1).astype(float)
    a[2] = 4.0  # constant activations
    c[3] = 0.0  # concept never present
    c[4] = np.clip(c[4] * 0.6 + 0.4 * rng.random(n), 0, 1)  # soft
    for dt in (np.float64, np.float32):
        ad, cd = a.astype(dt), c.astype(dt)
        a_hat = np.empty((5, n))
        acc = np.empty((5, n), dtype=np.complex128)
        rho = np.empty(5)
        binary = np.empty(5, dtype=bool)
        sampling._k_prepare(ad, cd, a_hat, acc.view(np.float64).reshape(5, n, 2), rho, binary)
        want_hat = standardise_activations(ad.astype(np.float64).T).T
        want_rho = exact_rho(want_hat.T, cd.astype(np.float64).T)
        np.testing.assert_allclose(rho, want_rho, rtol=1e-12, equal_nan=True)
        assert np.isnan(rho[[2, 3]]).all() and np.isfinite(rho[[0, 1, 4]]).all()
        ok = [0, 1, 4]
        np.testing.assert_allclose(a_hat[ok], want_hat[ok], rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(a_hat[[2, 3]], 1.0)
        np.testing.assert_allclose(acc[ok], moment_table(want_hat[ok], cd[ok].astype(np.float64)), rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(acc[[2, 3]], moment_table(np.ones((2, n)), cd[[2, 3]].astype(np.float64)))
        assert binary.tolist() == [True, True, True, True, False]


def test_is_q_compiled_rows_equal_the_numpy_path(monkeypatch):
    """mg_is_q / ag_is_q on (pairs, N) rows (the engine's call) take one compiled pass; same q as the
    NumPy path (axis 0 on the transpose), same errors."""
    calls = []
    real = sampling._k_is_q
    monkeypatch.setattr(sampling, "_k_is_q", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 777))
    g = rng.random((3, 777))
    for gamma in (0.0, 0.2, 0.7):
        for cg in (g, g.astype(np.float32)):
            got = mg_is_q(a, cg, gamma=gamma, axis=1)
            want = mg_is_q(a.T.copy(), cg.T.astype(np.float64).copy(), gamma=gamma, axis=0).T
            np.testing.assert_allclose(got, want, rtol=1e-13)
        for alpha in (1.0, 2.0, 3.0, 0.5):
            got = ag_is_q(a, alpha=alpha, gamma=gamma, axis=1)
            np.testing.assert_allclose(got, ag_is_q(a.T.copy(), alpha=alpha, gamma=gamma, axis=0).T, rtol=1e-13)
            np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)
    assert len(calls) == 3 * 2 + 3 * 4
    np.testing.assert_array_equal(mg_is_q(a, g, gamma=1.0, axis=1), 1 / 777)
    # gamma = 1: uniform q whatever c_hat is, even a concept model that is 0 everywhere
    np.testing.assert_array_equal(mg_is_q(a, np.zeros_like(g), gamma=1.0, axis=1), 1 / 777)
    # c_hat = 0 on some inputs is a valid presence probability
    g0 = g.copy()
    g0[:, :10] = 0.0
    q0 = mg_is_q(a, g0, gamma=0.2, axis=1)
    np.testing.assert_allclose(q0[:, :10], 0.2 / 777, rtol=1e-15)
    assert len(calls) == 3 * 2 + 3 * 4 + 2 + 1  # gamma = 1 too (q = 1 / N from the compiled pass)
    with pytest.raises(ValueError, match="non-negative"):  # a negative c_hat is refused even at gamma = 1
        mg_is_q(a, -g, gamma=1.0, axis=1)
    bad = g.copy()
    bad[1, 5] = -0.1
    with pytest.raises(ValueError, match=_msg("c_hat must be non-negative (a presence probability)")):
        mg_is_q(a, bad, axis=1)
    zero = g.copy()
    zero[2] = 0.0
    with pytest.raises(ValueError, match=_msg("MG-IS: the unnormalised sampling weights sum to zero (or NaN) for column 2")):
        mg_is_q(a, zero, gamma=0.1, axis=1)
    a0 = a.copy()
    a0[1] = 0.0
    with pytest.raises(ValueError, match=_msg("AG-IS: the unnormalised sampling weights sum to zero (or NaN) for column 1")):
        ag_is_q(a0, axis=1)


@pytest.mark.parametrize("spec", [{"name": "ag_is", "alpha": 4.0, "gamma": 1e-4}, {"name": "mg_is", "gamma": 0.0}])
def test_engine_draws_with_many_inputs_per_guide_bucket(spec):
    """A very uneven q (many CDF steps inside one unit bucket, and the last inputs tiny, so the CDF
    passes N - 1 before the last input): the draws are still the first i with cumsum(N q)_i > u N'."""
    rng = np.random.default_rng(9)
    n = 400
    a = rng.standard_normal((2, n)) ** 3
    g = rng.random((2, n)) ** 4 + 1e-9
    u = np.concatenate([rng.random(2 * 3 * 50 - 4), [0.0, 1 - 2**-53, 0.5, 1 - 1e-12]])
    d = PairDraws.draw(spec, a, g, np.array([10, 50]), 3, None, u=u)
    t = u.reshape(2, 3, 50) * sampling._scale_below(n)
    for j in range(2):
        nq = d.nq[j]
        z = np.cumsum(nq)
        want = np.minimum(np.searchsorted(z, t[j], side="right"), n - 1)
        np.testing.assert_array_equal(d.idx[j], want)
        counts = np.bincount(np.floor(z[:-1]).astype(int), minlength=n)
        assert counts.max() >= 8 and z[-2] >= n - 1  # many steps in one bucket; the guide's scratch slot used


def test_is_q_compiled_path_only_for_its_case(monkeypatch):
    """The compiled q is taken for C-contiguous (pairs, N) float rows (axis 1 or -1) with c_hat of the
    same shape; a broadcast c_hat row goes the NumPy way (the compiled loop would read past it)."""
    calls = []
    real = sampling._k_is_q
    monkeypatch.setattr(sampling, "_k_is_q", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(2)
    a = rng.standard_normal((3, 50))
    g = rng.random((3, 50))
    np.testing.assert_allclose(mg_is_q(a, g, axis=-1), mg_is_q(a.T.copy(), g.T.copy(), axis=0).T, rtol=1e-13)
    np.testing.assert_allclose(ag_is_q(a, axis=-1), ag_is_q(a.T.copy(), axis=0).T, rtol=1e-13)
    assert len(calls) == 2
    row = g[:1]  # one concept-model row for every pair: broadcast
    want = np.stack([mg_is_q(a[k], row[0]) for k in range(3)])
    np.testing.assert_allclose(mg_is_q(a, row, axis=1), want, rtol=1e-13)
    np.testing.assert_allclose(mg_is_q(a, row, axis=-1), want, rtol=1e-13)
    assert len(calls) == 2
    # the NumPy path names its sampler too
    with pytest.raises(ValueError, match=_msg("AG-IS: the unnormalised sampling weights sum to zero (or NaN) for column 0")):
        ag_is_q(np.zeros((3, 2)), axis=0)


def test_grid_undefined_pair_with_a_zero_concept_model():
    """A pair with undefined rho (a constant neuron) whose concept model is 0 everywhere is still
    sampled (uniformly) and reported NaN: its q is not built from the all-zero guide."""
    a, c, g = _toy(n=120, k=3, seed=3)
    a[:, 1] = 1.5
    g[:, 1] = 0.0
    df = sampling_grid(a, c, g, ns=[5, 20], seeds=range(2), rng=1, n_threads=1)
    bad = df[df["pair"] == 1]
    assert bad["rho"].isna().all() and bad["rho_hat"].isna().all() and len(bad) == 3 * 2 * 2
    assert df.loc[df["pair"] != 1, "rho_hat"].notna().all()


def test_estimates_from_sums_keeps_leading_shape_and_default_products():
    rng = np.random.default_rng(5)
    sums = rng.random((2, 3, 4, 4)) + 0.5  # (pairs, seeds, sizes, terms)
    sums[..., 3] = sums[..., 2] * 1.5
    sq = rng.random((2, 3, 4, 10)) + 2.0
    ns = np.array([3, 10, 40, 90])
    rh, nv, se = sampling.estimates_from_sums(sums, sq, ns, "self_normalised")
    assert rh.shape == nv.shape == se.shape == (2, 3, 4)
    flat = sampling.estimates_from_sums(sums.reshape(6, 4, 4), sq.reshape(6, 4, 10), ns, "self_normalised")
    for x, y in zip((rh, nv, se), flat, strict=True):
        np.testing.assert_array_equal(x.reshape(6, 4), y)
    d = PairDraws.from_indices(rng.integers(0, 5, size=(1, 2, 4)), None, [4], n_inputs=5)
    assert d.moment_sums(moment_table(np.ones((1, 5)), np.ones((1, 5))), None)[1] is None  # second=False by default


def test_grid_float32_inputs_give_the_float64_results():
    """float32 columns stay float32 until the block's compiled pass, which works in float64: the grid on
    float32 inputs equals the grid on the same values as float64, soft c included (c^2 in float64)."""
    a, c, g = _toy(n=150, k=3, seed=8)
    c[:, 2] = np.clip(c[:, 2] * 0.7 + 0.3 * np.random.default_rng(0).random(150), 0, 1)  # soft
    a32, c32, g32 = a.astype(np.float32), c.astype(np.float32), g.astype(np.float32)
    kw = dict(ns=[5, 40], seeds=range(2), rng=4, n_threads=1)
    got = sampling_grid(a32, c32, g32, **kw)
    want = sampling_grid(a32.astype(np.float64), c32.astype(np.float64), g32.astype(np.float64), **kw)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-13, atol=0)


def test_grid_uniforms_are_numpys_sfc64_stream():
    """The grid's compiled uniforms are NumPy's SFC64 Generator.random() numbers, bit for bit, across
    calls (the state advances in place)."""
    st = sampling._sfc64_state(np.random.SeedSequence(9))
    out = np.empty(1000)
    sampling._k_sfc64_uniforms(st, out[:301])
    sampling._k_sfc64_uniforms(st, out[301:])
    ref = np.random.Generator(np.random.SFC64(np.random.SeedSequence(9))).random(1000)
    np.testing.assert_array_equal(out, ref)
    assert st.dtype == np.uint64 and st.shape == (4,)


def test_running_max_is_numpys_accumulate():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 1000):
        g = np.where(rng.random(n + 1) < 0.5, 0, rng.integers(0, 2**31 - 1, n + 1)).astype(np.int32)
        want = g.copy()
        want[:n] = np.maximum.accumulate(g[:n])
        sampling._k_running_max(g, n)
        np.testing.assert_array_equal(g, want)  # the scratch slot n is left as it was


def test_distinct_counts_over_more_rows_than_stamps():
    """Distinct inputs are counted with one stamp per row (1 .. 255), the marks cleared every 255 rows:
    a call with 2 x 200 rows counts every row as the plain count does."""
    a, c, g = _toy(n=40, k=2, seed=4)
    ah = standardise_activations(a).T.copy()
    acc = moment_table(ah, c.T)
    ns = np.array([3, 10, 30])
    u = np.random.default_rng(2).random(2 * 200 * 30)
    for spec in ("uniform", {"name": "mg_is", "gamma": 0.2}):
        d, _, _, nd = PairDraws.draw_and_sum(spec, ah, g.T, ns, 200, u, acc)
        np.testing.assert_array_equal(nd, sampling._distinct_prefix_counts(d.flat, ns))


def test_grid_refuses_a_q_that_cannot_be_sampled_naming_it():
    a, c, g = _toy(n=100, k=3, seed=1)
    neg = g.copy()
    neg[7, 2] = -0.1
    with pytest.raises(ValueError, match=_msg("pair 2, sampler mg_is: c_hat must be non-negative (a presence probability)")):
        sampling_grid(a, c, neg, ns=[5], seeds=range(2))
    zero = g.copy()
    zero[:, 1] = 0.0
    with pytest.raises(ValueError, match="^pair 1, sampler mg_is: MG-IS: the unnormalised sampling weights sum to zero"):
        sampling_grid(a, c, zero, ns=[5], seeds=range(2))
    first = g.copy()
    first[0, 0] = -1.0  # the first pair and the first sampler of its chunk
    with pytest.raises(ValueError, match="^pair 0, sampler mg_is"):
        sampling_grid(a, c, first, samplers=["mg_is", "uniform"], ns=[5], seeds=range(2))
    z = np.tile(g, 2)
    z[1, 4] = 0.0  # q = 0 on input 1 of pair 4, in the third chunk of 2 pairs
    with pytest.raises(ValueError, match="^pair 4, sampler mg_is\\(gamma=0\\): q is zero at input 1 for pair 4 "):
        sampling_grid(np.tile(a, 2), np.tile(c, 2), z, samplers=[{"name": "mg_is", "gamma": 0.0}], ns=[5],
                      seeds=range(2), chunk_size=2)
    # gamma = 1: q uniform whatever the guide (no sum to check), as the NumPy path
    one = sampling_grid(a, c, zero, samplers=[{"name": "mg_is", "gamma": 1.0}, "uniform"], ns=[5, 20], seeds=range(3))
    np.testing.assert_array_equal(one.loc[one.sampler == "mg_is(gamma=1)", "rho_hat"].to_numpy(),
                                  one.loc[one.sampler == "uniform", "rho_hat"].to_numpy())


def test_q_into_a_given_buffer_and_scaled():
    """``out``: the compiled row path writes q into the caller's buffer (the engine reuses one per
    thread) and refuses one of another shape, dtype or layout; ``scale``: N q for the engine, on both
    paths."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 50))
    g = rng.random((2, 50))
    buf = np.empty((2, 50))
    for q in (mg_is_q(a, g, axis=1, out=buf), ag_is_q(a, axis=1, out=buf),
              sampler_q("mg_is", a, g, axis=1, out=buf), sampler_q("ag_is", a, None, axis=1, out=buf)):
        assert q is buf
    np.testing.assert_allclose(sampler_q("ag_is", a, None, axis=1, out=buf), ag_is_q(a, axis=1), rtol=1e-15)
    for bad in (np.empty((2, 49)), np.empty((2, 50), dtype=np.float32), np.empty((50, 2)).T):
        with pytest.raises(ValueError, match=_msg("out must be a C-contiguous float64 array of shape (2, 50)")):
            mg_is_q(a, g, axis=1, out=bad)
    for scale in (2.0, 3.0):  # the NumPy path (inputs along axis 0) and the compiled rows
        np.testing.assert_allclose(mg_is_q(a.T, g.T, scale=scale), scale * mg_is_q(a.T, g.T), rtol=1e-15)
        np.testing.assert_allclose(ag_is_q(a.T, scale=scale), scale * ag_is_q(a.T), rtol=1e-15)
        np.testing.assert_allclose(mg_is_q(a, g, axis=1, scale=scale), scale * mg_is_q(a, g, axis=1), rtol=1e-15)
    np.testing.assert_array_equal(sampler_q("uniform", a, None, axis=1, scale=50.0), 1.0)


def test_engine_workspace_holds_q_and_second_false_with_a_workspace():
    a, c, g = _toy(n=60, k=2, seed=2)
    ah = standardise_activations(a).T.copy()
    acc = moment_table(ah, c.T)
    ns = np.array([4, 12])
    u = np.random.default_rng(0).random(2 * 3 * 12)
    work = sampling._Workspace(60)
    gt = g.T.copy()  # C-contiguous rows: the compiled path, which writes into the buffer
    d, sums, sq, nd = PairDraws.draw_and_sum("mg_is", ah, gt, ns, 3, u, acc, work=work, second=False)
    assert sq is None and np.shares_memory(d.nq, work._nq)  # N q written into the workspace's buffer
    np.testing.assert_allclose(d.nq, mg_is_q(ah, gt, axis=1) * 60, rtol=1e-15)
    assert work.nq_buffer(1).shape == (1, 60) and np.shares_memory(work.nq_buffer(1), work._nq)
    assert work.nq_buffer(3).shape == (3, 60) and work._nq.shape == (3, 60)  # grows when more rows are asked for
    with pytest.raises(ValueError, match="engine mode 3"):
        d._run(3, u, acc, None, False)
