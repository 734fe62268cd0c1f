"""Tests written to kill mutants of neuronaudit/studies/setting2.py (``make mutate``; equivalent
survivors are listed in docs/testing.md): output labels and schema, settings passed through, raters,
undefined pairs. The estimates themselves are pinned by tests/test_engine_reference.py."""

import re

import numpy as np
import pandas as pd
import pytest

import neuronaudit.studies.setting2 as setting2
from neuronaudit.studies.setting2 import run_setting2

LABELS = {  # aggregation -> (prior, error_model)
    "model_only": ("model", ""),
    "majority": ("", ""),
    "bragg_uniform": ("uniform", "uniform"),
    "bragg_uniform_per_input": ("uniform", "per_input"),
    "bragg_model": ("model", "uniform"),
    "bragg_model_per_input": ("model", "per_input"),
}
COLUMNS = ["model", "layer", "neuron", "concept", "concept_model", "sampler", "n", "seed", "n_raters", "aggregation",
           "prior", "error_model", "beta", "eta_hat", "n_distinct", "cost", "rho", "rho_hat", "rce", "pair",
           "no_variation"]


def _msg(text):
    return "^" + re.escape(text) + "$"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    n = 240
    lab = (rng.random((n, 4)) < 0.2).astype(float)
    acts = rng.standard_normal((n, 4)) * 0.5 + 1.5 * lab
    acts[:, 3] = 2.0  # a constant neuron: rho undefined
    guide = np.clip(0.6 * lab + 0.4 * rng.random((n, 4)), 0.0, 1.0)
    pairs = pd.DataFrame({"neuron_idx": [0, 3, 1, 2], "concept_idx": [0, 3, 1, 2], "neuron": ["a", "d", "b", "c"],
                          "concept": ["x", "w", "y", "z"]})
    return acts, lab, guide, pairs


KW = dict(ns=[5, 20], seeds=[0, 1], n_raters=(1, 2, 3), betas=(0.05, 0.3))


def test_schema_labels_and_defaults(data):
    acts, lab, guide, pairs = data
    df = run_setting2(acts, lab, guide, pairs, **KW)
    assert list(df.columns) == COLUMNS
    assert (df[["model", "layer", "concept_model"]] == "").all().all() and set(df["sampler"]) == {"mg_is"}
    for agg, (prior, em) in LABELS.items():
        sub = df[df.aggregation == agg]
        assert len(sub) and (sub["prior"] == prior).all() and (sub["error_model"] == em).all(), agg
    assert set(df.loc[df.aggregation.str.startswith("bragg_uniform"), "beta"]) == {0.05, 0.3}
    assert df.loc[~df.aggregation.str.startswith("bragg_uniform"), "beta"].isna().all()
    assert set(df["n_raters"]) == {0, 1, 2, 3} and (df.loc[df.aggregation == "model_only", "n_raters"] == 0).all()
    assert df.loc[df.aggregation.isin(["model_only", "majority", "bragg_uniform_per_input", "bragg_model_per_input"]),
                  "eta_hat"].isna().all()
    em = df[df.aggregation.isin(["bragg_uniform", "bragg_model"])]
    assert (em.loc[em.n_raters == 1, "eta_hat"] == 0.2).all()  # eta_single_rater
    assert em.loc[em.n_raters > 1, "eta_hat"].between(1e-6, 0.5).all() and em["eta_hat"].nunique() > 3
    # the neuron / concept names follow each row's pair
    names = dict(zip(range(4), zip(pairs.neuron, pairs.concept, strict=True), strict=True))
    assert all(names[p] == (nn, cc) for p, nn, cc in zip(df.pair, df.neuron, df.concept, strict=True))
    # the constant neuron's rows are NaN and not flagged as "no variation"
    bad = df[df.pair == 1]
    assert bad[["rho", "rho_hat", "rce"]].isna().all().all() and not bad["no_variation"].any()
    assert df.loc[df.pair != 1, "rho_hat"].notna().all()
    assert df.equals(run_setting2(acts, lab, guide, pairs, rng=0, chunk_size=8, **KW))  # defaults; reproducible
    assert not df["rho_hat"].equals(run_setting2(acts, lab, guide, pairs, rng=1, **KW)["rho_hat"])
    assert not df["rho_hat"].equals(run_setting2(acts, lab, guide, pairs, chunk_size=3, **KW)["rho_hat"])


