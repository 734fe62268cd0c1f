"""Setting 1 intervals (issue 9, item 5): the delta-method SE fused into the draw engine, its 95%
interval, and the coverage table (share of intervals containing the exact rho per sampler and n)."""

import numpy as np
import pandas as pd
import pytest

from neuronaudit.crowd.interval import rho_interval, simulate_pairs
from neuronaudit.sampling import Z95, PairDraws, estimates_from_sums, moment_table, sampling_grid
from neuronaudit.studies.setting1 import COVERAGE_COLUMNS, coverage_table, run_setting1, select_pairs

SAMPLERS = ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2}, {"name": "ag_is", "alpha": 2, "gamma": 0.2})


@pytest.fixture(scope="module")
def sim_grid():
    a_hat, c, guide = simulate_pairs(n_pairs=10, n_inputs=4000, seed=3)
    grid = sampling_grid(a_hat.T, c.T, guide.T, samplers=SAMPLERS, ns=(25, 100, 180, 400), seeds=range(300), rng=5,
                         chunk_size=4)
    return grid


@pytest.mark.parametrize("estimator", ["unbiased", "self_normalised"])
def test_fused_se_equals_the_per_draw_formula(estimator):
    """estimates_from_sums (sums of t and t t' from the engine) == crowd.interval.rho_interval on the
    per-draw values of the same draws, soft and binary c, every sampler."""
    rng = np.random.default_rng(0)
    a_hat, c, guide = simulate_pairs(n_pairs=3, n_inputs=500, seed=1)
    soft = np.clip(c * 0.7 + 0.3 * rng.random(c.shape), 0, 1)
    ns = np.array([2, 7, 40, 90])
    for cc in (c, soft):
        acc = moment_table(a_hat, cc)
        for spec in SAMPLERS:
            d = PairDraws.draw(spec, a_hat, guide, ns, 5, np.random.default_rng(2))
            sums, sq, nd = d.moment_sums(acc, None if cc is c else cc * cc, second=True)
            rh, nv, se = (x.reshape(3, 5, 4) for x in estimates_from_sums(sums, sq, ns, estimator))
            for b, n in enumerate(ns):
                ref = rho_interval(d.gather(a_hat)[:, :n], d.gather(cc)[:, :n], d.weights()[:, :n], estimator)
                np.testing.assert_allclose(rh[:, :, b].ravel(), ref.rho_hat, rtol=1e-9, atol=1e-12)
                np.testing.assert_array_equal(nv[:, :, b].ravel(), ref.degenerate)
                got = se[:, :, b].ravel()
                np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.se))
                # same to 1e-7 where the SE means anything (< 1 for a correlation): with a near-zero
                # estimated Var(c) the gradient ~ v^-1.5 amplifies rounding in either computation
                ok = ref.se < 1
                assert n < 40 or ok.all()
                np.testing.assert_allclose(got[ok], ref.se[ok], rtol=1e-7)


def test_grid_interval_columns(sim_grid):
    g = sim_grid
    assert {"se", "lo", "hi"} <= set(g.columns)
    ok = np.isfinite(g["se"])
    assert (ok == ~g["no_variation"]).all()  # NaN exactly where the sample showed no variation
    half = Z95 * g.loc[ok, "se"]
    np.testing.assert_allclose(g.loc[ok, "lo"], np.clip(g.loc[ok, "rho_hat"] - half, -1, 1), rtol=1e-12)
    np.testing.assert_allclose(g.loc[ok, "hi"], np.clip(g.loc[ok, "rho_hat"] + half, -1, 1), rtol=1e-12)
    assert g["lo"].isna().equals(g["hi"].isna())
    # the SE shrinks like 1 / sqrt(n): mean SE at n = 400 about half of that at n = 100
    m = g[ok].groupby(["sampler", "n"], observed=True)["se"].mean().unstack()
    assert ((m[400] / m[100]).between(0.4, 0.6)).all(), m


def test_coverage_in_band_at_n_100_and_more(sim_grid):
    table = coverage_table(sim_grid)
    assert list(table.columns) == ["sampler", "n", *COVERAGE_COLUMNS]
    assert len(table) == 3 * 4 and (table["intervals"] == 10 * 300).all() and (table["n_pairs"] == 10).all()
    big = table[(table["n"] >= 100) & table["sampler"].isin(["uniform", "mg_is"])]
    assert big["coverage"].between(0.90, 0.99).all(), big
    assert (big["degenerate"] == 0).all()
    # every sampler stays sane at every n (small n may undercover: reported, not required)
    assert table["coverage"].between(0.80, 1.0).all(), table
    # the SE matches the spread of rho_hat over seeds at n = 400 (what coverage rests on)
    g = sim_grid[sim_grid["n"] == 400]
    sd = g.groupby(["sampler", "pair"], observed=True)["rho_hat"].std().groupby("sampler", observed=True).mean()
    se = table[table["n"] == 400].set_index("sampler")["mean_se"]
    assert ((se / sd.reindex(se.index)).between(0.85, 1.15)).all(), (se, sd)


