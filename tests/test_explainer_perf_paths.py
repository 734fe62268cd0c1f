"""The optimised paths of CLIP-Dissect and LE against their straightforward definitions (issue 8)."""

import subprocess
import sys
import textwrap

import numpy as np
import torch

from neuronaudit.explainers.clip_dissect import soft_wpmi
from neuronaudit.explainers.linear import elastic_net_weights, greedy_linear_search, random_split


def _soft_wpmi_definition(sim, acts, top_k=100, scale=10.0, lam=1.0, p_start=0.998, p_end=0.97, eps=1e-7):
    """SoftWPMI straight from its definition, one neuron at a time, float32 torch (the peer's arithmetic)."""
    sim, acts = torch.from_numpy(sim), torch.from_numpy(acts)
    soft = torch.softmax(scale * sim, dim=1)
    m = min(top_k, sim.shape[0])
    top = torch.topk(acts, k=m, dim=0).indices
    p = (p_start - torch.arange(top_k, dtype=torch.float32) / top_k * (p_start - p_end))[:m, None]
    rows = [torch.log((1 + p * (soft[top[:, k]] - 1)) + eps).sum(dim=0) for k in range(acts.shape[1])]
    given = torch.stack(rows)
    prior = torch.logsumexp(given, dim=0, keepdim=True) - float(np.log(acts.shape[1]))
    return (given - lam * prior).numpy()


def test_soft_wpmi_optimised_path_is_bit_identical_to_definition():
    rng = np.random.default_rng(0)
    sim = (0.2 + 0.03 * rng.standard_normal((300, 700))).astype(np.float32)  # 700: not a multiple of 128
    acts = rng.standard_normal((300, 23)).astype(np.float32)
    want = _soft_wpmi_definition(sim, acts, top_k=40)
    for kw in ({}, {"neuron_chunk": 3, "concept_chunk": 16}, {"neuron_chunk": 1, "concept_chunk": 300},
               {"neuron_chunk": 23, "concept_chunk": 700}, {"neuron_chunk": 5, "concept_chunk": 5000}):
        got = soft_wpmi(sim, acts, top_k=40, **kw)
        assert np.array_equal(got, want), kw


def test_soft_wpmi_log_table_and_direct_logs_are_bit_identical():
    """The memo table of logarithms, the entries outside it (softmax values above table_size / 2^24, above
    1/2, or NaN) and a mixture of both give the peer's bits."""
    rng = np.random.default_rng(4)
    n, c = 260, 300
    sim = (0.2 + 0.05 * rng.standard_normal((n, c))).astype(np.float32)
    sim[:40, 7] += 1.0  # softmax > 1/2 there: s - 1 leaves [-1, -1/2]
    sim[40:120, 11:14] += 0.4  # around 0.1: above the widest table
    acts = rng.standard_normal((n, 9)).astype(np.float32)
    acts[:40, 0] += 3  # neuron 0's top images are those with s > 1/2
    soft = torch.softmax(10 * torch.from_numpy(sim), dim=1).numpy()
    assert (soft > 0.5).any() and ((soft * 2**24 >= 65535) & (soft <= 0.5)).any()
    want = _soft_wpmi_definition(sim, acts, top_k=50)
    for kw in ({}, {"table_size": 0}, {"table_size": 1}, {"table_size": 9000, "concept_chunk": 128},
               {"n_threads": 1, "neuron_chunk": 4}):
        got = soft_wpmi(sim, acts, top_k=50, **kw)
        assert np.array_equal(got, want), kw
    sim_nan = sim.copy()
    sim_nan[3, 5] = np.nan  # a NaN similarity spoils its image's row, in the peer as here
    want_nan = _soft_wpmi_definition(sim_nan, acts, top_k=50)
    assert np.array_equal(soft_wpmi(sim_nan, acts, top_k=50), want_nan, equal_nan=True)


