"""Reference equality of the vectorised estimation paths (SPEC sec. 3-4).

The draw engine (the compiled ``sampling._k_engine``, wrapped by ``sampling.PairDraws``) is shared by
Setting 1 (``sampling_grid``) and Setting 2 (``run_setting2``). Here its draws are rebuilt from the
grid's documented random streams (Setting 1) or recorded while the entry point runs (Setting 2, with
the simulated ratings), and a plain Python loop over pairs, seeds and sample sizes recomputes every
estimate from those same draws with the formulas written out: q in closed form, w = 1 / (N q),
unbiased (1/n) sum w h or self-normalised sum w h / sum w, rho_hat = E[a c] / sqrt(E[c^2] - E[c]^2)
(0 when the sample shows no variation in c), duplicates rated once. Agreement is exact to float
tolerance, so a wrong sampling distribution, weight, estimator, EM input or prior fails here.
EM is checked against a direct maximisation of the likelihood (scipy.optimize).
"""

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special

import neuronaudit.studies.setting2 as setting2
from neuronaudit.aggregation import bragg_posterior_per_input, estimate_eta_em, majority_vote
from neuronaudit.crowd.interval import rho_interval
from neuronaudit.sampling import (
    PairDraws,
    _scale_below,
    ag_is_q,
    mg_is_q,
    moment_table,
    sampler_label,
    sampler_q,
    sampling_grid,
)

RTOL = 1e-9


def _data(n=300, k=4, seed=0, soft=False):
    rng = np.random.default_rng(seed)
    c = (rng.random((n, k)) < 0.12).astype(float)
    a = rng.standard_normal((n, k)) + 1.5 * c
    a[:, 1] = np.maximum(a[:, 1], 0)  # many zeros: |a_hat| is the same on them
    g = np.clip(0.6 * c + 0.4 * rng.random((n, k)), 0.0, 1.0)
    if soft:
        c = np.clip(c * 0.7 + 0.3 * rng.random((n, k)), 0, 1)
    return a, c, g


# ---- q in closed form --------------------------------------------------------------------------
def _a_hat(a):
    """Population standardisation, written out."""
    mean = sum(a) / len(a)
    std = (sum((x - mean) ** 2 for x in a) / len(a)) ** 0.5
    return np.array([(x - mean) / std for x in a])


def _q_ref(spec, a_hat, g):
    """q of a sampler for one pair, in closed form (SPEC sec. 3), element by element."""
    n = len(a_hat)
    if spec["name"] == "uniform":
        return np.full(n, 1.0 / n)
    gamma = spec.get("gamma", 0.2)
    if spec["name"] == "mg_is":
        u = [abs(x) * y for x, y in zip(a_hat, g, strict=True)]
    else:
        u = [abs(x) ** spec.get("alpha", 2.0) for x in a_hat]
    total = sum(u)
    return np.array([(1 - gamma) * x / total + gamma / n for x in u])


@pytest.mark.parametrize("gamma", [0.0, 0.2, 0.5, 1.0])
def test_mg_is_q_is_the_closed_form(gamma):
    a, _, g = _data(n=50, k=3)
    g = np.clip(g, 0.01, 1)
    for k in range(3):
        ah = _a_hat(a[:, k])
        want = _q_ref({"name": "mg_is", "gamma": gamma}, ah, g[:, k])
        np.testing.assert_allclose(mg_is_q(ah, g[:, k], gamma=gamma), want, rtol=1e-12)
    # column-wise (axis=0) and row-wise (axis=1) for many pairs at once
    ah = np.column_stack([_a_hat(a[:, k]) for k in range(3)])
    want = np.column_stack([_q_ref({"name": "mg_is", "gamma": gamma}, ah[:, k], g[:, k]) for k in range(3)])
    np.testing.assert_allclose(mg_is_q(ah, g, gamma=gamma), want, rtol=1e-12)
    np.testing.assert_allclose(mg_is_q(ah.T, g.T, gamma=gamma, axis=1), want.T, rtol=1e-12)
    np.testing.assert_allclose(mg_is_q(ah, g, gamma=gamma).sum(axis=0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0, 0.5])