def test_labels_gamma_and_eta_settings(data):
    acts, lab, guide, pairs = data
    kw = dict(ns=[6], seeds=[0], n_raters=(3,), model="m", layer="l", concept_model="cm")
    df = run_setting2(acts, lab, guide, pairs.head(1), gamma=0.1, eta=0.07, eta_single_rater=0.3, **kw)
    assert set(df["model"]) == {"m"} and set(df["layer"]) == {"l"} and set(df["concept_model"]) == {"cm"}
    assert set(df["sampler"]) == {"mg_is(gamma=0.1)"}
    assert set(df.loc[df.aggregation.isin(["bragg_uniform", "bragg_model"]), "eta_hat"]) == {0.07}
    one = run_setting2(acts, lab, guide, pairs.head(1), eta_single_rater=0.3, **{**kw, "n_raters": (1,)})
    assert set(one.loc[one.aggregation == "bragg_model", "eta_hat"]) == {0.3}


def test_rater_models_and_their_settings(data):
    acts, lab, guide, pairs = data
    p = pairs.iloc[[0, 2]]
    kw = dict(ns=[10, 30], seeds=[0, 1], n_raters=(1, 3))

    # error-free raters: the majority of r raters is the ground truth, so its estimate is that of c_true
    perfect_u = run_setting2(acts, lab, guide, p, rater_model="uniform", eta_true=0.0, **kw)
    perfect_b = run_setting2(acts, lab, guide, p, rater_model="per_input", rater_beta=(1e-6, 1e6), **kw)
    for df in (perfect_u, perfect_b):
        m1 = df[(df.aggregation == "majority") & (df.n_raters == 1)]["rho_hat"].to_numpy()
        m3 = df[(df.aggregation == "majority") & (df.n_raters == 3)]["rho_hat"].to_numpy()
        np.testing.assert_allclose(m1, m3, rtol=1e-12)
    np.testing.assert_allclose(perfect_u["rho_hat"], perfect_b["rho_hat"], rtol=1e-12)  # same draws, same truth
    # raters who are always wrong: the majority is 1 - truth, (mostly) the opposite sign
    flipped = run_setting2(acts, lab, guide, p, rater_model="uniform", eta_true=1.0, **kw)
    a = perfect_u[perfect_u.aggregation == "majority"]["rho_hat"].to_numpy()
    b = flipped[flipped.aggregation == "majority"]["rho_hat"].to_numpy()
    assert np.mean(np.sign(a) == -np.sign(b)) > 0.7
    # noisy raters differ between the models, and the default model is per_input with Beta(0.75, 2.5)
    d = run_setting2(acts, lab, guide, p, **kw)
    assert d.equals(run_setting2(acts, lab, guide, p, rater_model="per_input", rater_beta=(0.75, 2.5), **kw))
    assert not d["rho_hat"].equals(run_setting2(acts, lab, guide, p, rater_model="uniform", **kw)["rho_hat"])
    assert not d["rho_hat"].equals(run_setting2(acts, lab, guide, p, rater_beta=(0.75, 5.0), **kw)["rho_hat"])
    assert not d["rho_hat"].equals(run_setting2(acts, lab, guide, p, rater_beta=(2.0, 2.5), **kw)["rho_hat"])
    u = run_setting2(acts, lab, guide, p, rater_model="uniform", eta_true=0.3, **kw)
    assert u.equals(run_setting2(acts, lab, guide, p, rater_model="uniform", eta_true=0.3, **kw))
    assert not u["rho_hat"].equals(run_setting2(acts, lab, guide, p, rater_model="uniform", **kw)["rho_hat"])


