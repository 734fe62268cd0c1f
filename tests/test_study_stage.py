"""Method-study glue (neuronaudit.studies.stage) on synthetic pipeline files, and the study outputs
of the tiny end-to-end run (docs/studies.md)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuronaudit.io import read_matrix, read_table, write_matrix, write_table
from neuronaudit.studies.stage import (
    load_probing_set,
    setting1_job,
    setting1_tables,
    setting2_job,
    setting2_tables,
    study_pairs,
)

SETTINGS1 = {
    "split": "val",
    "min_positives": 5,
    "samplers": ["uniform", "mg_is", "ag_is"],
    "ns": [25, 100],
    "seeds": 6,
    "gamma": 0.2,
    "alpha": 2.0,
    "gammas": [0.1, 0.5],
    "alphas": [1.0, 2.0],
    "sweep_ns": None,
    "sweep_seeds": 3,
    "estimator": "unbiased",
    "rng": 0,
}
SETTINGS2 = {
    "ns": [25, 100],
    "seeds": 3,
    "n_raters": [1, 3],
    "beta": 0.05,
    "betas": [0.05, 0.2],
    "rater_model": "per_input",
    "rater_eta": 0.2,
    "eta": None,
    "eta_single_rater": 0.2,
    "gamma": 0.2,
    "estimator": "unbiased",
    "rng": 0,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A pipeline-format study: 400 images (300 val), 4 concepts, 6 neurons, a good and a random guide."""
    d = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    n, concepts = 400, ["cat", "dog", "wheel", "red"]
    ids = np.array([f"img{i:04d}" for i in range(n)])
    split = np.where(np.arange(n) < 300, "val", "train")
    y = (rng.random((n, len(concepts))) < [0.2, 0.1, 0.3, 0.5]).astype(np.int8)
    write_table(
        pd.DataFrame({"image_id": ids, "source": "x", "label": "c", "split": split}), d / "manifest.parquet"
    )
    long = pd.DataFrame(
        {
            "image_id": np.repeat(ids, len(concepts)),
            "concept": np.tile(concepts, n),
            "kind": "class",
            "present": y.ravel(),
        }
    )
    write_table(long, d / "labels.parquet")
    acts = np.column_stack([y[:, j % 4] * 2.0 + rng.normal(size=n) for j in range(6)]).astype(np.float32)
    acts[:, 5] = np.maximum(acts[:, 5], 0)
    keep = np.arange(n) != 7  # one undecodable image: no activation row
    write_matrix(
        d / "acts.parquet", ids[keep], {"activation": acts[keep]}, columns=[str(i) for i in range(6)]
    )
    good = np.clip(0.8 * y + 0.1 + 0.05 * rng.random(y.shape), 0, 1)
    bad = rng.random(y.shape)
    good[3] = np.nan  # a guide's NaN row is set to 0
    (d / "good").mkdir()
    (d / "bad").mkdir()
    write_matrix(d / "good/labels.parquet", ids, {"probability": good, "score": good}, columns=concepts)
    write_matrix(
        d / "bad/labels.parquet", ids, {"probability": bad, "score": bad}, columns=concepts[::-1] + ["extra"]
    )
    return d


def _presence(d):
    return {"good": str(d / "good/labels.parquet"), "bad": str(d / "bad/labels.parquet")}


def test_load_probing_set_aligns(files):
    ps = load_probing_set(
        files / "manifest.parquet", files / "labels.parquet", files / "acts.parquet", _presence(files)
    )
    assert len(ps.image_ids) == 299 and "img0007" not in set(ps.image_ids)
    assert ps.acts.shape == (299, 6) and ps.y.shape == (299, 4)
    assert ps.concepts == ["cat", "dog", "wheel", "red"]
    assert np.all(np.isfinite(ps.guides["good"])) and ps.guides["good"][3].max() == 0
    # the bad guide's columns are reordered back to the concepts' order
    bad = read_table(files / "labels.parquet")
    assert ps.guides["bad"].shape == (299, 4) and not bad.empty


