import numpy as np

from neuronaudit.explainers.clip_dissect import clip_dissect, soft_wpmi, soft_wpmi_reference


def _planted(n=400, c=30, k=6, seed=0):
    rng = np.random.default_rng(seed)
    sim = rng.normal(0.2, 0.03, size=(n, c)).astype(np.float32)
    acts = rng.normal(size=(n, k)).astype(np.float32)
    # neuron 0 fires on images where concept 7 is similar; neuron 1 on concept 3
    sim[:, 7] += 0.1 * (acts[:, 0] > 1.0)
    sim[:, 3] += 0.1 * (acts[:, 1] > 1.0)
    return sim, acts


def test_soft_wpmi_matches_per_neuron_loop():
    sim, acts = _planted()
    fast = soft_wpmi(sim, acts, top_k=50, neuron_chunk=2)
    ref = soft_wpmi_reference(sim, acts, top_k=50)
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-3)


def test_soft_wpmi_default_parameters_match_loop():
    sim, acts = _planted(n=300, c=12, k=4, seed=3)
    np.testing.assert_allclose(soft_wpmi(sim, acts), soft_wpmi_reference(sim, acts), rtol=1e-4, atol=1e-3)


def test_clip_dissect_finds_planted_concepts_and_top_k():
    sim, acts = _planted()
    names = [f"c{i}" for i in range(sim.shape[1])]
    res = clip_dissect(sim, acts, concepts=names, n_best=3, top_k=50)
    assert res["concepts"][0, 0] == "c7"
    assert res["concepts"][1, 0] == "c3"
    assert res["score"].shape == (6, 3)
    assert np.all(np.diff(res["score"], axis=1) <= 0)
