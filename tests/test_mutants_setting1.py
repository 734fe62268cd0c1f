"""Tests written to kill mutants of neuronaudit/studies/setting1.py (``make mutate``; equivalent
survivors are listed in docs/testing.md): pair selection, labels, pass-through of settings, Table 4 bins."""

import re

import numpy as np
import pandas as pd
import pytest

from neuronaudit.sampling import sampling_grid
from neuronaudit.scoring import pairwise_correlation
from neuronaudit.studies.setting1 import (
    alpha_sweep,
    auc_bin_table,
    gamma_sweep,
    run_setting1,
    select_pairs,
    summary_table,
)


def _msg(text):
    return "^" + re.escape(text) + "$"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n, k, t = 400, 4, 6
    lab = (rng.random((n, t)) < 0.15).astype(float)
    acts = rng.standard_normal((n, k)) * 0.5 + 1.5 * lab[:, :k]
    guide = np.clip(0.6 * lab + 0.4 * rng.random((n, t)), 0.01, 0.99)
    return acts, lab, guide


def test_select_pairs_defaults_names_and_values(data):
    acts, lab, _ = data
    p = select_pairs(acts, lab)  # defaults: no random pairs
    assert list(p.columns) == ["neuron_idx", "concept_idx", "neuron", "concept", "rho", "kind"]
    assert list(p.index) == list(range(4)) and (p["kind"] == "best").all()
    np.testing.assert_array_equal(p["neuron"], np.arange(4))
    np.testing.assert_array_equal(p["concept"], p["concept_idx"])
    corr = pairwise_correlation(acts, lab)
    np.testing.assert_allclose(p["rho"], corr[p["neuron_idx"], p["concept_idx"]], rtol=1e-12)
    np.testing.assert_array_equal(p["concept_idx"], np.argmax(corr, axis=1))
    named = select_pairs(acts, lab, n_random=3, neuron_names=list("abcd"), concept_names=[f"c{i}" for i in range(6)])
    assert named["neuron"].tolist()[:4] == list("abcd")
    assert named["concept"].tolist() == [f"c{i}" for i in named["concept_idx"]]
    assert list(named.index) == list(range(7))
    assert select_pairs(acts, lab, n_random=3).equals(select_pairs(acts, lab, n_random=3, seed=0))
    with pytest.raises(ValueError, match=_msg("expected 6 names, got 2")):
        select_pairs(acts, lab, concept_names=["x", "y"])


def test_select_pairs_min_positives_and_unusable_concepts():
    rng = np.random.default_rng(0)
    n = 200
    lab = np.zeros((n, 3))
    lab[:2, 0] = 1  # 2 positives: the perfect match of neuron 0, usable only with min_positives <= 2
    lab[:, 1] = rng.random(n) < 0.3
    lab[0, 2] = 1  # 1 positive
    acts = np.column_stack([lab[:, 0] * 5 + 0.01 * rng.standard_normal(n), rng.standard_normal(n)])
    assert select_pairs(acts, lab)["concept_idx"].tolist()[0] == 0  # default min_positives = 1
    assert select_pairs(acts, lab, min_positives=2)["concept_idx"].tolist()[0] == 0
    p = select_pairs(acts, lab, min_positives=3)
    assert p["concept_idx"].tolist() == [1, 1]  # concepts 0 and 2 have too few positives
    lab2 = lab.copy()
    lab2[:, 2] = 1.0  # constant: NaN correlation, never chosen
    acts2 = np.column_stack([acts[:, 1], acts[:, 1] + lab2[:, 1]])
    assert select_pairs(acts2, lab2, min_positives=1)["concept_idx"].tolist()[1] == 1


def test_random_pairs_are_distinct_from_the_best_and_from_each_other(data):
    acts, lab, _ = data
    total = 4 * 6
    p = select_pairs(acts, lab, n_random=total, seed=3)  # asks for more than there are
    assert (p["kind"] == "random").sum() == total - 4
    assert not p.duplicated(["neuron_idx", "concept_idx"]).any()
    p2 = select_pairs(acts, lab, n_random=5, seed=3)
    assert (p2["kind"] == "random").sum() == 5 and not p2.duplicated(["neuron_idx", "concept_idx"]).any()
    assert not p2.equals(select_pairs(acts, lab, n_random=5, seed=4))
    assert p2["rho"].notna().all()


