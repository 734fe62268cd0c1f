import numpy as np

from neuronaudit.explainers.linear import (
    best_single_concept,
    elastic_net_weights,
    greedy_linear_search,
    greedy_search_reference,
    label_presence,
    linear_explanations,
    linear_explanations_table,
    random_split,
)


def _soft_concepts(n=3000, c=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.beta(0.3, 1.5, size=(n, c)).astype(np.float32), rng


def test_recovers_planted_sparse_weights():
    x, rng = _soft_concepts()
    acts = np.stack([
        2.0 * x[:, 7] + 0.01 * rng.normal(size=len(x)),
        1.5 * x[:, 3] + 0.8 * x[:, 11] + 0.6 * x[:, 20] + 0.3 + 0.01 * rng.normal(size=len(x)),
    ], axis=1)
    names = [f"c{i}" for i in range(x.shape[1])]
    res = linear_explanations(x, acts, names)
    assert [t[1] for t in res[0]["terms"]] == ["c7"]
    np.testing.assert_allclose(res[0]["terms"][0][0], 2.0, atol=0.02)
    got = {c: w for w, c in res[1]["terms"]}
    assert set(got) == {"c3", "c11", "c20"}
    np.testing.assert_allclose([got["c3"], got["c11"], got["c20"]], [1.5, 0.8, 0.6], atol=0.02)
    np.testing.assert_allclose(res[1]["bias"], 0.3, atol=0.02)
    assert res[1]["terms"][0][1] == "c3"  # ordered by weight, largest first


def test_vectorised_greedy_matches_per_neuron_loop():
    x, rng = _soft_concepts(n=1500, c=25, seed=1)
    w = rng.normal(size=(25, 8)) * (rng.random((25, 8)) < 0.2)
    acts = x @ w + 0.3 * rng.normal(size=(1500, 8))
    tr, va = random_split(1500)
    ranking = np.argsort(-elastic_net_weights(x[tr], acts[tr]), axis=0).T
    sel, sel_w, bias, corr = greedy_linear_search(x, acts, ranking, tr, va, max_length=5, tolerance=0.01, width=4)
    for k in range(8):
        ref_sel, ref_w, ref_b, ref_corr = greedy_search_reference(x, acts[:, k], ranking[k], tr, va, 5, 0.01, 4)
        assert list(sel[k][sel[k] >= 0]) == ref_sel
        np.testing.assert_allclose(corr[k], ref_corr, atol=1e-6)
        np.testing.assert_allclose(sel_w[k][: len(ref_sel)], ref_w, atol=1e-5)
        np.testing.assert_allclose(bias[k], ref_b, atol=1e-5)


def test_label_presence_and_single_concept():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, size=2000)
    pres, names = label_presence(labels, [f"class{i}" for i in range(10)], {"animal": [1, 2, 3], "huge": list(range(9))},
                                 max_subclasses=5)
    assert names[-1] == "animal" and pres.shape == (2000, 11)
    assert np.array_equal(pres[:, 10], np.isin(labels, [1, 2, 3]).astype(np.float32))
    acts = (labels == 7)[:, None] + 0.3 * rng.normal(size=(2000, 1))
    idx, corr, got = best_single_concept(pres, acts, names)
    assert got[0] == "class7" and corr[0] > 0.5


def test_table_schema():
    x, rng = _soft_concepts(n=800, c=15, seed=3)
    acts = x[:, :3] + 0.05 * rng.normal(size=(800, 3))
    df = linear_explanations_table(x, acts, [f"concept {i}" for i in range(15)], method="le_siglip", max_length=3)
    assert list(df.columns) == ["neuron", "method", "explanation", "structured", "length", "params", "source_score"]
    assert (df["length"] >= 1).all() and (df["source_score"] > 0.9).all()
