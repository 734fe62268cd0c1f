"""Tests for the survivors of `make mutate MODULES=crowd/aggregate` that docs/testing.md listed as open, and for
the headline aggregation's additions (the projection onto [-1, 1], heterogeneous synthetic raters).

Each test builds a small study by hand, so the expected value follows from the definitions in the module
docstring: counts, exclusions, the coverage dictionaries, the truth row's interval, the log lines.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from neuronaudit.crowd import aggregate as agg
from neuronaudit.crowd.aggregate import _design_arrays, aggregate_crowd, synthetic_crowd
from neuronaudit.crowd.interval import rho_interval

LOG = "neuronaudit.crowd.aggregate"


def _items(rows):
    df = pd.DataFrame(rows, columns=["image_id", "concept", "prior", "is_gold", "gold_answer"])
    df["gold_answer"] = df["gold_answer"].astype("Int8")
    return df


def _ratings(votes):
    rows = [("t", i, c, f"r{k}", v) for (i, c), vs in votes.items() for k, v in enumerate(vs)]
    return pd.DataFrame(rows, columns=["task", "image_id", "concept", "rater", "rating"]).assign(
        source="t", submitted_at=pd.NaT)


def _explanations(rows):
    """rows: (explanation_id, concept, exact_rho, automated_rho)."""
    ids = [r[0] for r in rows]
    return pd.DataFrame({
        "explanation_id": ids, "model": "m", "layer": "l", "neuron": [str(k) for k in range(len(ids))],
        "method": "meth", "structured": [{"kind": "simple", "concept": r[1]} for r in rows],
        "exact_rho": [r[2] for r in rows], "automated_rho": [r[3] for r in rows],
    })


def _design(rows):
    """rows: (explanation_id, image_id, weight, a_hat); draws numbered per explanation in order."""
    df = pd.DataFrame(rows, columns=["explanation_id", "image_id", "weight", "a_hat"])
    df["draw"] = df.groupby("explanation_id").cumcount()
    return df


IMGS = [f"x{k}" for k in range(6)]
A_HAT = [0.8, -0.4, 0.6, -0.2, 0.1, -0.5]
TRUTH = [1, 0, 1, 0, 1, 0]
VOTES = {("x0", "a"): [1, 1, 1], ("x1", "a"): [0, 0, 1], ("x2", "a"): [1, 0, 1], ("x3", "a"): [0, 0, 0],
         ("x4", "a"): [0, 1, 1], ("x5", "a"): [0, 0, 0]}


def _base(exact=0.4, automated=0.2, repeat=1):
    items = _items([(i, "a", 0.3, False, None) for i in IMGS])
    design = _design([("e1", i, 1.0, a) for i, a in zip(IMGS * repeat, A_HAT * repeat, strict=True)])
    expl = _explanations([("e1", "a", exact, automated)])
    truth = pd.DataFrame({"image_id": IMGS, "concept": "a", "truth": TRUTH})
    return expl, design, items, _ratings(VOTES), truth


def test_text_weight_is_our_error_not_pandas():
    design = _design([("e1", "x0", "heavy", 1.0)])
    with pytest.raises(ValueError) as e:
        _design_arrays(design, pd.Index(["e1"]))
    assert str(e.value) == "design row 0 ('e1', draw 0): weight = nan must be finite and > 0"


def test_warning_counts_items_with_no_rating(caplog):
    expl, design, items, ratings, _ = _base()
    ratings = ratings[~ratings["image_id"].isin(["x4", "x5"])]  # 2 items unrated, 0 short
    ratings = ratings[~((ratings["image_id"] == "x3") & (ratings["rater"] != "r0"))]  # x3: 1 rating of 3
    with caplog.at_level(logging.WARNING, logger=LOG):
        res = aggregate_crowd(expl, design, items, ratings, eta=0.1, planned_raters=3)
    assert "3 of 6 non-gold items have fewer than the planned 3 raters (2 have none)" in caplog.text
    assert res.summary["items_rated"] == 4 and res.summary["items"] == 6
    assert res.summary["items_fewer_raters_than_planned"] == 3


def test_truth_rows_outside_the_items_are_ignored():
    expl, design, items, ratings, truth = _base()
    # rows of pairs that are not items (truth 1 where the last item's truth is 0): never written anywhere
    extra = pd.concat([truth, pd.DataFrame({"image_id": ["zz", "x0"], "concept": ["a", "b"], "truth": [1, 1]})],
                      ignore_index=True)
    a = aggregate_crowd(expl, design, items, ratings, eta=0.1, truth=truth).estimates
    b = aggregate_crowd(expl, design, items, ratings, eta=0.1, truth=extra).estimates
    pd.testing.assert_frame_equal(a, b)
    assert np.isfinite(a["rho_hat_truth"]).all()


def test_truth_row_uses_its_own_interval():
    """rho_hat_truth, covers_exact_truth: the interval of the same draws scored with the true presence,
    written out with rho_interval; the same whatever aggregations are estimated. 24 draws, so that neither
    end of the truth's interval is clipped at -1 or 1."""
    expl, design, items, ratings, truth = _base(repeat=4)
    ref = rho_interval(np.array(A_HAT * 4), np.array(TRUTH * 4, dtype=float), np.ones(24))
    rho_t, lo_t, hi_t = float(ref.rho_hat), float(ref.lo), float(ref.hi)
    assert -1 < lo_t < rho_t < hi_t < 1
    # just inside and just outside both ends: any other row's bounds flip one of them
    for exact in (rho_t, lo_t - 1e-9, lo_t + 1e-9, hi_t - 1e-9, hi_t + 1e-9):
        ex = expl.assign(exact_rho=exact)
        for methods in (["majority"], ["bragg_uniform", "majority"], ["bragg_debiased", "bragg_model"]):
            est = aggregate_crowd(ex, design, items, ratings, eta=0.1, truth=truth, methods=methods).estimates
            assert est["rho_hat_truth"].to_numpy() == pytest.approx(rho_t)
            want = lo_t <= exact <= hi_t
            assert est["covers_exact_truth"].tolist() == [want] * len(methods), (exact, methods)