@pytest.mark.parametrize("gamma", [0.0, 0.2, 1.0])
def test_ag_is_q_is_the_closed_form(alpha, gamma):
    a, _, _ = _data(n=50, k=2)
    ah = np.column_stack([_a_hat(a[:, k]) for k in range(2)])
    want = np.column_stack([_q_ref({"name": "ag_is", "alpha": alpha, "gamma": gamma}, ah[:, k], None) for k in range(2)])
    np.testing.assert_allclose(ag_is_q(ah, alpha=alpha, gamma=gamma), want, rtol=1e-12)
    np.testing.assert_allclose(ag_is_q(ah.T, alpha=alpha, gamma=gamma, axis=1), want.T, rtol=1e-12)
    np.testing.assert_allclose(
        sampler_q({"name": "ag_is", "alpha": alpha, "gamma": gamma}, ah, None), want, rtol=1e-12
    )


def test_q_errors():
    with pytest.raises(ValueError, match="gamma must lie in"):
        mg_is_q(np.ones(3), np.ones(3), gamma=1.5)
    with pytest.raises(ValueError, match="gamma must lie in"):
        ag_is_q(np.ones(3), gamma=-0.1)
    with pytest.raises(ValueError, match="non-negative"):
        mg_is_q(np.ones(3), np.array([0.5, -0.1, 0.2]))
    with pytest.raises(ValueError, match="MG-IS: the unnormalised sampling weights sum to zero .* column 1"):
        mg_is_q(np.ones((3, 2)), np.array([[1.0, 0.0]] * 3))
    with pytest.raises(ValueError, match="AG-IS: the unnormalised sampling weights sum to zero .* column 0"):
        ag_is_q(np.zeros((2, 3)), axis=1)


# ---- the engine's draws are inverse-CDF draws from q on its uniforms ---------------------------
@pytest.mark.parametrize(
    "spec", [{"name": "uniform"}, {"name": "mg_is", "gamma": 0.2}, {"name": "ag_is", "alpha": 3.0, "gamma": 0.1}]
)
def test_engine_draws_are_inverse_cdf_draws_from_q(spec):
    a, _, g = _data(n=40, k=3, seed=2)
    ah = np.array([_a_hat(a[:, k]) for k in range(3)])
    gt = g.T.copy()
    ns = np.array([3, 10, 25])
    d = PairDraws.draw(spec, ah, gt, ns, 4, np.random.default_rng(7))
    u = np.random.default_rng(7).random(3 * 4 * 25).reshape(3, 4, 25)
    t = u * _scale_below(40)
    idx = d.idx
    assert idx.shape == (3, 4, 25)
    for j in range(3):
        q = _q_ref(spec, ah[j], gt[j])
        z = np.cumsum(q) * 40
        want = np.minimum(np.searchsorted(z, t[j], side="right"), 39)
        np.testing.assert_array_equal(idx[j], want)
        if spec["name"] == "uniform":
            assert d.nq is None
            np.testing.assert_array_equal(d.weights()[4 * j : 4 * j + 4], 1.0)
        else:
            np.testing.assert_allclose(d.nq[j], 40 * q, rtol=1e-12)
            # importance weights at the draws: w = p / q = 1 / (N q)
            np.testing.assert_allclose(d.weights()[4 * j : 4 * j + 4], 1 / (40 * q[idx[j]]), rtol=1e-12)


