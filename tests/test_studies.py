import numpy as np
import pytest

from neuronaudit.studies.setting1 import (
    alpha_sweep,
    auc_bin_table,
    gamma_sweep,
    run_setting1,
    select_pairs,
    summary_table,
)
from neuronaudit.studies.setting2 import eta_from_histograms, run_setting2


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, k, t = 3000, 6, 10
    lab = (rng.random((n, t)) < 0.08).astype(float)
    acts = rng.standard_normal((n, k)) * 0.6 + 1.5 * lab[:, :k]
    guide = np.clip(0.6 * lab + 0.4 * rng.random((n, t)), 0.005, 0.995)
    pairs = select_pairs(acts, lab, n_random=4, seed=1, neuron_names=[f"u{i}" for i in range(k)])
    return acts, lab, guide, pairs


def test_select_pairs(data):
    acts, lab, _, pairs = data
    best = pairs[pairs.kind == "best"]
    assert (best["concept_idx"].to_numpy() == np.arange(6)).all()
    assert (pairs.kind == "random").sum() == 4
    assert not pairs.duplicated(["neuron_idx", "concept_idx"]).any()
    assert pairs["neuron"].iloc[0] == "u0"


def test_setting1_outputs_and_table(data):
    acts, lab, guide, pairs = data
    df = run_setting1(acts, lab, guide, pairs, model="rn50", layer="layer4", concept_model="siglip", ns=[50, 180], seeds=range(6))
    for col in ["model", "layer", "neuron", "concept", "concept_model", "sampler", "n", "seed", "rho", "rho_hat", "rce"]:
        assert col in df
    assert len(df) == len(pairs) * 3 * 2 * 6
    tab = auc_bin_table(df, n=180)
    assert set(tab["sampler"]) == {"uniform", "mg_is", "ag_is"}
    s = summary_table(df[df.n == 180], ["sampler"], "rce")
    assert list(s.columns) == ["sampler", "mean", "sem", "count", "mean_pm_sem"] and "±" in s["mean_pm_sem"].iloc[0]
    g = gamma_sweep(acts, lab, guide, pairs.head(3), gammas=(0.0, 0.2), ns=[50], seeds=range(2))
    assert set(g["gamma"]) == {0.0, 0.2}
    a = alpha_sweep(acts, lab, guide, pairs.head(3), alphas=(1, 2), ns=[50], seeds=range(2))
    assert set(a["alpha"].dropna()) == {1.0, 2.0}


def test_setting2_outputs(data):
    acts, lab, guide, pairs = data
    df = run_setting2(acts, lab, guide, pairs.head(4), ns=[50, 180], seeds=range(4), n_raters=(1, 3), betas=(0.05, 0.2))
    aggs = set(df["aggregation"])
    assert aggs == {"model_only", "majority", "bragg_uniform", "bragg_model", "bragg_uniform_per_input", "bragg_model_per_input"}
    three = df[df.n_raters == 3]
    assert np.allclose(three["cost"], three["n_distinct"] * 3 * 0.004)
    assert (df.loc[df.aggregation == "model_only", "cost"] == 0).all()
    assert set(df.loc[df.aggregation == "bragg_uniform", "beta"]) == {0.05, 0.2}
    est = df.loc[(df.aggregation == "bragg_uniform") & (df.n_raters == 3), "eta_hat"]
    assert est.between(0.05, 0.45).all()
    assert np.isfinite(df["rce"]).all()


def test_em_histogram_recovers_eta():
    rng = np.random.default_rng(3)
    c = rng.random(5000) < 0.4
    yes = ((c[:, None] ^ (rng.random((5000, 5)) < 0.15)).sum(axis=1))
    hist = np.bincount(yes, minlength=6)[None, :]
    eta = eta_from_histograms(hist, 5)
    assert eta[0] == pytest.approx(0.15, abs=0.01)