def test_draw_of_an_image_outside_the_items_is_unrated_and_counts_no_ratings():
    expl, design, items, ratings, _ = _base()
    design = pd.concat([design, _design([("e1", "unknown", 1.0, 0.1)]).assign(draw=6)], ignore_index=True)
    est = aggregate_crowd(expl, design, items, ratings, eta=0.1, methods=["majority"]).estimates
    assert est[["n_draws", "n_used", "n_unrated", "n_distinct", "n_ratings"]].iloc[0].tolist() == [7, 6, 1, 6, 18]


def test_ratings_of_a_draw_left_unrated_by_another_atom_are_not_counted():
    """"a AND b" at x0: a rated 3 times, b an item with no rating, so the draw is unrated and its 3 ratings
    of a are not the explanation's; at x1 both are rated (3 + 2 ratings)."""
    items = _items([("x0", "a", 0.3, False, None), ("x0", "b", 0.3, False, None),
                    ("x1", "a", 0.3, False, None), ("x1", "b", 0.3, False, None)])
    ratings = _ratings({("x0", "a"): [1, 1, 0], ("x1", "a"): [1, 1, 1], ("x1", "b"): [0, 1]})
    design = _design([("e1", "x0", 1.0, 1.0), ("e1", "x1", 1.0, -1.0)])
    expl = _explanations([("e1", "a", np.nan, np.nan)]).assign(
        structured=[{"kind": "compositional", "formula": "a AND b"}])
    est = aggregate_crowd(expl, design, items, ratings, eta=0.1, methods=["majority"]).estimates
    assert est[["n_used", "n_unrated", "n_distinct", "n_ratings"]].iloc[0].tolist() == [1, 1, 1, 5]


def test_single_item_counts_its_ratings_once():
    items = _items([("x0", "a", 0.3, False, None)])
    design = _design([("e1", "x0", 1.0, 1.0), ("e1", "x0", 1.0, 1.0), ("e2", "x0", 2.0, -1.0)])
    expl = _explanations([("e1", "a", np.nan, np.nan), ("e2", "a", np.nan, np.nan)])
    ratings = _ratings({("x0", "a"): [1, 0, 1, 1]})
    est = aggregate_crowd(expl, design, items, ratings, eta=0.1, methods=["majority"]).estimates
    assert est["n_ratings"].tolist() == [4, 4] and est["n_distinct"].tolist() == [1, 1]
    assert est["n_used"].tolist() == [2, 1]


