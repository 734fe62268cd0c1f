"""Fidelity study (issue 11 item 5; neuronaudit.studies.fidelity, docs/fidelity.md)."""

import numpy as np
import pandas as pd
import pytest

from neuronaudit.scoring import auc_scores, pairwise_correlation
from neuronaudit.studies import fidelity


def test_simulated_cell_has_its_planted_prevalence_correlation_and_auc():
    acts, c, guide = fidelity.simulate_cell(40_000, 0.02, 0.35, 0.9, n_pairs=6, seed=1)
    assert acts.shape == c.shape == guide.shape == (40_000, 6)
    assert np.all(c.sum(axis=0) == 800)  # exactly round(pi N) positives per pair
    rho = np.diag(pairwise_correlation(acts, c))
    assert np.all(np.abs(rho - 0.35) < 0.03), rho
    auc = auc_scores(guide, c)
    assert np.all(np.abs(auc - 0.9) < 0.02), auc
    # calibrated: the guide's mean probability is the prevalence
    assert abs(guide.mean() - 0.02) < 0.003


def test_closed_forms_and_bad_settings():
    s = fidelity.planted_signal(0.3, 0.1)
    assert np.isclose(s * np.sqrt(0.1 * 0.9) / np.sqrt(s * s * 0.1 * 0.9 + 1), 0.3)
    assert fidelity.binormal_shift(0.5) == 0.0
    with pytest.raises(ValueError, match="prevalence"):
        fidelity.planted_signal(0.3, 0.0)
    with pytest.raises(ValueError, match="AUC"):
        fidelity.binormal_shift(1.0)
    with pytest.raises(ValueError, match="no negative"):
        fidelity.simulate_cell(10, 0.95, 0.3, 0.9, 2)


def test_synthetic_setting_recovers_the_planted_rho_within_its_interval():
    """Over seeded replicates the 95 % intervals of Setting 1's estimates contain the planted rho at
    about the nominal rate, for both samplers, at a moderate prevalence."""
    grid = fidelity.synthetic_grid([0.1], [0.3], [0.95], n_inputs=20_000, pairs_per_cell=10, ns=[400],
                                   seeds=40, rng=3)
    assert set(grid["sampler"]) == {"uniform", "mg_is"}
    assert np.allclose(grid["rho_planted"], 0.3)
    assert np.all(np.abs(grid["rho"] - 0.3) < 0.03)  # exact rho on the N inputs, near the planted one
    cov = fidelity.planted_coverage(grid).set_index("sampler")
    assert (cov["intervals"] == 400).all()
    for sampler in ("uniform", "mg_is"):
        assert 0.88 <= cov.loc[sampler, "coverage"] <= 0.99, cov
    # and the estimates centre on it
    means = grid.groupby("sampler")["rho_hat"].mean()
    assert np.all(np.abs(means - 0.3) < 0.02), means


def test_rce_ratio_grows_as_the_concept_gets_rarer():
    """MG-IS's advantage at n = 180 grows as prevalence falls, with an accurate guide; a guide with no
    information (AUC 0.5: q ∝ |a_hat| only) gives far less at the rare end. A q that ignored the
    guide or mis-weighted the draws would break both."""
    grid = fidelity.synthetic_grid([0.003, 0.03, 0.3], [0.3], [0.5, 0.995], n_inputs=20_000, pairs_per_cell=8,
                                   ns=[25, 100, 180, 400], seeds=10, rng=5)
    t = fidelity.ratio_table(grid, n=180).set_index(["auc_planted", "prevalence"])["rce_ratio"]
    good = t.loc[0.995]
    assert good.loc[0.003] > good.loc[0.03] > good.loc[0.3], good
    assert good.loc[0.003] > 5.0 and good.loc[0.3] < 3.0, good
    assert t.loc[(0.5, 0.003)] < 0.6 * good.loc[0.003], t


def test_ratio_table_columns_and_inputs_ratio():
    grid = fidelity.synthetic_grid([0.01], [0.4], [0.99], n_inputs=10_000, pairs_per_cell=4, ns=[25, 100, 180, 800],
                                   seeds=5, rng=0)
    t = fidelity.ratio_table(grid, n=180)
    for col in ("rce_uniform", "rce_mg_is", "rce_ratio", "share_no_variation_uniform", "inputs_ratio",
                "inputs_ratio_lower_bound", "n_pairs", "guide_auc", "rho"):
        assert col in t
    assert t["n_pairs"].iloc[0] == 4 and t["inputs_ratio"].iloc[0] > 1
    with pytest.raises(ValueError, match="n == 7"):
        fidelity.ratio_table(grid, n=7)
    with pytest.raises(ValueError, match="uniform"):
        fidelity.ratio_table(grid[grid["sampler"] == "mg_is"], n=180)