@pytest.fixture(scope="module")
def pairs(files):
    return study_pairs(
        files / "manifest.parquet",
        files / "labels.parquet",
        {("m", "l"): str(files / "acts.parquet")},
        _presence(files),
        n_random_pairs=5,
        setting2_pairs=3,
        seed=0,
    )


def test_study_pairs(pairs):
    assert list(pairs["pair_id"]) == list(range(len(pairs)))
    best = pairs[pairs["kind"] == "best"]
    assert len(best) == 6 and (pairs["kind"] == "random").sum() == 5
    # neuron j was built from concept j % 4
    assert list(best["concept"]) == ["cat", "dog", "wheel", "red", "cat", "dog"]
    assert pairs["setting2"].sum() == 3 and (pairs.loc[pairs["setting2"], "rho"].abs() >= 0.05).all()
    assert not pairs.duplicated(["neuron", "concept"]).any()


def test_neurons_per_layer_subset(files):
    p = study_pairs(
        files / "manifest.parquet",
        files / "labels.parquet",
        {("m", "l"): str(files / "acts.parquet")},
        _presence(files),
        neurons_per_layer=3,
        seed=1,
    )
    assert len(p) == 3 and p["neuron"].nunique() == 3


@pytest.fixture(scope="module")
def setting1(files, pairs):
    ps_by = {
        cm: load_probing_set(
            files / "manifest.parquet", files / "labels.parquet", files / "acts.parquet", {cm: path}
        )
        for cm, path in _presence(files).items()
    }
    main = pd.concat([setting1_job(ps, pairs, "m", "l", cm, SETTINGS1) for cm, ps in ps_by.items()])
    gamma = setting1_job(ps_by["good"], pairs, "m", "l", "good", SETTINGS1, study="gamma")
    alpha = setting1_job(ps_by["good"], pairs, "m", "l", "good", SETTINGS1, study="alpha")
    s2 = pd.concat([setting2_job(ps, pairs, "m", "l", cm, SETTINGS2) for cm, ps in ps_by.items()])
    return main, gamma, alpha, s2


def test_setting1_job(setting1, pairs):
    main, gamma, alpha, _ = setting1
    assert len(main) == 2 * len(pairs) * 3 * 2 * 6
    assert set(main["sampler"]) == {"uniform", "mg_is", "ag_is"}
    assert set(main["pair"]) == set(pairs["pair_id"]) and np.isfinite(main["rce"]).all()
    assert set(gamma["gamma"]) == {0.1, 0.5} and gamma["seed"].nunique() == 3
    assert set(alpha["alpha"].dropna()) == {1.0, 2.0}
    good_auc = main.loc[main["concept_model"] == "good", "guide_auc"]
    assert (good_auc > 0.95).all()


def test_setting2_rows(setting1, pairs):
    s2 = setting1[3]
    sub = pairs[pairs["setting2"]]
    assert set(s2["pair"]) == set(sub["pair_id"])
    assert {"model_only", "majority", "bragg_uniform", "bragg_model"} <= set(s2["aggregation"])
    assert (s2.loc[s2["aggregation"] == "model_only", "cost"] == 0).all()
    r3 = s2[s2["n_raters"] == 3]
    assert np.allclose(r3["cost"], r3["n_distinct"] * 3 * 0.004)