def test_table_index_names_the_float32_value_of_s_minus_1():
    """``_table_index`` maps s to j with fl(s - 1) = -1 + j 2^-24 exactly (ties, tiny and subnormal s
    included), and to 65535 (flagged) outside [0, lim) or for s > 1/2 and NaN; the table entry T[i, j] is
    the peer's log((1 + p_i fl(s - 1)) + eps)."""
    from neuronaudit.explainers.clip_dissect import _kernel, _log_table, _rank_probabilities

    ulp = 2.0**-24
    s = np.array([0.0, 1e-45, 2.0**-26, 2.0**-25, 3 * 2.0**-25, 5 * 2.0**-25, 1e-4, 2.5e-4 + 0.5 * ulp,
                  0.00390625, 0.25, 0.5, 0.5000001, 0.9, 1.0, np.nan], dtype=np.float32)
    block = np.tile(s, (2, 1))
    block[1, :-1] = np.float32(1e-3)  # the second row is all in the table
    block[1, -1] = np.float32(2e-3)
    idx, over = np.empty(block.shape, dtype=np.uint16), np.empty(2, dtype=np.bool_)
    j_max = _kernel("table_index")(block, np.float32(65535), idx, over)
    x = (s - np.float32(1)).astype(np.float64)  # the peer's float32 s - 1, exactly
    exact = (x + 1.0) / ulp
    inside = (s <= 0.5) & (exact < 65535)
    assert np.array_equal(idx[0][inside], exact[inside].astype(np.uint16))
    assert np.all(idx[0][~inside] == 65535) and over[0] and not over[1]
    assert j_max == max(int(exact[inside].max()), int(idx[1].max()))
    assert np.all(np.float32(-1 + idx[0][inside].astype(np.float64) * ulp) == s[inside] - np.float32(1))
    over_narrow = np.empty(2, dtype=np.bool_)
    _kernel("table_index")(block, np.float32(100), idx, over_narrow)
    assert np.all(idx[1] == 65535) and over_narrow[1]  # 1e-3 * 2^24 = 16777 >= 100
    p = _rank_probabilities(10, 0.998, 0.97)
    table = _log_table(p, 20000, 1e-7)
    j = np.array([0, 1, 838, 16777, 19999])
    v = torch.from_numpy((-1 + j * ulp).astype(np.float32))
    assert torch.equal(torch.from_numpy(table[:, j]), torch.log((1 + p[:, None] * v[None, :]) + 1e-7))


def _easy(n=2000, c=30, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c))
    w = np.zeros((c, k))
    w[[1, 5, 9], 0] = [1.0, -0.7, 0.5]
    w[[2, 3], 1:] = 0.8
    return x, x @ w + 0.1 * rng.standard_normal((n, k))


def test_fista_stops_on_convergence_with_the_same_support():
    x, y = _easy()
    w_full = elastic_net_weights(x, y, n_iter=500, tol=0.0)
    w, steps = elastic_net_weights(x, y, return_n_iter=True)
    assert steps < 100  # an easy, well-conditioned problem: far fewer than the 500-step cap
    assert np.array_equal(w != 0, w_full != 0)
    np.testing.assert_allclose(w, w_full, atol=1e-5)
    # the data path (no C x C Gram, float32) reaches the same support
    w_data = elastic_net_weights(x, y, gram_max_bytes=0)
    assert np.array_equal(w_data != 0, w_full != 0)
    np.testing.assert_allclose(w_data, w_full, atol=1e-4)


def test_local_and_global_moments_agree():
    rng = np.random.default_rng(1)
    x = rng.beta(0.3, 1.5, size=(1200, 40))
    w = rng.normal(size=(40, 6)) * (rng.random((40, 6)) < 0.2)
    acts = x @ w + 0.3 * rng.normal(size=(1200, 6))
    tr, va = random_split(1200)
    ranking = np.argsort(-elastic_net_weights(x[tr], acts[tr]), axis=0).T
    g = greedy_linear_search(x, acts, ranking, tr, va, max_length=5, tolerance=0.01, width=4, moments="global")
    loc = greedy_linear_search(x, acts, ranking, tr, va, max_length=5, tolerance=0.01, width=4, moments="local")
    assert np.array_equal(g[0], loc[0])
    for a, b in zip(g[1:], loc[1:], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)


def test_le_large_vocabulary_peak_memory_is_bounded():
    """C = 4,000 concepts: the C x C approach needs 3 x 128 MB float64 matrices (Gram, train Gram, val
    covariance); the data path stays well under 100 MB of traced allocations (subprocess, tracemalloc)."""
    code = textwrap.dedent("""
        import tracemalloc
        import numpy as np
        from neuronaudit.explainers.linear import linear_explanations
        rng = np.random.default_rng(0)
        n, c, k = 1000, 4000, 8
        x = rng.beta(0.3, 1.5, size=(n, c)).astype(np.float32)
        w = rng.normal(size=(c, k)) * (rng.random((c, k)) < 0.002)
        acts = (x @ w + 0.3 * rng.normal(size=(n, k))).astype(np.float32)
        names = [f"c{i}" for i in range(c)]
        tracemalloc.start()
        res = linear_explanations(x, acts, names, glm_iters=100)
        peak = tracemalloc.get_traced_memory()[1]
        assert len(res) == k and all(len(d["terms"]) >= 1 for d in res)
        print(peak)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak = int(out.stdout.split()[-1])
    c_by_c = 4000 * 4000 * 8
    assert peak < 100e6 < c_by_c * 3, f"peak traced allocations {peak / 1e6:.0f} MB"