def test_engine_groups_are_the_distinct_inputs_in_order():
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 12, size=(2, 3, 30))
    ns = np.array([4, 10, 30])
    d = PairDraws.from_indices(idx, None, ns, n_inputs=12)
    gr = d.groups()
    nd = d.distinct_counts()
    g0 = 0
    for j in range(2):
        for s in range(3):
            row = idx[j, s]
            uniq = np.unique(row)
            sl = slice(g0, g0 + len(uniq))
            np.testing.assert_array_equal(gr.flat[sl], uniq + 12 * j)
            np.testing.assert_array_equal(gr.row[sl], 3 * j + s)
            first_pos = np.array([np.flatnonzero(row == x)[0] for x in uniq])
            np.testing.assert_array_equal(gr.seg[sl], np.searchsorted(ns, first_pos, side="right"))
            np.testing.assert_array_equal(gr.flat[gr.gid[3 * j + s]], row + 12 * j)
            assert list(nd[j, s]) == [len(np.unique(row[:n])) for n in ns]
            g0 += len(uniq)
    assert len(gr) == g0


# ---- Setting 1: sampling_grid against a loop over the same draws -------------------------------
def _grid_draws(a, g, specs, ns, seeds, rng, chunk_size):
    """The grid's draws, rebuilt outside the engine from its documented streams: chunk i (of chunk_size
    pairs) reads NumPy's SFC64 generator seeded with SeedSequence(rng).spawn(n_chunks)[i], pair after
    pair, len(seeds) x max(ns) uniforms per pair, shared by the samplers; a draw is the first input whose
    cumulative N q exceeds u N (np.searchsorted over np.cumsum), or floor(u N) for uniform q. Returns
    {(label, pair): (seeds, max(ns)) input indices}."""
    n, k = a.shape
    nmax, n_seeds = max(ns), len(seeds)
    seqs = np.random.SeedSequence(rng).spawn(-(-k // chunk_size))
    out = {}
    for ci, seq in enumerate(seqs):
        gen = np.random.Generator(np.random.SFC64(seq))
        for p in range(ci * chunk_size, min(k, (ci + 1) * chunk_size)):
            x = gen.random(n_seeds * nmax).reshape(n_seeds, nmax) * _scale_below(n)
            if np.ptp(a[:, p]) == 0:
                continue  # undefined rho: reported NaN
            ah = _a_hat(a[:, p])
            for spec in specs:
                if spec["name"] == "uniform":
                    idx = x.astype(np.intp)
                else:
                    nq = sampler_q(spec, ah[None], g[:, p][None], axis=1, scale=n)[0]
                    idx = np.searchsorted(np.cumsum(nq)[:-1], x, side="right")
                out[(sampler_label(spec), p)] = idx
    return out


def _estimate_ref(a_s, c_s, w, estimator):
    """rho_hat from one sample by the definition (SPEC sec. 3), and whether c showed no variation."""
    n = len(a_s)
    den = n if estimator == "unbiased" else sum(w)
    m_ac = sum(wi * ai * ci for wi, ai, ci in zip(w, a_s, c_s, strict=True)) / den
    m_c = sum(wi * ci for wi, ci in zip(w, c_s, strict=True)) / den
    m_cc = sum(wi * ci * ci for wi, ci in zip(w, c_s, strict=True)) / den
    var = m_cc - m_c**2
    if not var > 0:
        return 0.0, True
    return m_ac / var**0.5, False


SAMPLERS = [
    {"name": "uniform"},
    {"name": "mg_is", "gamma": 0.2},
    {"name": "ag_is", "alpha": 3.0, "gamma": 0.3},
    {"name": "mg_is", "gamma": 0.05, "label": "mg_is_low"},
]


@pytest.mark.parametrize("estimator,soft", [("unbiased", False), ("self_normalised", False), ("self_normalised", True)])
def test_setting1_grid_equals_a_loop_over_the_same_draws(estimator, soft):
    a, c, g = _data(n=120, k=5, seed=1, soft=soft)
    a[:, 3] = 2.0  # a constant neuron: rho undefined, NaN rows
    ns = [5, 12, 40]
    grid = sampling_grid(a, c, g, samplers=SAMPLERS, ns=ns, seeds=[10, 11, 12], estimator=estimator, rng=4,
                         chunk_size=2, n_threads=1)
    draws = _grid_draws(a, g, SAMPLERS, ns, [10, 11, 12], rng=4, chunk_size=2)
    got = grid.set_index(["sampler", "pair", "seed", "n"])
    checked = 0
    for spec in SAMPLERS:
        label = sampler_label(spec)
        for p in range(a.shape[1]):
            if p == 3:
                assert got.loc[(label, p), "rho_hat"].isna().all() and (label, p) not in draws
                continue
            ah = _a_hat(a[:, p])
            q = _q_ref(spec, ah, g[:, p])
            for s, seed in enumerate([10, 11, 12]):
                for n in ns:
                    ii = draws[(label, p)][s, :n]
                    w = [1 / (len(q) * q[i]) for i in ii]
                    rh, nv = _estimate_ref(ah[ii], c[ii, p], w, estimator)
                    row = got.loc[(label, p, seed, n)]
                    assert row["rho_hat"] == pytest.approx(rh, rel=RTOL, abs=1e-12), (label, p, seed, n)
                    assert row["no_variation"] == nv
                    assert row["n_distinct"] == len(set(ii.tolist()))
                    # the fused delta-method SE and interval: crowd.interval's per-draw formula
                    ref = rho_interval(ah[ii], c[ii, p], np.array(w), estimator)
                    if nv:
                        assert np.isnan(row["se"]) and np.isnan(row["lo"]) and np.isnan(row["hi"])
                    else:
                        assert row["se"] == pytest.approx(float(ref.se), rel=1e-7), (label, p, seed, n)
                        assert row["lo"] == pytest.approx(float(ref.lo), rel=1e-7, abs=1e-12)
                        assert row["hi"] == pytest.approx(float(ref.hi), rel=1e-7, abs=1e-12)
                    checked += 1
    assert checked == 4 * 4 * 3 * 3
    # binary c at n = 5 often shows no positive (rho_hat = 0, flagged); soft c always varies
    assert grid["no_variation"].any() != soft and not grid.loc[grid["pair"] == 3, "no_variation"].any()


def test_engine_estimate_is_the_definition_with_fixed_draws():
    """PairDraws.from_indices: the same estimate from draws made elsewhere (self-normalised weights
    sum w h / sum w against their definition)."""
    a, c, g = _data(n=60, k=2, seed=5, soft=True)
    ah = np.array([_a_hat(a[:, k]) for k in range(2)])
    q = np.array([_q_ref({"name": "mg_is", "gamma": 0.2}, ah[k], g[:, k]) for k in range(2)])
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(60, size=(3, 20), p=q[k]) for k in range(2)])
    ns = [4, 20]
    d = PairDraws.from_indices(idx, q, ns)
    for estimator in ("unbiased", "self_normalised"):
        rh, nv = d.estimate(moment_table(ah, c.T), c.T * c.T, estimator)
        gr = d.groups()
        c_group = c.T.ravel()[gr.flat]
        rh2, nv2 = d.estimate_grouped(ah, c_group, gr, estimator)
        np.testing.assert_allclose(rh2.reshape(rh.shape), rh, rtol=RTOL)
        for j in range(2):
            for s in range(3):
                for b, n in enumerate(ns):
                    ii = idx[j, s, :n]
                    w = 1 / (60 * q[j, ii])
                    want, _ = _estimate_ref(ah[j, ii], c[ii, j], w, estimator)
                    assert rh[j, s, b] == pytest.approx(want, rel=RTOL)
                    if estimator == "self_normalised":  # sum w h / sum w
                        m_c = np.sum(w * c[ii, j]) / np.sum(w)
                        m_cc = np.sum(w * c[ii, j] ** 2) / np.sum(w)
                        assert rh[j, s, b] == pytest.approx(np.sum(w * ah[j, ii] * c[ii, j]) / np.sum(w)
                                                            / np.sqrt(m_cc - m_c**2), rel=RTOL)