def test_exclusions_of_undrawn_and_unrated_explanations_once_each_and_partial_count(caplog):
    """e1: 6 draws, one unrated (x5 has no rating); e2: no draw at all; e3: two draws of concept b, never
    rated. Each left-out explanation is recorded once, with its own reason."""
    expl, design, items, ratings, _ = _base()
    expl = pd.concat([expl, _explanations([("e2", "a", np.nan, np.nan), ("e3", "b", np.nan, np.nan)])],
                     ignore_index=True)
    design = pd.concat([design, _design([("e3", "x0", 1.0, 0.5)])], ignore_index=True)  # exactly one draw
    ratings = ratings[ratings["image_id"] != "x5"]
    with caplog.at_level(logging.WARNING, logger=LOG):
        res = aggregate_crowd(expl, design, items, ratings, eta=0.1, methods=["majority"])
    msgs = [r.getMessage() for r in caplog.records if "part of their draws" in r.getMessage()]
    assert msgs == ["1 explanations estimated on part of their draws (unrated draws left out: 2 in all)"]
    assert res.summary["explanations_partly_rated"] == 1 and res.summary["unrated_draws"] == 2
    assert res.summary["explanations_without_estimate"] == 2
    t = res.excluded.table()
    t = t[t["item"] == "explanation"]
    assert sorted(zip(t["name"], t["reason"], strict=True)) == [
        ("e2", "no draws in design.parquet"), ("e3", "no draw with every atom concept rated")]
    est = res.estimates.set_index("explanation_id")
    assert est.loc["e1", "n_unrated"] == 1 and est.loc["e3", "n_unrated"] == 1 and est.loc["e2", "n_draws"] == 0
    assert np.isnan(est.loc[["e2", "e3"], "rho_hat"]).all() and np.isfinite(est.loc["e1", "rho_hat"])


def test_text_scores_are_read_as_numbers_and_truth_column_is_float_without_truth():
    expl, design, items, ratings, _ = _base()
    expl = expl.assign(exact_rho="0.25", automated_rho="n/a")  # text that is no number: NaN, not an error
    est = aggregate_crowd(expl, design, items, ratings, eta=0.1, methods=["majority"]).estimates
    assert est["exact_rho"].tolist() == [0.25] and est["automated_rho"].isna().all()
    assert est["rho_hat_truth"].dtype == np.float64 and est["rho_hat_truth"].isna().all()
    assert est["covers_exact_truth"].isna().all() and str(est["covers_exact_truth"].dtype) == "boolean"


def test_no_item_at_all():
    expl, design, _, _, _ = _base()
    items = _items([]).astype({"image_id": object, "concept": object, "prior": float, "is_gold": bool})
    ratings = _ratings({})
    truth = pd.DataFrame({"image_id": pd.Series(dtype=object), "concept": pd.Series(dtype=object),
                          "truth": pd.Series(dtype=np.int8)})
    res = aggregate_crowd(expl, design, items, ratings, eta=0.1, truth=truth, methods=["majority", "bragg_model"])
    p = res.presence
    assert len(p) == 0 and list(p.columns) == agg.PRESENCE_COLUMNS and str(p["truth"].dtype) == "Int8"
    assert res.estimates["rho_hat"].isna().all() and res.summary["items_rated"] == 0
    assert res.summary["explanations_without_estimate"] == 1


def test_coverage_dictionaries_follow_the_methods_and_are_none_without_exact():
    expl, design, items, ratings, truth = _base()
    methods = ["bragg_model", "majority", "bragg_debiased"]
    res = aggregate_crowd(expl, design, items, ratings, eta=0.1, truth=truth, methods=methods)
    s, est = res.summary, res.estimates
    assert list(s["coverage"]) == methods and list(s["coverage_true_presence"]) == methods
    for m in methods:
        g = est[est["aggregation"] == m]
        assert s["coverage"][m] == float(g["covers_exact"].astype(bool).mean())
        assert s["coverage_true_presence"][m] == float(g["covers_exact_truth"].astype(bool).mean())
    unknown = aggregate_crowd(expl.assign(exact_rho=np.nan), design, items, ratings, eta=0.1, truth=truth,
                              methods=methods).summary
    assert unknown["coverage"] == {m: None for m in methods}
    assert unknown["coverage_true_presence"] is None  # no exact rho: no coverage of it either
    # one explanation with an exact score and one without: the mean runs over the known one only
    expl2 = pd.concat([expl, _explanations([("e2", "a", np.nan, np.nan)])], ignore_index=True)
    design2 = pd.concat([design, design[design["explanation_id"] == "e1"].assign(explanation_id="e2")],
                        ignore_index=True)
    s2 = aggregate_crowd(expl2, design2, items, ratings, eta=0.1, methods=methods).summary
    for m in methods:
        assert s2["coverage"][m] == s["coverage"][m]