def test_run_setting1_passes_every_setting_through(data):
    acts, lab, guide = data
    pairs = select_pairs(acts, lab, n_random=2, seed=0).iloc[::-1]  # a shuffled index
    kw = dict(ns=[10, 30], seeds=[3, 4])
    df = run_setting1(acts, lab, guide, pairs, **kw)
    assert (df["model"] == "").all() and (df["layer"] == "").all() and (df["concept_model"] == "").all()
    p = pairs.reset_index(drop=True)
    grid = sampling_grid(acts, lab, guide, rng=0, chunk_size=32, neuron_index=p["neuron_idx"].to_numpy(),
                         concept_index=p["concept_idx"].to_numpy(), **kw)
    np.testing.assert_array_equal(df["rho_hat"], grid["rho_hat"])
    np.testing.assert_array_equal(df["pair"], grid["pair"])
    np.testing.assert_array_equal(df["neuron"], p["neuron"].to_numpy()[grid["pair"]])
    for setting in (dict(rng=5), dict(estimator="self_normalised"), dict(chunk_size=1)):
        got = run_setting1(acts, lab, guide, pairs, model="m", layer="l", concept_model="cm", **kw, **setting)
        want = sampling_grid(acts, lab, guide, neuron_index=p["neuron_idx"].to_numpy(),
                             concept_index=p["concept_idx"].to_numpy(), **kw, **setting)
        np.testing.assert_array_equal(got["rho_hat"], want["rho_hat"])
        assert set(got["model"]) == {"m"} and set(got["layer"]) == {"l"} and set(got["concept_model"]) == {"cm"}
    assert not df["rho_hat"].equals(run_setting1(acts, lab, guide, pairs, rng=1, **kw)["rho_hat"])


def test_sweeps_pass_settings_through(data):
    acts, lab, guide = data
    pairs = select_pairs(acts, lab).head(2)
    g = gamma_sweep(acts, lab, guide, pairs, gammas=(0.1,), ns=[7], seeds=[2])
    assert set(g["n"]) == {7} and set(g["seed"]) == {2} and set(g["sampler"]) == {"mg_is(gamma=0.1)"}
    a = alpha_sweep(acts, lab, guide, pairs, alphas=(3,), ns=[7], seeds=[2], rng=4)
    assert set(a["n"]) == {7} and set(a["seed"]) == {2}
    assert set(a["sampler"]) == {"uniform", "mg_is", "ag_is(alpha=3)"}
    ref = run_setting1(acts, lab, guide, pairs, samplers=[{"name": "uniform"}], ns=[7], seeds=[2], rng=4)
    np.testing.assert_array_equal(a.loc[a.sampler == "uniform", "rho_hat"], ref["rho_hat"])


def _binned(aucs, n=180):
    rows = []
    for pair, auc in enumerate(aucs):
        for seed in (0, 1):
            rows.append({"sampler": "uniform", "n": n, "pair": pair, "seed": seed, "rho": 0.5,
                         "rce": 0.1 * pair + 0.01 * seed, "n_distinct": n, "guide_auc": auc})
    return pd.DataFrame(rows)


def test_auc_bin_table_bins_edges_and_defaults():
    aucs = [0.3, 0.6, 0.8, 0.95, 0.99, 1.0, np.nan]
    df = pd.concat([_binned(aucs), _binned(aucs, n=50)])
    t = auc_bin_table(df)  # default n = 180
    assert list(t.columns[:2]) == ["sampler", "auc_bin"]
    counts = dict(zip(t["auc_bin"].astype(str), t["n_pairs"], strict=True))
    # left-closed bins, the last one closed at 1; NaN AUC left out
    assert counts == {"0-0.6": 1, "0.6-0.8": 1, "0.8-0.95": 1, "0.95-0.99": 1, "0.99-1": 2}
    first = t[t["auc_bin"].astype(str) == "0-0.6"].iloc[0]
    assert first["rce"] == pytest.approx(0.005)
    assert auc_bin_table(df, n=50)["n_pairs"].sum() == 6
    with pytest.raises(ValueError, match=_msg("no rows with n == 7; available: [np.int64(50), np.int64(180)]")):
        auc_bin_table(df, n=7)
    with pytest.raises(KeyError, match="df has no guide_auc column \\(use run_setting1\\)"):
        auc_bin_table(df.drop(columns="guide_auc"))
    # the floor is passed on: |rho| = 0.5 is excluded by floor 0.6
    assert auc_bin_table(df, floor=0.6)["n_pairs"].sum() == 0
    # custom integer bins
    t2 = auc_bin_table(df, bins=[0, 1])
    assert t2["auc_bin"].astype(str).tolist() == ["0-1"] and t2["n_pairs"].tolist() == [6]


def test_summary_table_text_and_groups():
    df = pd.DataFrame({"g": pd.Categorical(["a", "a", "b"], categories=["a", "b", "c"]), "v": [1.0, 2.0, 4.0]})
    s = summary_table(df, ["g"], "v")
    assert s["g"].tolist() == ["a", "b"]  # unobserved categories are not listed
    assert s["mean_pm_sem"].tolist()[0] == f"1.5000 ± {np.std([1, 2], ddof=1) / np.sqrt(2):.4f}"
    assert summary_table(df, ["g"], "v", digits=1)["mean_pm_sem"].tolist()[0] == "1.5 ± 0.5"
    assert s["count"].tolist() == [2, 1]