# ---- Setting 2: run_setting2 against a loop over the same draws and ratings ---------------------
def _record_draws(monkeypatch):
    """Record every PairDraws that Setting 2 makes (``PairDraws.draw`` builds them in ``_make``)."""
    recorded = []
    orig = PairDraws._make.__func__

    def make(cls, spec, *args, **kwargs):
        out = orig(cls, spec, *args, **kwargs)
        d = out[0]
        recorded.append((spec, PairDraws(d.flat.copy(), d.nq, d.n_inputs, d.ns, d.n_seeds, d.pairs)))
        return out

    monkeypatch.setattr(PairDraws, "_make", classmethod(make))
    return recorded


def _record_ratings(monkeypatch):
    recorded = []
    for name in ("per_input_error_ratings", "uniform_error_ratings"):
        orig = getattr(setting2, name)

        def rec(*args, _orig=orig, **kwargs):
            out = _orig(*args, **kwargs)
            recorded.append(out[0] if isinstance(out, tuple) else out)
            return out

        monkeypatch.setattr(setting2, name, rec)
    return recorded


def _bragg_uniform_ref(yes, r, eta, prior):
    """[c] = P(R|C) pi / (P(R|C) pi + P(R|~C) (1 - pi)) written out (SPEC sec. 4)."""
    l1 = (1 - eta) ** yes * eta ** (r - yes)
    l0 = eta**yes * (1 - eta) ** (r - yes)
    return l1 * prior / (l1 * prior + l0 * (1 - prior))