def test_final_log_line_carries_the_eta_note(caplog):
    expl, design, items, ratings, _ = _base()
    with caplog.at_level(logging.INFO, logger=LOG):
        res = aggregate_crowd(expl, design, items, ratings, eta="gold", methods=["majority"])
    note = res.summary["eta_note"]
    assert note == "no rated gold item: eta by EM instead"
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("eta = ")][-1]
    assert line == (f"eta = {res.summary['eta']:.4f} (em, n = 18; {note}); 18 of 18 ratings kept; "
                    "1 explanations x 1 aggregations estimated")


def _unanimous(a_hat, c):
    """One explanation with a draw per image, unanimous votes equal to c, weights 1."""
    imgs = [f"p{k}" for k in range(len(a_hat))]
    items = _items([(i, "a", 0.3, False, None) for i in imgs])
    votes = {(i, "a"): [int(v)] * 3 for i, v in zip(imgs, c, strict=True)}
    design = _design([("e1", i, 1.0, a) for i, a in zip(imgs, a_hat, strict=True)])
    return _explanations([("e1", "a", 0.9, np.nan)]), design, items, _ratings(votes)


@pytest.mark.parametrize("a_hat,raw,want", [
    ([3.0, -3.0, 3.0, -3.0], 3.0, 1.0),      # M1 / sqrt(M2 - M2^2) = 1.5 / 0.5
    ([-1.5, 1.5, -1.5, 1.5], -1.5, -1.0),    # between -2 and -1
    ([1.5, -1.5, 1.5, -1.5], 1.5, 1.0),      # between 1 and 2
])
def test_estimates_outside_minus_one_one_are_projected(caplog, a_hat, raw, want):
    """Unanimous draws with c (1, 0, 1, 0), weights 1: the unbiased estimate is M1 / sqrt(M2 - M2^2)
    (rho_interval returns it); the aggregate reports the nearest bound, counts it, and its interval (clipped
    the same way) still contains it."""
    c = [1, 0, 1, 0]
    assert float(rho_interval(np.array(a_hat), np.array(c, dtype=float)).rho_hat) == pytest.approx(raw)
    with caplog.at_level(logging.WARNING, logger=LOG):
        res = aggregate_crowd(*_unanimous(a_hat, c), eta=0.1, methods=["majority", "bragg_model"])
    est = res.estimates.set_index("aggregation")
    assert est.loc["majority", "rho_hat"] == want
    assert est.loc["majority", "lo"] <= want <= est.loc["majority", "hi"]
    assert res.summary["estimates_clipped"]["majority"] == 1
    msgs = [r.getMessage() for r in caplog.records if "nearest bound" in r.getMessage()]
    n_model = res.summary["estimates_clipped"]["bragg_model"]
    assert msgs == ["estimates outside [-1, 1] set to the nearest bound: "
                    + str({"majority": 1, **({"bragg_model": n_model} if n_model else {})})]


def test_estimates_at_or_inside_the_bounds_are_left_alone(caplog):
    """a_hat (1, -1), c (1, 0): exactly 1.0 (M1 = 0.5, M2 = 0.5): not counted as clipped, no warning."""
    with caplog.at_level(logging.WARNING, logger=LOG):
        res = aggregate_crowd(*_unanimous([1.0, -1.0], [1, 0]), eta=0.1, methods=["majority"])
    assert res.estimates["rho_hat"].tolist() == [1.0]
    assert res.summary["estimates_clipped"] == {"majority": 0} and "nearest bound" not in caplog.text
    inside = aggregate_crowd(*_base()[:4], eta=0.1, methods=["majority"])
    ref = rho_interval(np.array(A_HAT), np.array([1.0, 0, 1, 0, 1, 0]), np.ones(6))
    assert inside.estimates["rho_hat"].iloc[0] == pytest.approx(float(ref.rho_hat))
    assert inside.summary["estimates_clipped"] == {"majority": 0}


def _rater_errors(files):
    """Each rater's observed share of wrong answers (index: rater number)."""
    r = files["ratings"]
    t = files["truth"].set_index(["image_id", "concept"])["truth"]
    c = t.reindex(pd.MultiIndex.from_frame(r[["image_id", "concept"]])).to_numpy()
    return pd.Series(r["rating"].to_numpy() != c).groupby(r["rater"].str[1:].astype(int).to_numpy()).mean()