def _observed_rows():
    rows = []
    # two pairs of concept 'rare' (prevalence 0.01), one of 'common' (0.3), one with |rho| below the floor
    for pair, concept, rho, auc, ru, rm in [(0, "rare", 0.3, 0.995, 0.8, 0.1), (1, "rare", -0.4, 0.97, 0.6, 0.2),
                                           (2, "common", 0.5, 0.999, 0.2, 0.1), (3, "common", 0.01, 0.999, 5.0, 1.0)]:
        for sampler, r in (("uniform", ru), ("mg_is", rm)):
            for seed, jitter in ((0, -0.01), (1, 0.01)):
                rows.append({"concept_model": "g", "pair": pair, "concept": concept, "sampler": sampler, "n": 180,
                             "seed": seed, "rho": rho, "rce": r + jitter, "guide_auc": auc})
                rows.append({"concept_model": "g", "pair": pair, "concept": concept, "sampler": sampler, "n": 25,
                             "rho": rho, "rce": 9.0, "guide_auc": auc})
    return pd.DataFrame(rows)


def test_observed_pairs_and_bins_by_hand():
    prev = pd.Series({"rare": 0.01, "common": 0.3})
    pairs = fidelity.observed_pairs(_observed_rows(), prev, n=180)
    assert pairs.attrs["excluded"] == {"|rho| < 0.05": 1, "no prevalence on D": 0}
    assert sorted(pairs["pair"]) == [0, 1, 2]
    assert np.allclose(pairs.set_index("pair").loc[0, ["rce_uniform", "rce_mg_is"]], [0.8, 0.1])
    t = fidelity.binned_ratio(pairs, "prevalence", fidelity.PREVALENCE_BINS)
    assert list(t["prevalence_bin"]) == ["0-0.003", "0.003-0.03", "0.03-0.15", "0.15-0.35", "0.35-1"]
    rare = t[t["prevalence_bin"] == "0.003-0.03"].iloc[0]
    assert rare["n_pairs"] == 2 and np.isclose(rare["rce_ratio"], (0.8 + 0.6) / (0.1 + 0.2))
    assert np.isclose(rare["geo_mean_ratio"], np.sqrt(8.0 * 3.0))
    assert t[t["prevalence_bin"] == "0-0.003"]["n_pairs"].iloc[0] == 0  # empty bins are listed
    stacked = fidelity.observed_tables(pairs)
    assert set(stacked["variable"]) == {"prevalence", "abs_rho", "guide_auc"}
    top = stacked[(stacked["subset"] == "guide AUC 0.99-1") & (stacked["variable"] == "prevalence")]
    assert top["n_pairs"].sum() == 2  # pairs 0 and 2
    with pytest.raises(ValueError, match="n = 50"):
        fidelity.observed_pairs(_observed_rows(), prev, n=50)
    with pytest.raises(KeyError, match="guide_auc"):
        fidelity.observed_pairs(_observed_rows().drop(columns="guide_auc"), prev, n=180)


def test_concept_prevalence_on_the_probing_images_only():
    labels = pd.DataFrame({"image_id": ["a", "b", "c", "d"] * 2, "concept": ["x"] * 4 + ["y"] * 4,
                           "present": [1, 0, 0, 1, 1, 1, 1, 0]})
    prev = fidelity.concept_prevalence(labels, ["a", "b", "c"])
    assert prev.to_dict() == {"x": pytest.approx(1 / 3), "y": 1.0}
    with pytest.raises(ValueError, match="no label rows"):
        fidelity.concept_prevalence(labels, ["z"])


def test_matching_prevalence_and_nearest_n():
    t = pd.DataFrame({"prevalence": [0.001, 0.01, 0.1], "rce_uniform": [1.0, 0.5, 0.2]})
    p = fidelity.matching_prevalence(t, 0.75)
    assert 0.001 < p < 0.01 and np.isclose(np.log10(p), -2.5)
    assert np.isnan(fidelity.matching_prevalence(t, 2.0))
    assert fidelity.nearest_n([25, 100, 180], 200) == 180 and fidelity.nearest_n([25, 100], 180) == 100


def test_figure_draws_paper_lines_and_the_study_points():
    grid = fidelity.synthetic_grid([0.003, 0.1], [0.3], [0.9, 0.995], n_inputs=5_000, pairs_per_cell=3,
                                   ns=[25, 180, 400], seeds=3, rng=0)
    table = fidelity.ratio_table(grid, n=180)
    pairs = fidelity.observed_pairs(_observed_rows(), pd.Series({"rare": 0.01, "common": 0.3}), n=180)
    fig = fidelity.figure(table, fidelity.observed_tables(pairs))
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "paper 7.6x" in texts and "paper ~13x" in texts
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("this study" in lab for lab in labels) and any("guide AUC 0.995" in lab for lab in labels)