@pytest.mark.parametrize("rater_model,estimator", [("per_input", "unbiased"), ("uniform", "self_normalised")])
def test_setting2_equals_a_loop_over_the_same_draws_and_ratings(monkeypatch, rater_model, estimator):
    a, c, g = _data(n=150, k=3, seed=8)
    g = np.clip(g, 0.02, 0.97)
    pairs = pd.DataFrame({"neuron_idx": [0, 1, 2], "concept_idx": [0, 1, 2], "neuron": list("abc"),
                          "concept": list("xyz")})
    ns, seeds, n_raters, betas = [6, 15, 40], [0, 1], [1, 3], [0.05, 0.3]
    draws = _record_draws(monkeypatch)
    ratings = _record_ratings(monkeypatch)
    df = setting2.run_setting2(a, c, g, pairs, ns=ns, seeds=seeds, n_raters=n_raters, betas=betas, rng=3,
                               chunk_size=2, rater_model=rater_model, estimator=estimator, eta_single_rater=0.15)
    assert len(draws) == len(ratings) == 2  # two chunks
    got = df.set_index(["pair", "seed", "n", "n_raters", "aggregation", "beta"]).sort_index()
    checked = 0
    for (spec, d), rat in zip(draws, ratings, strict=True):
        assert spec == {"name": "mg_is", "gamma": 0.2}
        offset = 0
        for j, p in enumerate(d.pairs):
            ah = _a_hat(a[:, p])
            q = _q_ref(spec, ah, g[:, p])
            prior = np.clip(g[:, p], 1e-3, 1 - 1e-3)
            for s, seed in enumerate(seeds):
                full = d.idx[j, s]
                uniq = sorted(set(full.tolist()))
                rating_of = {x: rat[offset + i] for i, x in enumerate(uniq)}  # groups: by row, then input
                offset += len(uniq)
                for n in ns:
                    ii = full[:n]
                    w = [1 / (len(q) * q[i]) for i in ii]
                    rated = sorted(set(ii.tolist()))  # the design's distinct inputs, each rated once
                    key = (p, seed, n)

                    def check(agg, r, beta, c_of, eta_hat=None, key=key, ii=ii, w=w, ah=ah, p=p, rated=rated):
                        rh, nv = _estimate_ref(ah[ii], [c_of[x] for x in ii], w, estimator)
                        row = got.loc[(*key, r, agg, beta)] if np.isfinite(beta) else got.loc[(*key, r, agg)]
                        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                        assert row["rho_hat"] == pytest.approx(rh, rel=RTOL, abs=1e-12), (agg, r, beta, key)
                        assert row["no_variation"] == nv
                        assert row["n_distinct"] == len(rated)
                        assert row["cost"] == pytest.approx(len(rated) * r * 0.004)
                        if eta_hat is not None:
                            assert row["eta_hat"] == pytest.approx(eta_hat, rel=1e-9)

                    check("model_only", 0, np.nan, {x: g[x, p] for x in rated})
                    for r in n_raters:
                        yes = {x: int(rating_of[x][:r].sum()) for x in rated}
                        ys = np.array([yes[x] for x in rated])
                        eta = 0.15 if r == 1 else estimate_eta_em(ys, np.full(len(ys), r)).eta
                        check("majority", r, np.nan, {x: float(majority_vote(yes[x], r)) for x in rated})
                        for beta in betas:
                            check("bragg_uniform", r, beta, {x: _bragg_uniform_ref(yes[x], r, eta, beta) for x in rated},
                                  eta_hat=eta)
                            per = bragg_posterior_per_input(ys, r, prior=beta)
                            check("bragg_uniform_per_input", r, beta, dict(zip(rated, per, strict=True)))
                        check("bragg_model", r, np.nan, {x: _bragg_uniform_ref(yes[x], r, eta, prior[x]) for x in rated},
                              eta_hat=eta)
                        per = bragg_posterior_per_input(ys, r, prior=prior[rated])
                        check("bragg_model_per_input", r, np.nan, dict(zip(rated, per, strict=True)))
                        checked += 1
    assert checked == 3 * 2 * 3 * 2
    # the simulated raters see the ground truth of the rated inputs
    assert all(set(np.unique(r)) <= {0, 1} for r in ratings)


