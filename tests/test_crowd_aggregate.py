"""Scores from real ratings (crowd.aggregate) and the crowdsourced tables and figure (crowd.report), issue 9
items 5-6: on synthetic crowd files whose exact rho is known, and on hand-computed small cases."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from neuronaudit.crowd import report
from neuronaudit.crowd.aggregate import (
    AGGREGATIONS,
    ALL_AGGREGATIONS,
    ESTIMATE_COLUMNS,
    PRESENCE_COLUMNS,
    _draw_presence,
    aggregate_crowd,
    bragg_class_means,
    choose_eta,
    dedupe_ratings,
    explanation_presence,
    item_counts,
    item_index,
    soft_presence,
    synthetic_crowd,
)
from neuronaudit.crowd.interval import rho_interval
from neuronaudit.explanations import predicted_matrix

ROOT = Path(__file__).resolve().parents[1]


def _run(files, **kw):
    return aggregate_crowd(files["explanations"], files["design"], files["items"], files["ratings"], **kw)


@pytest.fixture(scope="module")
def synth():
    files = synthetic_crowd(n_explanations=300, n_inputs=4000, n=180, raters_per_input=3, eta=0.05, seed=3)
    return files, _run(files, truth=files["truth"])


# ---------------------------------------------------------------------------------------------
# estimates against the exact rho
# ---------------------------------------------------------------------------------------------
def test_estimates_cover_the_exact_rho_at_n180_with_good_raters(synth):
    files, res = synth
    est = res.estimates
    assert list(est.columns) == ESTIMATE_COLUMNS
    assert len(est) == 300 * len(AGGREGATIONS)
    assert (est["n_draws"] == 180).all() and (est["n_used"] == 180).all() and (est["n_unrated"] == 0).all()
    for agg in AGGREGATIONS:
        e = est[est["aggregation"] == agg]
        cov = e["covers_exact"].astype(bool).mean()
        assert 0.85 <= cov <= 0.99, (agg, cov)
        err = np.abs(e["rho_hat"] - e["exact_rho"])
        assert err.mean() < 0.06, (agg, err.mean())
        # the interval's width tracks the estimate's actual error: SE within a factor 1.5 of the RMS error
        rms = np.sqrt(np.mean((e["rho_hat"] - e["exact_rho"]) ** 2))
        assert 0.67 < e["se"].mean() / rms < 1.5
    assert res.summary["coverage"]["bragg_model"] == pytest.approx(
        est[est["aggregation"] == "bragg_model"]["covers_exact"].astype(bool).mean())
    # the truth-scored estimate of the same draws is close to the rating-based one with good raters
    bm = est[est["aggregation"] == "bragg_model"]
    assert np.abs(bm["rho_hat"] - bm["rho_hat_truth"]).mean() < 0.03
    assert 0.85 <= bm["covers_exact_truth"].astype(bool).mean() <= 0.99


def test_noisy_raters_attenuate_the_score_but_not_the_sampling_interval():
    """With eta = 0.25 the soft presence is noisy, which biases rho towards 0 (documented in
    docs/evaluation.md); the interval from the true presence at the same draws still covers."""
    files = synthetic_crowd(n_explanations=150, n_inputs=3000, n=180, raters_per_input=3, eta=0.25, seed=11)
    res = _run(files, truth=files["truth"], methods=ALL_AGGREGATIONS)
    bm = res.estimates[res.estimates["aggregation"] == "bragg_model"]
    assert (bm["rho_hat"] - bm["exact_rho"]).mean() < -0.03  # attenuated
    assert 0.85 <= bm["covers_exact_truth"].astype(bool).mean() <= 0.99
    assert bm["covers_exact"].astype(bool).mean() < bm["covers_exact_truth"].astype(bool).mean()
    # the debiased aggregation removes the attenuation (at a cost in variance) and covers
    db = res.estimates[res.estimates["aggregation"] == "bragg_debiased"]
    assert abs((db["rho_hat"] - db["exact_rho"]).mean()) < 0.03
    assert db["degenerate"].mean() < 0.1  # an estimated prevalence outside (0, 1): counted, a miss
    assert 0.85 <= db["covers_exact"].astype(bool).mean() <= 0.99
    assert db["se"].mean() > bm["se"].mean()


def test_bragg_class_means_by_hand():
    eta, prior, m = 0.2, 0.3, 3
    t1, t0 = bragg_class_means(np.array([m, 0]), eta, np.array([prior, prior]))
    post = [special.expit(special.logit(prior) + (2 * k - m) * math.log((1 - eta) / eta)) for k in range(m + 1)]
    want1 = sum(math.comb(m, k) * (1 - eta) ** k * eta ** (m - k) * post[k] for k in range(m + 1))
    want0 = sum(math.comb(m, k) * eta ** k * (1 - eta) ** (m - k) * post[k] for k in range(m + 1))
    assert t1[0] == pytest.approx(want1) and t0[0] == pytest.approx(want0)
    assert t1[1] == pytest.approx(prior) and t0[1] == pytest.approx(prior)  # no rating: the prior
    # debiased presence: (s - t0) / (t1 - t0); its expectation under the model is the truth
    yes = np.arange(m + 1)
    v = soft_presence(yes, np.full(m + 1, m), np.full(m + 1, prior), ["bragg_debiased"], eta=eta)[0]
    pk1 = [math.comb(m, k) * (1 - eta) ** k * eta ** (m - k) for k in range(m + 1)]
    pk0 = [math.comb(m, k) * eta ** k * (1 - eta) ** (m - k) for k in range(m + 1)]
    assert np.dot(pk1, v) == pytest.approx(1.0) and np.dot(pk0, v) == pytest.approx(0.0, abs=1e-12)


def test_binary_second_moment_of_linear_and_formula_explanations():
    items, ratings = _hand_case()
    va = {"x": 0.9, "y": 1.2}  # debiased atom values may leave [0, 1]
    vb = {"x": -0.1, "y": 0.4}
    vals = np.array([[va["x"], vb["x"], va["y"], vb["y"]]])  # items order: (x,a), (x,b), (y,a), (y,b)
    structured = [{"kind": "linear", "terms": [[0.5, "a"], [-0.25, "b"]], "bias": 0.1},
                  {"kind": "compositional", "formula": "a AND NOT b"}, {"kind": "simple", "concept": "b"}]
    s, cc, _ = _draw_presence(structured, np.repeat(np.arange(3), 2), np.tile(["x", "y"], 3), items, vals)
    for j, img in enumerate(("x", "y")):
        a, b = va[img], vb[img]
        lin = 0.5 * a - 0.25 * b + 0.1
        assert cc[0, j] == pytest.approx(lin**2 - 0.25 * (a * a - a) - 0.0625 * (b * b - b))
        assert cc[0, 2 + j] == pytest.approx(a * (1 - b)) and cc[0, 2 + j] == pytest.approx(s[0, 2 + j])
        assert cc[0, 4 + j] == pytest.approx(b)


def test_em_eta_is_close_to_the_raters_true_error_rate():
    files = synthetic_crowd(n_explanations=60, n_inputs=3000, n=180, raters_per_input=3, eta=0.15, seed=5)
    res = _run(files)
    assert res.summary["eta_source"] == "em"
    assert res.summary["eta"] == pytest.approx(0.15, abs=0.015)
    bu = res.estimates[res.estimates["aggregation"] == "bragg_uniform"]
    assert (bu["eta_source"] == "em").all() and np.allclose(bu["eta"], res.summary["eta"])
    maj = res.estimates[res.estimates["aggregation"] == "majority"]
    assert (maj["eta_source"] == "n/a").all() and maj["eta"].isna().all()


def test_eta_override_and_invalid_settings():
    files = synthetic_crowd(n_explanations=4, n_inputs=500, n=30, seed=1)
    res = _run(files, eta=0.3)
    assert res.summary["eta"] == 0.3 and res.summary["eta_source"] == "config"
    with pytest.raises(ValueError, match="strictly in"):
        _run(files, eta=1.5)
    with pytest.raises(ValueError, match="null"):
        _run(files, eta="bogus")


# ---------------------------------------------------------------------------------------------
# hand-computed small cases
# ---------------------------------------------------------------------------------------------
def _items(rows):
    df = pd.DataFrame(rows, columns=["image_id", "concept", "prior", "is_gold", "gold_answer"])
    df["gold_answer"] = df["gold_answer"].astype("Int8")
    return df


def _ratings(rows):
    return pd.DataFrame(rows, columns=["task", "image_id", "concept", "rater", "rating"]).assign(
        source="t", submitted_at=pd.NaT)


def test_gold_eta_is_the_disagreement_rate_with_gold_answers():
    items = _items([("g1", "dog", 0.5, True, 1), ("g2", "dog", 0.5, True, 0), ("x1", "dog", 0.3, False, None)])
    ratings = _ratings([
        ("t1", "g1", "dog", "r1", 1), ("t1", "g1", "dog", "r2", 0), ("t1", "g1", "dog", "r3", 1),
        ("t1", "g2", "dog", "r1", 0), ("t1", "g2", "dog", "r2", 1),
        ("t1", "x1", "dog", "r1", 1), ("t1", "x1", "dog", "r2", 1), ("t1", "x1", "dog", "r3", 0),
    ])
    idx = item_index(items)
    rated = dedupe_ratings(ratings, idx)
    yes, total = item_counts(rated, idx.n)
    ga = items["gold_answer"].to_numpy(dtype=float, na_value=np.nan)
    ch = choose_eta("gold", yes, total, items["is_gold"].to_numpy(), rated, ga)
    assert ch.source == "gold" and ch.n == 5 and ch.eta == pytest.approx(2 / 5)
    assert "2 of 5" in ch.note
    # no gold rated -> EM; EM impossible (no item with 2 ratings) -> the fall-back, with notes
    one = dedupe_ratings(ratings[ratings["rater"] == "r1"], idx)
    y1, t1 = item_counts(one, idx.n)
    ch = choose_eta("gold", y1, t1, np.zeros(3, bool), one, np.full(3, np.nan))
    assert ch.source == "fallback" and ch.eta == 0.2 and "EM impossible" in ch.note
    # gold eta of 0 is clipped into (0, 0.5)
    perfect = ratings[~((ratings["rater"] == "r2") & ratings["image_id"].isin(["g1", "g2"]))]
    rp = dedupe_ratings(perfect, idx)
    yp, tp = item_counts(rp, idx.n)
    ch = choose_eta("gold", yp, tp, items["is_gold"].to_numpy(), rp, ga)
    assert ch.raw == 0.0 and ch.eta == 1e-3 and "clipped" in ch.note


def test_majority_ties_give_half_and_gold_items_stay_out_of_em():
    items = _items([("a", "dog", 0.5, False, None), ("b", "dog", 0.2, False, None), ("g", "dog", 0.5, True, 1)])
    ratings = _ratings([("t", "a", "dog", "r1", 1), ("t", "a", "dog", "r2", 0),
                        ("t", "b", "dog", "r1", 1), ("t", "b", "dog", "r2", 1),
                        ("t", "g", "dog", "r1", 0), ("t", "g", "dog", "r2", 0)])
    expl = pd.DataFrame({"explanation_id": ["m/l/0/x"], "model": "m", "layer": "l", "neuron": "0", "method": "x",
                         "structured": [json.dumps({"kind": "simple", "concept": "dog"})]})
    design = pd.DataFrame({"explanation_id": "m/l/0/x", "draw": [0, 1], "image_id": ["a", "b"], "weight": 1.0,
                           "a_hat": [1.0, -1.0]})
    res = aggregate_crowd(expl, design, items, ratings, eta=0.1)
    p = res.presence.set_index(["aggregation", "image_id"])["presence"]
    assert p[("majority", "a")] == 0.5 and p[("majority", "b")] == 1.0
    # BRAgg: 1 yes of 2 leaves the prior; 2 yes of 2 multiplies the odds by ((1-eta)/eta)^2
    assert p[("bragg_uniform", "a")] == pytest.approx(0.05)
    assert p[("bragg_model", "b")] == pytest.approx(special.expit(special.logit(0.2) + 2 * math.log(9)))
    assert list(res.presence.columns) == PRESENCE_COLUMNS
    assert res.summary["gold_items"] == 1
    # EM sees only the non-gold items: the gold item's two 'no' answers would change the histogram
    res_em = aggregate_crowd(expl, design, items, ratings)
    res_em2 = aggregate_crowd(expl, design, items.assign(is_gold=False), ratings)
    assert res_em.summary["eta"] != pytest.approx(res_em2.summary["eta"])


def _hand_case():
    """Two images x two concepts rated by 3 raters: a at x: 2 yes, b at x: 0 yes; a at y: 3 yes, b at y: 1 yes."""
    items = _items([("x", "a", 0.5, False, None), ("x", "b", 0.5, False, None),
                    ("y", "a", 0.5, False, None), ("y", "b", 0.5, False, None)])
    votes = {("x", "a"): [1, 1, 0], ("x", "b"): [0, 0, 0], ("y", "a"): [1, 1, 1], ("y", "b"): [0, 1, 0]}
    ratings = _ratings([("t", i, c, f"r{k}", v) for (i, c), vs in votes.items() for k, v in enumerate(vs)])
    return items, ratings


def test_linear_compositional_and_clustered_soft_presence_by_hand():
    items, ratings = _hand_case()
    idx = item_index(items)
    yes, total = item_counts(dedupe_ratings(ratings, idx), idx.n)
    eta, beta = 0.1, 0.05

    def bragg(y, m):
        return special.expit(special.logit(beta) + (2 * y - m) * math.log((1 - eta) / eta))

    ca = {"x": bragg(2, 3), "y": bragg(3, 3)}
    cb = {"x": bragg(0, 3), "y": bragg(1, 3)}
    pres = soft_presence(yes, total, items["prior"].to_numpy(), ["majority", "bragg_uniform"], beta=beta, eta=eta)
    structured = [
        {"kind": "linear", "terms": [[0.5, "a"], [-0.25, "b"]], "bias": 0.1},
        {"kind": "compositional", "formula": "a AND NOT b"},
        {"kind": "compositional", "formula": "b OR a"},
        {"kind": "clustered", "clusters": [{"lower": 0, "upper": 1, "formula": "a"},
                                           {"lower": 1, "upper": 3, "formula": "a AND b"}]},
        {"kind": "simple", "concept": "b"},
    ]
    draw_expl = np.repeat(np.arange(5), 2)
    draw_img = np.tile(["x", "y"], 5)
    out = explanation_presence(structured, draw_expl, draw_img, items, pres)
    maj_a, maj_b = {"x": 1.0, "y": 1.0}, {"x": 0.0, "y": 0.0}
    for row, (pa, pb) in enumerate([(maj_a, maj_b), (ca, cb)]):
        want = []
        for img in ("x", "y"):
            a, b = pa[img], pb[img]
            want.append([0.5 * a - 0.25 * b + 0.1, a * (1 - b), 1 - (1 - b) * (1 - a), 0.5 * a + 2 * a * b, b])
        want = np.asarray(want).T.ravel()  # explanation-major, like the draws
        np.testing.assert_allclose(out[row], want, rtol=1e-12)


def test_explanation_presence_equals_predicted_matrix_on_random_formulas():
    rng = np.random.default_rng(0)
    concepts = [f"c{k}" for k in range(6)] + ["sea lion", "NOT really"]
    images = [f"i{k}" for k in range(40)]
    items = pd.DataFrame([(i, c) for i in images for c in concepts], columns=["image_id", "concept"])
    vals = rng.random((2, len(items)))
    pm = vals[0].reshape(len(images), len(concepts))
    structured = []
    for _ in range(60):
        kind = rng.integers(4)
        cs = list(rng.choice(concepts, size=3, replace=False))
        q = ['"' + c + '"' for c in cs]
        if kind == 0:
            structured.append({"kind": "simple", "concept": cs[0]})
        elif kind == 1:
            structured.append({"kind": "linear", "terms": [[float(rng.normal()), c] for c in cs], "bias": 0.3})
        elif kind == 2:
            structured.append({"kind": "compositional", "formula": rng.choice(
                [f"{q[0]} AND NOT ({q[1]} OR {q[0]})", f"({q[0]} OR {q[1]}) AND {q[2]}", f"NOT {q[2]}"])})
        else:
            structured.append({"kind": "clustered", "clusters": [{"lower": 0.0, "upper": 2.0, "formula": f"{q[0]} OR {q[1]}"},
                                                                 {"lower": 2.0, "upper": 5.0, "formula": q[2]}]})
    draw_expl = rng.integers(0, len(structured), 500)
    draw_img_i = rng.integers(0, len(images), 500)
    out = explanation_presence(structured, draw_expl, np.asarray(images, dtype=object)[draw_img_i], items, vals)
    ref = predicted_matrix(structured, concepts, pm)  # (N images, E)
    np.testing.assert_allclose(out[0], ref[draw_img_i, draw_expl], rtol=1e-12, atol=1e-12)


def _one_explanation(images, a_hat, weight, votes, eid="m/l/0/x"):
    expl = pd.DataFrame({"explanation_id": [eid], "model": "m", "layer": "l", "neuron": "0", "method": "x",
                         "structured": [json.dumps({"kind": "simple", "concept": "dog"})], "exact_rho": 0.3,
                         "automated_rho": 0.2})
    design = pd.DataFrame({"explanation_id": eid, "draw": np.arange(len(images)), "image_id": images,
                           "weight": weight, "a_hat": a_hat})
    uniq = list(dict.fromkeys(images))
    items = _items([(i, "dog", 0.3, False, None) for i in uniq])
    ratings = _ratings([("t", i, "dog", f"r{k}", v) for i, vs in votes.items() for k, v in enumerate(vs)])
    return expl, design, items, ratings


def test_duplicate_draws_are_repeated_not_collapsed():
    images = ["p", "p", "p", "q", "r", "s", "t", "q"]
    a_hat = np.array([2.0, 2.0, 2.0, -0.5, 0.3, -1.0, 0.1, -0.5])
    weight = np.array([0.4, 0.4, 0.4, 1.2, 0.9, 1.5, 1.1, 1.2])
    votes = {"p": [1, 1, 1], "q": [0, 0, 1], "r": [1, 0, 0], "s": [0, 0, 0], "t": [1, 1, 0]}
    expl, design, items, ratings = _one_explanation(images, a_hat, weight, votes)
    res = aggregate_crowd(expl, design, items, ratings, methods=["majority"])
    maj = {i: float(np.mean(v) > 0.5) for i, v in votes.items()}
    c = np.array([maj[i] for i in images])
    want = rho_interval(a_hat, c, weight)
    row = res.estimates.iloc[0]
    assert row["rho_hat"] == pytest.approx(float(want.rho_hat)) and row["se"] == pytest.approx(float(want.se))
    assert row["n_draws"] == 8 and row["n_used"] == 8 and row["n_distinct"] == 5 and row["n_ratings"] == 15
    sn = aggregate_crowd(expl, design, items, ratings, methods=["majority"], estimator="self_normalised",
                         level=0.9).estimates.iloc[0]
    want_sn = rho_interval(a_hat, c, weight, "self_normalised", level=0.9)
    assert sn["rho_hat"] == pytest.approx(float(want_sn.rho_hat)) and sn["hi"] == pytest.approx(float(want_sn.hi))
    assert sn["estimator"] == "self_normalised" and sn["level"] == 0.9
    # mutant: rating-once-counting-once (collapsing the duplicates) gives another estimate
    first = [images.index(i) for i in dict.fromkeys(images)]
    collapsed = rho_interval(a_hat[first], c[first], weight[first])
    assert abs(float(collapsed.rho_hat) - row["rho_hat"]) > 0.01


def test_unrated_draws_are_left_out_and_counted():
    files = synthetic_crowd(n_explanations=20, n_inputs=2000, n=60, seed=7)
    items = files["items"]
    drop = items.sample(frac=0.1, random_state=0)
    keep = ~files["ratings"].set_index(["image_id", "concept"]).index.isin(drop.set_index(["image_id", "concept"]).index)
    res = _run({**files, "ratings": files["ratings"][keep]}, eta=0.05, methods=["bragg_uniform"])
    est = res.estimates.set_index("explanation_id")
    d = files["design"].merge(files["explanations"][["explanation_id", "explanation"]], on="explanation_id")
    dropped = set(zip(drop["image_id"], drop["concept"], strict=True))
    d["unrated"] = [(i, c) in dropped for i, c in zip(d["image_id"], d["explanation"], strict=True)]
    n_unrated = d.groupby("explanation_id")["unrated"].sum()
    assert n_unrated.sum() > 0
    np.testing.assert_array_equal(est.loc[n_unrated.index, "n_unrated"], n_unrated.to_numpy())
    assert res.summary["unrated_draws"] == n_unrated.sum()
    assert res.summary["items_fewer_raters_than_planned"] == len(drop)
    # the estimate is the interval on the rated draws only (in draw order)
    pres = res.presence.set_index(["image_id", "concept"])["presence"]
    for eid, g in list(d.groupby("explanation_id"))[:5]:
        g = g[~g["unrated"]].sort_values("draw")
        c = pres.loc[list(zip(g["image_id"], g["explanation"], strict=True))].to_numpy()
        want = rho_interval(g["a_hat"].to_numpy(), c, g["weight"].to_numpy())
        assert est.loc[eid, "rho_hat"] == pytest.approx(float(want.rho_hat), rel=1e-10)
        assert est.loc[eid, "se"] == pytest.approx(float(want.se), rel=1e-10)


def test_no_rated_draw_and_no_draw_are_excluded_not_crashing():
    expl, design, items, ratings = _one_explanation(["p", "q"], np.array([1.0, -1.0]), 1.0, {"p": [1, 1], "q": [0, 0]})
    expl2 = pd.concat([expl, expl.assign(explanation_id="m/l/1/x", neuron="1"),
                       expl.assign(explanation_id="m/l/2/x", neuron="2",
                                   structured=json.dumps({"kind": "simple", "concept": "cat"}))], ignore_index=True)
    design2 = pd.concat([design, design.assign(explanation_id="m/l/2/x")], ignore_index=True)
    res = aggregate_crowd(expl2, design2, items, ratings, eta=0.1)
    est = res.estimates[res.estimates["aggregation"] == "majority"].set_index("explanation_id")
    assert est.loc["m/l/0/x", "rho_hat"] == pytest.approx(1.0)
    assert np.isnan(est.loc["m/l/1/x", "rho_hat"]) and est.loc["m/l/1/x", "n_draws"] == 0
    assert np.isnan(est.loc["m/l/2/x", "rho_hat"]) and est.loc["m/l/2/x", "n_unrated"] == 2
    assert res.excluded.reasons("explanation") == {"m/l/1/x": "no draws in design.parquet",
                                                    "m/l/2/x": "no draw with every atom concept rated"}
    # a degenerate sample (no variation in c) is flagged, rho 0, no interval
    expl, design, items, ratings = _one_explanation(["p", "q"], np.array([1.0, -1.0]), 1.0, {"p": [0, 0], "q": [0, 0]})
    row = aggregate_crowd(expl, design, items, ratings, methods=["majority"]).estimates.iloc[0]
    assert row["degenerate"] and row["rho_hat"] == 0 and np.isnan(row["se"])
    assert row["covers_exact"] is False or row["covers_exact"] == False  # noqa: E712 - a miss, not unknown


def test_repeated_answers_count_once_last_submitted_wins_and_unknown_items_are_counted():
    items = _items([("p", "dog", 0.5, False, None)])
    r = _ratings([("t1", "p", "dog", "r1", 0), ("t2", "p", "dog", "r1", 1), ("t1", "p", "dog", "r2", 1),
                  ("t1", "zz", "dog", "r1", 1)])
    r["submitted_at"] = pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01", "2026-01-01"], utc=True)
    rated = dedupe_ratings(r, items)
    assert rated.n_repeat == 1 and rated.n_conflict == 1 and rated.n_unknown == 1 and rated.unknown_pairs == ["zz|dog"]
    yes, total = item_counts(rated, 1)
    assert yes.tolist() == [2] and total.tolist() == [2]
    rated = dedupe_ratings(r.assign(submitted_at=pd.to_datetime(
        ["2026-01-03", "2026-01-02", "2026-01-01", "2026-01-01"], utc=True)), items)
    assert item_counts(rated, 1)[0].tolist() == [1]


def test_bad_inputs_are_clear_errors():
    expl, design, items, ratings = _one_explanation(["p", "q"], np.array([1.0, -1.0]), 1.0, {"p": [1, 1], "q": [0, 0]})
    with pytest.raises(ValueError, match="design row 0: explanation_id 'nope'"):
        aggregate_crowd(expl, design.assign(explanation_id="nope"), items, ratings)
    with pytest.raises(ValueError, match="weight"):
        aggregate_crowd(expl, design.assign(weight=[1.0, -2.0]), items, ratings)
    with pytest.raises(ValueError, match="repeat"):
        aggregate_crowd(expl, design, pd.concat([items, items]), ratings)
    with pytest.raises(ValueError, match="not 0/1"):
        aggregate_crowd(expl, design, items, ratings.assign(rating=2))
    with pytest.raises(ValueError, match="lacks columns"):
        aggregate_crowd(expl.drop(columns="structured"), design, items, ratings)


# ---------------------------------------------------------------------------------------------
# tables and figure
# ---------------------------------------------------------------------------------------------
def test_table3_layout_and_markdown(synth):
    files, res = synth
    est = res.estimates
    t = report.table3(est)
    aggs = list(AGGREGATIONS)
    assert list(t.columns) == ["method", *(f"synth/layer: {a}" for a in aggs), "synth/layer: n",
                               "synth/layer: exact", "synth/layer: automated"]
    assert t["method"].tolist() == ["method_a", "method_b", report.COVERAGE_ROW, report.COVERAGE_TRUTH_ROW]
    summ = report.score_summary(est)
    for m in ("method_a", "method_b"):
        x = est[(est["method"] == m) & (est["aggregation"] == "bragg_model")]["rho_hat"]
        mean, sem = x.mean(), x.std(ddof=1) / math.sqrt(len(x))
        assert t.loc[t["method"] == m, "synth/layer: bragg_model"].item() == f"{mean:.4f} ± {sem:.4f}"
        assert t.loc[t["method"] == m, "synth/layer: n"].item() == "150"
        s = summ[(summ["method"] == m) & (summ["aggregation"] == "bragg_model")]
        assert s["n"].item() == 150
    cov = est[est["aggregation"] == "majority"]["covers_exact"].astype(bool)
    assert t.loc[2, "synth/layer: majority"] == f"{cov.mean():.3f} ({cov.sum()}/{len(cov)})"
    cov_t = est[est["aggregation"] == "majority"]["covers_exact_truth"].astype(bool)
    assert t.loc[3, "synth/layer: majority"] == f"{cov_t.mean():.3f} ({cov_t.sum()}/{len(cov_t)})"
    # without truth there is no true-presence row
    t_nt = report.table3(est.assign(covers_exact_truth=pd.array([pd.NA] * len(est), dtype="boolean")))
    assert t_nt["method"].tolist() == ["method_a", "method_b", report.COVERAGE_ROW]
    md = report.table3_markdown(est)
    assert "## synth / layer" in md and "| Method | Majority vote | BRAgg (uniform prior)" in md
    assert "*interval coverage*" in md and "*interval coverage, true presence*" in md
    assert md.count("| method_a |") == 1


def test_ttest_pvalues_match_scipy(synth):
    _, res = synth
    est = res.estimates
    tt = report.ttest_table(est)
    assert len(tt) == len(AGGREGATIONS) * 2
    for _, row in tt.iterrows():
        sel = est[est["aggregation"] == row["aggregation"]]
        xa = sel[sel["method"] == row["method_a"]]["rho_hat"]
        xb = sel[sel["method"] == row["method_b"]]["rho_hat"]
        ref = stats.ttest_ind(xa, xb, alternative="greater")
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-12) and row["t"] == pytest.approx(ref.statistic)
        assert row["alternative"] == "mean(method_a) > mean(method_b)"
    # the two directions of one pair are complementary one-sided p-values
    a = tt[(tt["aggregation"] == "majority")]
    assert a["p"].sum() == pytest.approx(1.0)


def test_fleiss_kappa_against_a_hand_computed_value():
    # 4 items with 3 raters (yes = 3, 0, 2, 1) and one with 2 (left out): P_bar = 2/3, P_e = 1/2 -> 1/3
    pres = pd.DataFrame({"image_id": list("abcde"), "concept": "dog", "aggregation": "majority",
                         "presence": 0.0, "n_ratings": [3, 3, 3, 3, 2], "n_yes": [3, 0, 2, 1, 1],
                         "is_gold": False, "evaluations": ['["m/l"]', '["m/l"]', '["m/l", "m/k"]', '["m/l"]', '["m/k"]']})
    ag = report.agreement_table(pres)
    study = ag[ag["scope"] == "study"].iloc[0]
    assert study["raters_per_item"] == 3 and study["n_items"] == 4 and study["n_items_other"] == 1
    assert study["kappa"] == pytest.approx(1 / 3)
    ml = ag.set_index(["model", "layer"])
    assert ml.loc[("m", "k"), "n_items"] == 1 and ml.loc[("m", "l"), "n_items"] == 4
    assert ml.loc[("m", "l"), "kappa"] == pytest.approx(1 / 3)


def test_synthetic_kappa_is_near_its_expected_value(synth):
    files, res = synth
    ag = report.agreement_table(res.presence)
    # with eta = 0.05 and prevalence p, agreement is high; kappa of a symmetric-noise rater ~ (1 - 2 eta)^2
    assert ag.loc[0, "kappa"] == pytest.approx(0.81, abs=0.03)


def test_rater_table_gold_and_consensus_agreement():
    items = _items([("g", "dog", 0.5, True, 1), ("a", "dog", 0.5, False, None), ("b", "dog", 0.5, False, None)])
    ratings = _ratings([("t", "g", "dog", "r1", 1), ("t", "g", "dog", "r2", 0),
                        ("t", "a", "dog", "r1", 1), ("t", "a", "dog", "r2", 1), ("t2", "a", "dog", "r2", 1),
                        ("t", "b", "dog", "r1", 0), ("t", "b", "dog", "r2", 1)])
    pres = pd.DataFrame({"image_id": ["g", "a", "b"], "concept": "dog", "aggregation": "bragg_model",
                         "presence": [0.9, 0.8, 0.3]})
    rt = report.rater_table(ratings, items, pres).set_index("rater")
    assert rt.loc["r1", "n_gold"] == 1 and rt.loc["r1", "gold_accuracy"] == 1.0
    assert rt.loc["r2", "gold_accuracy"] == 0.0
    assert rt.loc["r1", "consensus_agreement"] == 1.0 and rt.loc["r2", "consensus_agreement"] == 0.5
    assert rt.loc["r2", "n_ratings"] == 4 and rt.loc["r2", "n_items"] == 3 and rt.loc["r2", "n_tasks"] == 2
    assert (rt["consensus"] == "bragg_model").all()


def test_figure_png_and_pdf(synth, tmp_path):
    _, res = synth
    fig = report.estimates_figure(res.estimates)
    title = fig._suptitle.get_text()
    cov = res.estimates[res.estimates["aggregation"] == "bragg_model"]["covers_exact"].astype(bool)
    assert f"{cov.sum()}/{len(cov)}" in title and "BRAgg (model prior)" in title
    axes = fig.get_axes()
    assert axes[0].get_ylabel() and axes[1].get_xlabel() and axes[0].get_legend() is not None
    fig.savefig(tmp_path / "f.png")
    fig.savefig(tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"


# ---------------------------------------------------------------------------------------------
# the two scripts under Snakemake, with the contract's input/output/params names
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_scripts_under_snakemake(tmp_path):
    files = synthetic_crowd(n_explanations=12, n_inputs=800, n=40, seed=2, n_gold=10)
    crowd = tmp_path / "results" / "s" / "crowd"
    crowd.mkdir(parents=True)
    for name in ("explanations", "design", "items", "truth"):
        files[name].to_parquet(crowd / f"{name}.parquet")
    files["ratings"].to_parquet(crowd / "ratings.parquet")
    scripts = ROOT / "workflow" / "scripts"
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""
        C = "results/s/crowd/"
        AGG = {{"methods": ["majority", "bragg_uniform", "bragg_model", "bragg_per_input"], "beta": 0.05,
                "eta": "gold", "level": 0.95, "estimator": "unbiased"}}
        rule all:
            input: "results/s/tables/crowd_table3.csv"
        rule crowd_aggregate:
            input: explanations=C + "explanations.parquet", design=C + "design.parquet", item_table=C + "items.parquet",
                   ratings=C + "ratings.parquet", truth=C + "truth.parquet"
            output: estimates=C + "estimates.parquet", presence=C + "soft_presence.parquet"
            params: aggregate=AGG, raters_per_input=3, code="test"
            log: "logs/agg.log"
            script: "{scripts / 'crowd_aggregate.py'}"
        rule crowd_tables:
            input: estimates=C + "estimates.parquet", ratings=C + "ratings.parquet", item_table=C + "items.parquet",
                   presence=C + "soft_presence.parquet"
            output: table3="results/s/tables/crowd_table3.csv", table3_md="results/s/tables/crowd_table3.md",
                    ttest="results/s/tables/crowd_ttest.csv", agreement="results/s/tables/crowd_agreement.csv",
                    raters="results/s/tables/crowd_raters.csv", figure_png="results/s/figures/crowd_estimates.png",
                    figure_pdf="results/s/figures/crowd_estimates.pdf"
            params: aggregate=AGG, raters_per_input=3, code="test"
            log: "logs/tables.log"
            script: "{scripts / 'crowd_tables.py'}"
    """))
    snakemake = Path(sys.executable).with_name("snakemake")
    r = subprocess.run([str(snakemake), "-c1", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                       env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"),
                            "MPLBACKEND": "Agg", "HOME": str(tmp_path)})
    logs = "".join(p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log"))
    assert r.returncode == 0, r.stderr[-3000:] + logs
    est = pd.read_parquet(crowd / "estimates.parquet")
    assert len(est) == 12 * 4 and (est["eta_source"].isin(["gold", "n/a"])).all()
    assert est["rho_hat_truth"].notna().all()
    assert (crowd / "estimates.excluded.parquet").exists()
    t3 = pd.read_csv(tmp_path / "results/s/tables/crowd_table3.csv")
    assert "synth/layer: bragg_model" in t3.columns
    for f in ("crowd_ttest.csv", "crowd_agreement.csv", "crowd_raters.csv", "crowd_table3.md"):
        assert (tmp_path / "results/s/tables" / f).stat().st_size > 0
    assert (tmp_path / "results/s/figures/crowd_estimates.pdf").read_bytes()[:4] == b"%PDF"


def test_no_answers_yet_gives_nan_estimates_and_tables_without_crashing(tmp_path):
    files = synthetic_crowd(n_explanations=6, n_inputs=500, n=20, seed=9)
    empty = files["ratings"].iloc[:0]
    res = _run({**files, "ratings": empty})
    est = res.estimates
    assert est["rho_hat"].isna().all() and (est["n_unrated"] == 20).all()
    assert res.summary["eta_source"] == "fallback" and res.summary["explanations_without_estimate"] == 6
    assert res.excluded.count("explanation") == 6
    t = report.table3(est)
    assert (t.iloc[:2, 1:5] == "n/a").all().all()
    assert report.ttest_table(est)["p"].isna().all()
    ag = report.agreement_table(res.presence, 3)
    assert ag["n_items"].eq(0).all() and ag["kappa"].isna().all()
    assert len(report.rater_table(empty, files["items"], res.presence)) == 0
    report.estimates_figure(est).savefig(tmp_path / "empty.png")