def test_coverage_counts_by_hand():
    df = pd.DataFrame({
        "concept_model": ["m"] * 6,
        "sampler": ["uniform"] * 3 + ["mg_is"] * 3,
        "n": [10] * 6,
        "pair": [0, 0, 1, 0, 1, 2],
        "rho": [0.5, 0.5, np.nan, 0.3, 0.3, 0.3],
        "rho_hat": [0.4, 0.9, 0.1, 0.0, 0.35, 0.31],
        "se": [0.1, 0.1, 0.1, np.nan, 0.01, 0.01],
        "lo": [0.2, 0.7, 0.0, np.nan, 0.33, 0.29],
        "hi": [0.6, 1.0, 0.3, np.nan, 0.37, 0.33],
    })
    t = coverage_table(df, ["concept_model", "sampler", "n"]).set_index("sampler")
    # uniform: the NaN-rho row is left out; one of two intervals covers 0.5
    assert t.loc["uniform", ["intervals", "covered", "degenerate", "n_pairs"]].tolist() == [2, 1, 0, 1]
    assert t.loc["uniform", "coverage"] == 0.5 and t.loc["uniform", "coverage_defined"] == 0.5
    assert t.loc["uniform", "mean_width"] == pytest.approx(0.35)
    # mg_is: one degenerate sample (a miss), one interval misses 0.3, one covers it
    assert t.loc["mg_is", ["intervals", "covered", "degenerate", "n_pairs"]].tolist() == [3, 1, 1, 3]
    assert t.loc["mg_is", "coverage"] == pytest.approx(1 / 3)
    assert t.loc["mg_is", "coverage_defined"] == pytest.approx(0.5)
    assert t.loc["mg_is", "mean_se"] == pytest.approx(0.01)
    # all degenerate: coverage 0, coverage_defined NaN; absent group columns are skipped
    all_deg = df.iloc[3:4]
    t2 = coverage_table(all_deg, ["sampler", "n", "no_such_column"])
    assert list(t2.columns) == ["sampler", "n", *COVERAGE_COLUMNS]
    assert t2["coverage"].iloc[0] == 0 and np.isnan(t2["coverage_defined"].iloc[0])
    with pytest.raises(KeyError, match=r"coverage_table needs the columns \['hi', 'lo', 'pair', 'se'\]"):
        coverage_table(df.drop(columns=["se", "lo", "hi", "pair"]))
    # the interval's ends count as covered; a group with one defined interval; no group columns
    edge = pd.DataFrame({"sampler": ["a", "a", "b", "b"], "n": [5] * 4, "pair": [0, 1, 0, 1],
                         "rho": [0.2, 0.4, 0.3, 0.3], "se": [0.1, 0.1, 0.1, np.nan],
                         "lo": [0.2, 0.1, 0.35, np.nan], "hi": [0.5, 0.4, 0.5, np.nan]})
    t3 = coverage_table(edge).set_index("sampler")
    assert t3.loc["a", "covered"] == 2 and t3.loc["b", "covered"] == 0
    assert t3.loc["b", "coverage_defined"] == 0.0 and t3.loc["b", "degenerate"] == 1  # 0 of 1 defined
    edge.loc[2, "lo"] = 0.25
    assert coverage_table(edge).set_index("sampler").loc["b", "coverage_defined"] == 1.0
    one = coverage_table(edge, by=())
    assert list(one.columns) == COVERAGE_COLUMNS and one[["intervals", "covered", "n_pairs"]].iloc[0].tolist() == [4, 3, 2]
    # a categorical sampler column with an absent category gives no row for it
    edge["sampler"] = pd.Categorical(edge["sampler"], categories=["a", "b", "c"])
    assert coverage_table(edge)["sampler"].tolist() == ["a", "b"]


def test_run_setting1_carries_the_intervals():
    rng = np.random.default_rng(4)
    c = (rng.random((800, 3)) < 0.2).astype(float)
    acts = rng.standard_normal((800, 3)) + 1.5 * c
    guide = np.clip(0.6 * c + 0.4 * rng.random((800, 3)), 0, 1)
    pairs = select_pairs(acts, c)
    df = run_setting1(acts, c, guide, pairs, ns=[50, 200], seeds=range(5), model="m", layer="l", concept_model="g")
    assert {"se", "lo", "hi"} <= set(df.columns) and np.isfinite(df.loc[df["n"] == 200, "se"]).all()
    t = coverage_table(df, ["concept_model", "sampler", "n"])
    assert set(t["concept_model"]) == {"g"} and len(t) == 3 * 2


def test_estimates_from_sums_edge_cases():
    # one draw (n = 1): rho_hat defined, no SE (the sample covariance needs n >= 2), even where the
    # products' sums would give a finite number
    sums = np.array([[[0.5, 0.5, 0.5, 0.5], [1.0, 0.6, 0.7, 0.7]]])  # (1 row, 2 sizes, 4 terms)
    sq = np.full((1, 2, 10), 2.0)
    rh, nv, se = estimates_from_sums(sums, sq, np.array([1, 2]), "unbiased")
    assert rh[0, 0] == pytest.approx(1.0) and not nv[0, 0] and np.isnan(se[0, 0]) and np.isfinite(se[0, 1])
    rh, nv, se = estimates_from_sums(sums, None, np.array([1, 2]), "self_normalised")
    # self-normalised, the same sums: E[c] = E[c^2] = 1 (every draw positive), no variation -> 0, flagged
    assert se is None and rh[0, 0] == 0.0 and nv[0, 0] and not nv[0, 1]
    with pytest.raises(ValueError, match=r"^estimator must be one of \('unbiased', 'self_normalised'\), got 'x'$"):
        estimates_from_sums(sums, sq, np.array([1, 2]), "x")
