import numpy as np
import pytest

from neuronaudit.explainers import linear
from neuronaudit.explainers.linear import (
    best_single_concept,
    elastic_net_weights,
    greedy_linear_search,
    greedy_search_reference,
    label_presence,
    linear_explanations,
    linear_explanations_table,
    prepare_presence,
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


@pytest.mark.parametrize("path", ["gram+global", "data+local"])
def test_prepared_presence_gives_the_unprepared_rows_bit_for_bit(path, monkeypatch):
    """One prepare_presence reused by every tile of neurons = each tile's own setup, to the last bit,
    on the Gram / global-moments path (small C) and on the data / local-moments path (forced)."""
    x, rng = _soft_concepts(n=600, c=30, seed=3)
    w = rng.normal(size=(30, 12)) * (rng.random((30, 12)) < 0.2)
    acts = (x @ w + 0.3 * rng.normal(size=(600, 12))).astype(np.float32)
    names = [f"c{i}" for i in range(30)]
    kw = {"max_length": 4, "width": 5}
    if path == "data+local":
        monkeypatch.setattr(linear, "GRAM_MAX_BYTES", 0.0)
        orig = linear.greedy_linear_search
        monkeypatch.setattr(linear, "greedy_linear_search", lambda *a, **k: orig(*a, **{**k, "moments": "local"}))
    prep = prepare_presence(x)
    assert prep.use_gram == (path == "gram+global")
    for a, b in [(0, 5), (5, 10), (10, 12)]:
        assert linear_explanations(x, acts[:, a:b], names, prepared=prep, **kw) == \
            linear_explanations(x, acts[:, a:b], names, **kw)
    if path == "gram+global":
        assert "parts" in prep._global  # the global moments were built once and kept


def test_prepared_presence_refuses_other_arguments():
    x, rng = _soft_concepts(n=200, c=10, seed=4)
    acts = rng.normal(size=(200, 2))
    names = [f"c{i}" for i in range(10)]
    prep = prepare_presence(x)
    with pytest.raises(ValueError, match="filter_concepts"):
        linear_explanations(x, acts, names, prepared=prep, filter_concepts=False)
    with pytest.raises(ValueError, match="seed"):
        linear_explanations(x, acts, names, prepared=prep, seed=1)
    with pytest.raises(ValueError, match="not the presence"):
        linear_explanations(x[::-1].copy(), acts, names, prepared=prep)
    tr, va = random_split(200, seed=1)
    with pytest.raises(ValueError, match="train / val"):
        linear_explanations(x, acts, names, tr, va, prepared=prep)
    # an equal copy (not the same object) is accepted
    assert linear_explanations(x.copy(), acts, names, prepared=prep) == linear_explanations(x, acts, names)