# ---- EM against a direct maximisation of the likelihood ------------------------------------------
def _neg_ll(eta, prevalence, yes, m):
    l1 = np.log(prevalence) + yes * np.log1p(-eta) + (m - yes) * np.log(eta)
    l0 = np.log1p(-prevalence) + yes * np.log(eta) + (m - yes) * np.log1p(-eta)
    return -np.logaddexp(l1, l0).sum()


@pytest.mark.parametrize("m,eta_true,prev", [(3, 0.15, 0.3), (5, 0.3, 0.6), (2, 0.1, 0.2)])
def test_em_reaches_the_likelihood_maximum_from_counts_and_histograms(m, eta_true, prev):
    rng = np.random.default_rng(m)
    c = rng.random(400) < prev
    yes = (c[:, None] ^ (rng.random((400, m)) < eta_true)).sum(axis=1)
    direct = optimize.minimize(lambda x: _neg_ll(special.expit(x[0]) / 2, special.expit(x[1]), yes, m),
                               x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                            "maxiter": 4000})
    eta_d, prev_d = special.expit(direct.x[0]) / 2, special.expit(direct.x[1])
    res = estimate_eta_em(yes, np.full(400, m))
    assert res.converged
    assert res.eta == pytest.approx(eta_d, abs=2e-4) and res.prevalence == pytest.approx(prev_d, abs=2e-4)
    assert -_neg_ll(res.eta, res.prevalence, yes, m) >= -direct.fun - 1e-6
    # the same EM on the yes-count histogram, batched with other problems, gives the same answer
    hist = np.bincount(yes, minlength=m + 1)
    other = np.bincount(yes[:50], minlength=m + 1)
    batch = estimate_eta_em(np.arange(m + 1), m, weight=np.stack([other, hist, np.zeros(m + 1)]))
    assert batch.eta[1] == pytest.approx(res.eta, rel=1e-9) and batch.n_iter[1] == res.n_iter
    assert batch.prevalence[1] == pytest.approx(res.prevalence, rel=1e-9)
    alone = estimate_eta_em(yes[:50], np.full(50, m))
    assert batch.eta[0] == pytest.approx(alone.eta, rel=1e-9) and batch.n_iter[0] == alone.n_iter
    assert np.isnan(batch.eta[2]) and batch.n_iter[2] == 0 and not batch.converged[2]