def test_an_undefined_pair_does_not_change_its_chunk_neighbours(data):
    """With uniform raters the first pair of a chunk gets the same uniforms whatever its neighbour is,
    so an undefined neighbour (drawn uniformly, reported NaN) leaves its results unchanged."""
    acts, lab, guide, pairs = data
    kw = dict(ns=[8, 25], seeds=[0, 1], n_raters=(3,), rater_model="uniform", eta_true=0.1)
    with_bad = run_setting2(acts, lab, guide, pairs.iloc[[0, 1]], **kw)
    with_good = run_setting2(acts, lab, guide, pairs.iloc[[0, 2]], **kw)
    a = with_bad[with_bad.pair == 0].reset_index(drop=True)
    b = with_good[with_good.pair == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_errors(data):
    acts, lab, guide, pairs = data
    with pytest.raises(ValueError, match=_msg("rater_model must be 'uniform' or 'per_input', got 'beta'")):
        run_setting2(acts, lab, guide, pairs, rater_model="beta")
    soft = lab.copy()
    soft[0, 0] = 0.5
    with pytest.raises(ValueError, match=_msg("Setting 2 needs binary ground truth c_true")):
        run_setting2(acts, soft, guide, pairs)
    with pytest.raises(ValueError, match=_msg("sample sizes must be >= 1")):
        run_setting2(acts, lab, guide, pairs, ns=[0, 4])


def test_prior_eps_reaches_both_model_priors(monkeypatch, data):
    acts, lab, guide, pairs = data
    seen = {}
    for name in ("bragg_posterior", "bragg_posterior_per_input"):
        orig = getattr(setting2, name)

        def rec(*args, _orig=orig, _name=name, **kwargs):
            prior = kwargs.get("prior")
            if np.ndim(prior):
                seen.setdefault(_name, []).append((np.min(prior), np.max(prior), kwargs.get("eps")))
            return _orig(*args, **kwargs)

        monkeypatch.setattr(setting2, name, rec)
    run_setting2(acts, lab, guide, pairs.head(1), ns=[30], seeds=[0], n_raters=(3,), prior_eps=0.2)
    for name in ("bragg_posterior", "bragg_posterior_per_input"):
        lo, hi, eps = seen[name][0]
        assert lo >= 0.2 and hi <= 0.8 and eps == 0.2, name


def test_eta_em_histogram_of_a_design_without_top_counts(data):
    """A design whose last segment brings no input rated 'yes' by every rater: the histogram still has
    a bin for every (row, segment, yes-count)."""
    acts, lab, guide, pairs = data
    rng = np.random.default_rng(0)
    c = np.zeros((240, 1))
    c[:3, 0] = 1
    a = rng.standard_normal((240, 1)) + c
    g = np.full((240, 1), 0.5)
    p = pd.DataFrame({"neuron_idx": [0], "concept_idx": [0], "neuron": ["a"], "concept": ["x"]})
    df = run_setting2(a, c, g, p, ns=[4, 8], seeds=[0], n_raters=(2,), rater_model="uniform", eta_true=0.0, rng=3)
    assert np.isfinite(df.loc[df.aggregation == "bragg_uniform", "eta_hat"]).all()
    assert (df.loc[df.aggregation == "majority", "no_variation"]).any()


def test_one_input_designs_are_allowed(data):
    acts, lab, guide, pairs = data
    df = run_setting2(acts, lab, guide, pairs.head(1), ns=[1, 2], seeds=[0], n_raters=(3,))
    assert set(df["n"]) == {1, 2} and (df.loc[df.n == 1, "n_distinct"] == 1).all()
    assert df.loc[df.n == 1, "no_variation"].all()  # one input cannot show variation in c