@pytest.mark.parametrize("conc,spam", [(10.0, 0.0), (None, 0.3), (10.0, 0.2)])
def test_synthetic_rater_error_rates_follow_their_model(conc, spam):
    """Per-rater error rates drawn from the generator [seed, 1]: Beta(k eta, k (1 - eta)) with k =
    error_concentration (else eta), then a spammer_fraction of the pool at 0.5. Each rater's observed error
    rate agrees with its drawn one (about 180 answers each), and their means agree closely."""
    f = synthetic_crowd(n_explanations=30, n_inputs=1500, n=120, eta=0.2, seed=4, error_concentration=conc,
                        spammer_fraction=spam)
    rng = np.random.default_rng([4, 1])
    err = rng.beta(10.0 * 0.2, 10.0 * 0.8, size=60) if conc is not None else np.full(60, 0.2)
    err = np.where(rng.random(60) < spam, 0.5, err)
    seen = _rater_errors(f)
    assert seen.index.tolist() == list(range(60))
    assert abs(seen.mean() - err.mean()) < 0.015, (seen.mean(), err.mean())
    assert np.abs(seen.to_numpy() - err).max() < 0.15
    if conc is not None or spam:
        assert np.corrcoef(seen.to_numpy(), err)[0, 1] > 0.8


def test_synthetic_guide_strength_scales_the_guide_logit():
    """sigmoid(g (2c - 1) + noise) with the same noise: where two studies of different g share an item, its
    prior's logit differs by (g2 - g1)(2c - 1)."""
    a = synthetic_crowd(n_explanations=20, n_inputs=800, n=60, eta=0.1, seed=9)
    b = synthetic_crowd(n_explanations=20, n_inputs=800, n=60, eta=0.1, seed=9, guide_strength=0.5)
    m = a["items"].merge(b["items"], on=["image_id", "concept"], suffixes=("_a", "_b")).merge(
        a["truth"], on=["image_id", "concept"])
    assert len(m) > 100
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    np.testing.assert_allclose(logit(m["prior_a"]) - logit(m["prior_b"]), 1.5 * (2 * m["truth"] - 1), atol=1e-9)
    pd.testing.assert_frame_equal(a["explanations"].drop(columns=["automated_rho"]),
                                  b["explanations"].drop(columns=["automated_rho"]))


def test_synthetic_heterogeneous_raters_follow_their_model():
    """error_concentration k: per-rater error ~ Beta(k eta, k (1 - eta)) from the generator [seed, 1];
    spammer_fraction: that share of the pool answers with error 0.5; the default replays the old stream."""
    base = synthetic_crowd(n_explanations=30, n_inputs=1500, n=120, eta=0.2, seed=4)
    same = synthetic_crowd(n_explanations=30, n_inputs=1500, n=120, eta=0.2, seed=4, error_concentration=None,
                           spammer_fraction=0.0)
    for k in base:
        pd.testing.assert_frame_equal(base[k], same[k])
    het = synthetic_crowd(n_explanations=30, n_inputs=1500, n=120, eta=0.2, seed=4, error_concentration=10.0,
                          spammer_fraction=0.2)
    for k in ("explanations", "design", "items", "truth"):
        pd.testing.assert_frame_equal(base[k], het[k])
    rng = np.random.default_rng([4, 1])
    err = rng.beta(2.0, 8.0, size=60)
    err = np.where(rng.random(60) < 0.2, 0.5, err)
    r = het["ratings"]
    t = het["truth"].set_index(["image_id", "concept"])["truth"]
    c = t.reindex(pd.MultiIndex.from_frame(r[["image_id", "concept"]])).to_numpy()
    wrong = pd.Series(r["rating"].to_numpy() != c).groupby(r["rater"].str[1:].astype(int).to_numpy()).mean()
    # each rater's observed error rate agrees with its drawn rate (about 60 answers each)
    assert np.abs(wrong.to_numpy() - err[wrong.index]).max() < 0.25
    assert np.corrcoef(wrong.to_numpy(), err[wrong.index])[0, 1] > 0.8
    # and the flips used the same uniforms as the homogeneous run: where both error rates are below a
    # uniform neither flips, so an answer differs only where a uniform lies between 0.2 and the rater's rate
    same_answer = base["ratings"]["rating"].to_numpy() == r["rating"].to_numpy()
    assert same_answer.mean() > 0.6