def test_tables(setting1):
    main, gamma, alpha, s2 = setting1
    t1 = setting1_tables(main, gamma, alpha, table_n=180)
    t4 = t1["table4_auc_bins"]
    assert (t4["n"] == 100).all()  # nearest available n to 180
    assert len(t4) == 2 * 2 * 5  # guides x samplers x bins, empty bins listed
    assert t4["n_pairs"].sum() > 0
    assert set(t1["setting1_rce"]["sampler"]) == {"uniform", "mg_is", "ag_is"}
    t2 = setting2_tables(s2, beta=0.05)
    assert set(t2["setting2_prior"]["role"]) == {"model-only", "hybrid", "human", "majority"}
    assert set(t2["setting2_beta"]["beta"]) == {0.05, 0.2}
    assert set(t2["setting2_error_model"]["error_model"]) == {"uniform", "per_input"}
    cov = t1.pop("setting1_coverage")  # the intervals' coverage (no RCE summary columns)
    assert set(cov["sampler"]) == {"uniform", "mg_is", "ag_is"} and (cov["intervals"] > 0).all()
    assert cov["coverage"].between(0, 1).all() and (cov["covered"] <= cov["intervals"]).all()
    for t in [*t1.values(), *t2.values()]:
        assert len(t) and t["mean_pm_sem"].str.contains("±").any()
        # how often a sample showed no variation in c (rho_hat = 0 reported), per group
        assert {"n_no_variation", "share_no_variation"} <= set(t.columns)
        assert (t["n_no_variation"] >= 0).all() and t["share_no_variation"].dropna().between(0, 1).all()
    assert main["no_variation"].dtype == bool and s2["no_variation"].dtype == bool
    r1 = t1["setting1_rce"]
    kept = main[main["rho"].abs() >= 0.05]
    want = kept.groupby(["concept_model", "sampler", "n"])["no_variation"].sum()
    got = r1.set_index(["concept_model", "sampler", "n"])["n_no_variation"]
    assert (got.reindex(want.index) == want).all()


# ---- the tiny end-to-end run (tests/conftest.py) -------------------------------------------------

TABLES = [
    "table4_auc_bins",
    "setting1_rce",
    "gamma_sweep",
    "alpha_sweep",
    "setting2_cost",
    "setting2_beta",
    "setting2_error_model",
    "setting2_prior",
]


@pytest.mark.slow
def test_tiny_run_study_outputs(tiny_run: Path):
    res = tiny_run / "results/tiny"
    pairs = read_table(res / "study_pairs/pairs.parquet")
    assert set(pairs["kind"]) == {"best", "random"}
    assert len(pairs.groupby(["model", "layer"])) == 4 and pairs.groupby(["model", "layer"]).size().min() >= 5
    rce = read_table(res / "setting1/rce.parquet")
    need = {
        "model",
        "layer",
        "neuron",
        "concept",
        "concept_model",
        "sampler",
        "n",
        "seed",
        "rho",
        "rho_hat",
        "rce",
    }
    assert need <= set(rce.columns)
    assert set(rce["concept_model"]) == {"probe", "conse"}
    assert set(rce["n"]) == {25, 50, 100} and rce["seed"].nunique() == 4
    assert np.isfinite(rce["rce"]).all()
    big = rce[(rce["n"] == 100) & (rce["concept_model"] == "probe") & (rce["rho"].abs() >= 0.05)]
    per = big.groupby("sampler")["rce"].mean()
    assert per["mg_is"] < per["uniform"], per
    for sweep in ("gamma", "alpha"):
        assert len(read_table(res / f"setting1/{sweep}_sweep.parquet"))
    s2 = read_table(res / "setting2/rce.parquet")
    assert set(s2["n_raters"]) == {0, 1, 3} and np.isfinite(s2["rce"]).all()
    for t in TABLES:
        df = pd.read_csv(res / f"tables/{t}.csv")
        assert len(df), t
    t4 = pd.read_csv(res / "tables/table4_auc_bins.csv")
    assert set(t4["auc_bin"]) == {"0-0.6", "0.6-0.8", "0.8-0.95", "0.95-0.99", "0.99-1"}


def test_constant_neurons_left_out(files, tmp_path):
    act = read_matrix(files / "acts.parquet")
    a = act["activation"].copy()
    a[:, 2] = 1.0
    write_matrix(tmp_path / "acts.parquet", act.image_ids, {"activation": a}, columns=act.columns)
    p = study_pairs(
        files / "manifest.parquet",
        files / "labels.parquet",
        {("m", "l"): str(tmp_path / "acts.parquet")},
        _presence(files),
        n_random_pairs=15,
    )
    assert "2" not in set(p["neuron"]) and p["rho"].notna().all()
