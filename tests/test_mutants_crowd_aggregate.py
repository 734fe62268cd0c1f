"""Tests written against the survivors of `make mutate MODULES=crowd/aggregate` (docs/testing.md).

Values are checked against definitions: EM on the per-item ratings (no histogram), the one-coin class means
summed by hand, the formula shapes written out, the full text of error messages, exclusions and warnings,
and ``synthetic_crowd`` replayed on the same random stream from its documented model.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuronaudit.aggregation import bragg_posterior, estimate_eta_em
from neuronaudit.crowd import aggregate as agg
from neuronaudit.crowd.aggregate import (
    _covers,
    _design_arrays,
    _em_eta,
    _formula_shape,
    _nullable_int8,
    aggregate_crowd,
    bragg_class_means,
    synthetic_crowd,
)


@pytest.fixture(autouse=True)
def _fresh_shape_cache():
    """_formula_shape is an lru_cache: a mutant forked from a process that already parsed a formula would
    never run its own code (the trap of docs/testing.md)."""
    _formula_shape.cache_clear()
    yield
    _formula_shape.cache_clear()


@pytest.fixture(scope="module")
def small():
    return synthetic_crowd(n_explanations=6, n_inputs=300, n=25, raters_per_input=3, eta=0.1, seed=2, n_gold=4)


def _run(files, **kw):
    return aggregate_crowd(files["explanations"], files["design"], files["items"], files["ratings"], **kw)


# -- formula shapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("formula,shape,names", [
    ("dog", "c0", ("dog",)),
    ("dog AND NOT grass", "c0 AND NOT c1", ("dog", "grass")),
    ("(dog OR cat) AND NOT (grass AND dog)", "(c0 OR c1) AND NOT (c2 AND c0)", ("dog", "cat", "grass")),
    ("NOT (sky OR (tree AND sky))", "NOT (c0 OR c1 AND c0)", ("sky", "tree")),  # AND binds tighter
])
def test_formula_shape_renames_concepts_in_order_of_appearance(formula, shape, names):
    got_shape, got_names = _formula_shape(formula)
    assert (got_shape, got_names) == (shape, names)


def test_compositional_presence_follows_probabilistic_logic(small):
    # one explanation "a AND NOT b" on one image: presence = p_a (1 - p_b); "a OR b": 1 - (1-p_a)(1-p_b)
    items = pd.DataFrame({"image_id": ["i", "i"], "concept": ["a", "b"]})
    vals = np.array([[0.6, 0.3]])
    for formula, exp in (("a AND NOT b", 0.6 * 0.7), ("a OR b", 1 - 0.4 * 0.7), ("NOT a OR b", 1 - 0.6 * 0.7)):
        s = agg.explanation_presence([{"kind": "compositional", "formula": formula}], np.array([0]), np.array(["i"]),
                                     items, vals)
        assert s[0, 0] == pytest.approx(exp, rel=1e-12), formula


# -- eta by EM ---------------------------------------------------------------------------------------

def test_em_eta_uses_every_rated_item_and_only_those():
    yes = np.array([0, 1, 3, 2, 0, 1, 1, 0, 3, 0])
    total = np.array([0, 1, 3, 3, 3, 1, 2, 1, 3, 0])
    keep = total >= 1
    ref = estimate_eta_em(yes[keep], total[keep])  # one row per item, no histogram
    assert _em_eta(yes, total) == pytest.approx(float(np.asarray(ref.eta)), rel=1e-7)
    # items with a single rating enter the likelihood: dropping them changes eta
    two = total >= 2
    assert abs(_em_eta(yes[two], total[two]) - _em_eta(yes, total)) > 1e-5


def test_em_eta_needs_two_ratings_somewhere():
    with pytest.raises(ValueError) as e:
        _em_eta(np.array([1, 0, 0]), np.array([1, 1, 0]))
    assert str(e.value) == "EM for eta needs items with at least 2 ratings"


# -- class means of the debiased presence ---------------------------------------------------------------

def test_bragg_class_means_by_hand():
    total = np.array([0, 1, 3, 5])
    prior = np.array([0.3, 0.999, 0.0005, 0.5])
    eta, eps = 0.15, 0.2
    t1, t0 = bragg_class_means(total, eta, prior, eps=eps)
    for i, m in enumerate(total):
        e1 = sum(stats.binom.pmf(k, m, 1 - eta) * bragg_posterior(k, m, eta, prior=prior[i], eps=eps)
                 for k in range(m + 1))
        e0 = sum(stats.binom.pmf(k, m, eta) * bragg_posterior(k, m, eta, prior=prior[i], eps=eps) for k in range(m + 1))
        assert t1[i] == pytest.approx(float(e1), rel=1e-12) and t0[i] == pytest.approx(float(e0), rel=1e-12)
    e1, e0 = bragg_class_means(np.zeros(0, dtype=int), eta, 0.3)
    assert e1.shape == e0.shape == (0,)


# -- small helpers -----------------------------------------------------------------------------------

def test_nullable_int8():
    out = _nullable_int8(None, 3)
    assert out.dtype == np.float64 and out.shape == (3,) and np.isnan(out).all()
    s = pd.Series(pd.array([1, pd.NA, 0], dtype="Int8"))
    np.testing.assert_array_equal(_nullable_int8(s, 3), [1.0, np.nan, 0.0])
    got = _nullable_int8(pd.Series(["1", "x", None], dtype=object), 3)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [1.0, np.nan, np.nan])


def test_covers_closed_interval_and_nulls():
    lo, hi = np.array([0.1, 0.1, 0.1, np.nan, 0.1]), np.array([0.3, 0.3, 0.3, np.nan, 0.3])
    exact = np.array([0.1, 0.3, 0.31, 0.2, np.nan])
    rho = np.array([0.2, 0.2, 0.2, 0.0, 0.2])
    out = _covers(lo, hi, exact, rho)
    assert str(out.dtype) == "boolean"
    assert out.tolist() == [True, True, False, False, pd.NA]
    out2 = _covers(lo, hi, np.full(5, 0.2), np.array([0.2, np.nan, 0.2, 0.2, 0.2]))
    assert out2.tolist() == [True, pd.NA, True, False, True]


def _design(rows):
    return pd.DataFrame(rows, columns=["explanation_id", "draw", "image_id", "weight", "a_hat"])


def test_design_arrays_order_and_errors():
    ids = pd.Index(["e0", "e1"])
    d = _design_arrays(_design([("e1", 1, "b", 2.0, 0.5), ("e0", 1, "c", 1.0, 0.1), ("e1", 0, "a", 1.5, -0.2),
                                ("e0", 0, "d", 3.0, 0.0)]), ids)
    np.testing.assert_array_equal(d["expl"], [0, 0, 1, 1])
    np.testing.assert_array_equal(d["draw"], [0, 1, 0, 1])
    assert list(d["image"]) == ["d", "c", "a", "b"]
    np.testing.assert_array_equal(d["weight"], [3.0, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(d["a_hat"], [0.0, 0.1, -0.2, 0.5])
    with pytest.raises(ValueError) as e:
        _design_arrays(_design([("e0", 0, "a", 1.0, 0.0), ("e9", 0, "a", 1.0, 0.0), ("e8", 1, "a", 1.0, 0.0)]), ids)
    assert str(e.value) == ("design row 1: explanation_id 'e9' is not in explanations.parquet (2 such rows); "
                            "rebuild the crowd design")
    with pytest.raises(ValueError) as e:
        _design_arrays(_design([("e0", 0, "a", 1.0, 0.0), ("e0", 1, "a", 0.0, 0.0)]), ids)
    # (the value prints as np.float64(0.0) under numpy 2: reported to the lead, see docs/testing.md)
    assert re.fullmatch(r"design row 1 \('e0', draw 1\): weight = (np\.float64\()?0\.0\)? must be finite and > 0",
                        str(e.value)), str(e.value)
    with pytest.raises(ValueError) as e:
        _design_arrays(_design([("e0", 0, "a", 1.0, 0.0), ("e1", 3, "a", 1.0, "high")]), ids)
    assert re.fullmatch(r"design row 1 \('e1', draw 3\): a_hat = (np\.float64\()?nan\)? must be finite", str(e.value)), \
        str(e.value)
    with pytest.raises(ValueError) as e:
        _design_arrays(_design([("e0", 0, "a", 1.0, 0.0)]).drop(columns=["weight"]), ids)
    assert str(e.value).startswith("the design table lacks columns ['weight'] (has ")


# -- aggregate_crowd: arguments, messages, exclusions, optional columns ------------------------------------

def test_bad_arguments_are_named(small):
    f = small
    with pytest.raises(ValueError) as e:
        _run(f, estimator="ratio")
    assert str(e.value) == "crowd.aggregate.estimator must be one of ('unbiased', 'self_normalised'), got 'ratio'"
    for methods in (["majority", "vote"], []):
        with pytest.raises(ValueError) as e:
            _run(f, methods=methods)
        assert str(e.value) == (f"crowd.aggregate.methods {methods}: expected a non-empty subset of "
                                f"{list(agg.ALL_AGGREGATIONS)}")
    with pytest.raises(ValueError) as e:
        aggregate_crowd(f["explanations"].drop(columns=["structured"]), f["design"], f["items"], f["ratings"])
    assert str(e.value).startswith("the explanations table lacks columns ['structured'] (has ")
    ex = pd.concat([f["explanations"], f["explanations"].iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError) as e:
        aggregate_crowd(ex, f["design"], f["items"], f["ratings"])
    assert str(e.value) == (f"explanations.parquet repeats explanation_id {f['explanations']['explanation_id'][2]!r}; "
                            "one row per explanation")


def test_unknown_items_and_repeats_are_recorded_and_logged(small, caplog):
    f = small
    extra = f["ratings"].iloc[:3].copy()
    extra["image_id"] = ["nowhere", "nowhere", "elsewhere"]
    again = f["ratings"].iloc[[5, 6]].assign(rating=lambda d: 1 - d["rating"], task="t-late")
    ratings = pd.concat([f["ratings"], extra, again], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="neuronaudit.crowd.aggregate"):
        res = aggregate_crowd(f["explanations"], f["design"], f["items"], ratings)
    t = res.excluded.table()
    rows = t[t["item"] == "rating item"]
    assert (rows["stage"] == "crowd_aggregate").all()
    assert sorted(rows["name"]) == sorted({f"nowhere|{c}" for c in extra["concept"][:2]} | {f"elsewhere|{extra['concept'].iloc[2]}"})
    assert (rows["reason"] == "rated (image_id|concept) is not in items.parquet (3 ratings left out)").all()
    assert res.excluded.stage == "crowd_aggregate"
    msgs = [r.getMessage() for r in caplog.records]
    assert ("2 repeated answers of a rater to the same item counted once (the last submitted); "
            "2 of those items had disagreeing answers") in msgs
    excl = [r for r in caplog.records if r.getMessage().startswith("crowd_aggregate: 2 rating item(s) left out: "
                                                                   "rated (image_id|concept) is not in items.parquet")]
    assert len(excl) == 1 and excl[0].name == "neuronaudit.crowd.aggregate", msgs


def test_items_without_optional_columns(small):
    f = small
    items = f["items"][["image_id", "concept"]]
    res = aggregate_crowd(f["explanations"], f["design"], items, f["ratings"], eta=0.1)
    s = res.summary
    assert s["gold_items"] == 0 and s["items_without_prior"] == len(items)
    # without a prior, the model prior is beta: the two BRAgg presences agree
    p = res.presence.pivot_table(index=["image_id", "concept"], columns="aggregation", values="presence")
    np.testing.assert_allclose(p["bragg_model"], p["bragg_uniform"], rtol=1e-12, equal_nan=True)
    assert res.presence["is_gold"].dtype == bool and not res.presence["is_gold"].any()


def test_is_gold_with_missing_values_and_text_priors(small):
    f = small
    items = f["items"].copy()
    gold = items["is_gold"].to_numpy()
    items["is_gold"] = pd.array([True if g else (pd.NA if i % 2 else False) for i, g in enumerate(gold)],
                                dtype="boolean")
    items["prior"] = items["prior"].astype(object)
    items.loc[items.index[:3], "prior"] = "unknown"
    res = aggregate_crowd(f["explanations"], f["design"], items, f["ratings"])
    assert res.summary["gold_items"] == int(gold.sum())  # a missing flag is not gold
    assert res.summary["items_without_prior"] == 3 - int(gold[:3].sum())
    obj = f["items"].assign(is_gold=f["items"]["is_gold"].astype(object))
    res2 = aggregate_crowd(f["explanations"], f["design"], obj, f["ratings"])
    assert res2.summary["gold_items"] == int(gold.sum())


def test_gold_eta_through_aggregate(small):
    f = small
    res = _run(f, eta="gold")
    items = f["items"]
    gold = items[items["is_gold"]]
    r = f["ratings"].merge(gold[["image_id", "concept", "gold_answer"]], on=["image_id", "concept"])
    share = float((r["rating"] != r["gold_answer"].astype(int)).mean())
    assert res.summary["eta_source"] == "gold" and res.summary["eta_n"] == len(r)
    assert res.summary["eta"] == pytest.approx(min(max(share, 1e-3), 0.5 - 1e-6))


def test_planned_raters_is_the_most_common_count_of_rated_non_gold_items(small):
    f = small
    items = f["items"]
    non_gold = items.loc[~items["is_gold"], ["image_id", "concept"]]
    # gold items rated 5 times, one non-gold item unrated, two rated once
    gold = items.loc[items["is_gold"], ["image_id", "concept"]]
    gold_r = gold.loc[gold.index.repeat(5)].assign(task="g", rater=[f"G{i}" for i in range(5 * len(gold))],
                                                   rating=1, source="s", submitted_at=pd.NaT)
    drop = non_gold.iloc[0]
    ratings = f["ratings"][~f["ratings"]["image_id"].isin(gold["image_id"]) |
                           ~f["ratings"]["concept"].isin(gold["concept"])]
    ratings = ratings[~((ratings["image_id"] == drop["image_id"]) & (ratings["concept"] == drop["concept"]))]
    for j in (1, 2):
        it = non_gold.iloc[j]
        m = (ratings["image_id"] == it["image_id"]) & (ratings["concept"] == it["concept"])
        ratings = ratings.drop(ratings.index[m][1:])
    ratings = pd.concat([ratings, gold_r], ignore_index=True)
    res = aggregate_crowd(f["explanations"], f["design"], items, ratings)
    assert res.summary["planned_raters"] == 3
    assert res.summary["items_fewer_raters_than_planned"] == 3
    only_one = ratings.groupby(["image_id", "concept"]).head(1)
    res1 = aggregate_crowd(f["explanations"], f["design"], items, only_one, eta=0.1)
    assert res1.summary["planned_raters"] == 1 and res1.summary["items_fewer_raters_than_planned"] == 1


def test_explanations_with_an_index_column_and_any_row_index(small):
    f = small
    ex = f["explanations"].assign(index=np.arange(len(f["explanations"]))[::-1])
    ex.index = np.arange(10, 10 + len(ex))
    res = aggregate_crowd(ex, f["design"], f["items"], f["ratings"], eta=0.1)
    ref = aggregate_crowd(f["explanations"], f["design"], f["items"], f["ratings"], eta=0.1)
    pd.testing.assert_frame_equal(res.estimates, ref.estimates)


# -- synthetic_crowd ---------------------------------------------------------------------------------

def _replay(n_explanations=50, n_inputs=5000, n=180, raters_per_input=3, eta=0.05, seed=0, gamma=0.2, n_gold=0,
            pool=60, methods=("method_a", "method_b"), prevalence=(0.05, 0.3), signal=(0.3, 2.0)):
    """The docstring's model on the same random stream."""
    rng = np.random.default_rng(seed)
    prev = rng.uniform(prevalence[0], prevalence[1], size=(n_explanations, 1))
    c = rng.random((n_explanations, n_inputs)) < prev
    c[:, 0], c[:, 1] = True, False
    a = rng.uniform(signal[0], signal[1], size=(n_explanations, 1)) * c + rng.standard_normal(c.shape)
    a_hat = (a - a.mean(axis=1, keepdims=True)) / a.std(axis=1, keepdims=True)
    guide = 1 / (1 + np.exp(-(2 * (2 * c - 1.0) + rng.standard_normal(c.shape))))
    q = np.abs(a_hat) * guide
    q = (1 - gamma) * q / q.sum(axis=1, keepdims=True) + gamma / n_inputs
    u = rng.random((n_explanations, n))
    idx = np.empty((n_explanations, n), dtype=np.int64)
    for e in range(n_explanations):
        cdf = np.cumsum(q[e]) / np.cumsum(q[e])[-1]
        idx[e] = np.minimum(np.searchsorted(cdf, u[e], side="right"), n_inputs - 1)
    exact = np.array([np.mean(a_hat[e] * c[e]) / np.sqrt(c[e].mean() * (1 - c[e].mean())) for e in range(n_explanations)])
    automated = exact + rng.normal(0, 0.05, n_explanations)
    drawn = sorted({(e, int(i)) for e in range(n_explanations) for i in idx[e]})
    g_e, g_i = rng.integers(0, n_explanations, n_gold), rng.integers(0, n_inputs, n_gold)
    gold = sorted({(int(e), int(i)) for e, i in zip(g_e, g_i, strict=True)} - set(drawn))
    pairs = drawn + gold
    truth = np.array([c[e, i] for e, i in pairs], dtype=np.int8)
    base = rng.integers(0, pool, len(pairs))
    flips = rng.random((len(pairs), raters_per_input)) < eta
    return {"c": c, "a_hat": a_hat, "guide": guide, "q": q, "idx": idx, "exact": exact, "automated": automated,
            "pairs": pairs, "n_drawn": len(drawn), "truth": truth, "base": base, "flips": flips}


@pytest.mark.parametrize("kw", [{}, {"n_explanations": 5, "n_inputs": 400, "n": 30, "raters_per_input": 4, "eta": 0.2,
                                     "seed": 3, "gamma": 0.5, "n_gold": 6, "pool": 9, "methods": ("x", "y", "z"),
                                     "prevalence": (0.2, 0.4), "signal": (1.0, 1.5)}])
def test_synthetic_crowd_replays_its_documented_model(kw):
    got = synthetic_crowd(**kw)
    r = _replay(**kw)
    e_n, n = r["idx"].shape
    big_n = r["c"].shape[1]
    m = kw.get("raters_per_input", 3)
    pool = kw.get("pool", 60)
    meth = list(kw.get("methods", ("method_a", "method_b")))
    ex = got["explanations"]
    assert list(ex["explanation_id"]) == [f"synth/layer/{k}/{meth[k % len(meth)]}" for k in range(e_n)]
    assert list(ex["method"]) == [meth[k % len(meth)] for k in range(e_n)]
    assert list(ex["neuron"]) == [str(k) for k in range(e_n)] and (ex["model"] == "synth").all()
    assert (ex["layer"] == "layer").all() and (ex["n_population"] == big_n).all()
    assert list(ex["structured"]) == [json.dumps({"kind": "simple", "concept": f"concept{k}"}) for k in range(e_n)]
    assert list(ex["concepts"]) == [json.dumps([f"concept{k}"]) for k in range(e_n)]
    np.testing.assert_allclose(ex["exact_rho"], r["exact"], rtol=1e-10)
    np.testing.assert_allclose(ex["automated_rho"], r["automated"], rtol=1e-10)
    d = got["design"]
    assert len(d) == e_n * n
    np.testing.assert_array_equal(d["draw"], np.tile(np.arange(n), e_n))
    rows = np.repeat(np.arange(e_n), n)
    flat = r["idx"].ravel()
    assert list(d["image_id"]) == [f"img{i:06d}" for i in flat]
    np.testing.assert_allclose(d["q"], r["q"][rows, flat], rtol=1e-12)
    np.testing.assert_allclose(d["weight"], 1 / (big_n * r["q"][rows, flat]), rtol=1e-12)
    np.testing.assert_allclose(d["a_hat"], r["a_hat"][rows, flat], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d["c_guide"], r["guide"][rows, flat], rtol=1e-12)
    it = got["items"]
    assert list(zip(it["image_id"], it["concept"], strict=True)) == [(f"img{i:06d}", f"concept{e}") for e, i in r["pairs"]]
    np.testing.assert_allclose(it["prior"], [r["guide"][e, i] for e, i in r["pairs"]], rtol=1e-12)
    np.testing.assert_array_equal(it["is_gold"], np.arange(len(r["pairs"])) >= r["n_drawn"])
    ga = it["gold_answer"]
    assert ga.isna().tolist() == (~it["is_gold"]).tolist()
    np.testing.assert_array_equal(ga[it["is_gold"]].astype(int), r["truth"][it["is_gold"].to_numpy()])
    rt = got["ratings"]
    rep = np.repeat(np.arange(len(r["pairs"])), m)
    raters = (r["base"][:, None] + np.arange(m)[None, :]) % pool
    assert list(rt["rater"]) == [f"W{x}" for x in raters.ravel()]
    np.testing.assert_array_equal(rt["rating"], (r["truth"][:, None] ^ r["flips"]).ravel())
    assert list(rt["task"]) == [f"t{k // 15}" for k in rep]
    assert list(rt["image_id"]) == list(it["image_id"].to_numpy()[rep])
    assert (rt["source"] == "synthetic").all() and rt["submitted_at"].isna().all()
    assert str(rt["submitted_at"].dtype) == "datetime64[ns, UTC]"
    tr = got["truth"]
    np.testing.assert_array_equal(tr["truth"], r["truth"])
    assert (tr["truth_source"] == "label").all()


def test_synthetic_crowd_schema_types_and_gold_items_apart_from_drawn_ones():
    """docs/schemas.md: draw int32, rating int8, gold_answer nullable Int8; a gold item never repeats a drawn
    (image, concept) pair, and its gold answer is the truth."""
    got = synthetic_crowd(n_explanations=2, n_inputs=40, n=30, raters_per_input=3, eta=0.1, seed=5, n_gold=80,
                          prevalence=(0.4, 0.6))
    assert got["design"]["draw"].dtype == np.int32
    assert got["ratings"]["rating"].dtype == np.int8
    it = got["items"]
    assert str(it["gold_answer"].dtype) == "Int8"
    assert not it.duplicated(["image_id", "concept"]).any()
    gold = it["is_gold"].to_numpy()
    assert gold.sum() > 5
    truth = got["truth"]["truth"].to_numpy()
    np.testing.assert_array_equal(it.loc[gold, "gold_answer"].astype(int).to_numpy(), truth[gold])
    assert truth[gold].min() == 0 and truth[gold].max() == 1
    assert it.loc[~gold, "gold_answer"].isna().all()


# -- second round: the survivors of the whole module ---------------------------------------------------

def _perfect(files):
    """The same files with every rating equal to the truth (eta = 0): majority presence = the truth."""
    f = dict(files)
    t = files["truth"].set_index(["image_id", "concept"])["truth"]
    r = files["ratings"].copy()
    r["rating"] = t.loc[list(zip(r["image_id"], r["concept"], strict=True))].to_numpy().astype(np.int8)
    f["ratings"] = r
    return f


def test_truth_row_is_the_estimate_perfect_raters_give(small):
    f = _perfect(small)
    res = _run(f, truth=f["truth"], methods=["majority", "bragg_uniform", "bragg_per_input"], eta=0.1)
    est = res.estimates
    maj = est[est["aggregation"] == "majority"].reset_index(drop=True)
    for m in ("majority", "bragg_uniform", "bragg_per_input"):
        e = est[est["aggregation"] == m].reset_index(drop=True)
        np.testing.assert_array_equal(e["rho_hat_truth"], maj["rho_hat"])
        assert e["covers_exact_truth"].tolist() == maj["covers_exact"].tolist()
    assert not np.allclose(est[est["aggregation"] == "bragg_uniform"]["rho_hat"], maj["rho_hat"])
    none = _run(f, eta=0.1)
    assert none.estimates["rho_hat_truth"].isna().all()
    assert str(none.estimates["covers_exact_truth"].dtype) == "boolean" and none.estimates["covers_exact_truth"].isna().all()


def test_truth_table_errors_unknown_rows_and_text(small):
    f = small
    with pytest.raises(ValueError) as e:
        _run(f, truth=f["truth"].drop(columns=["truth"]))
    assert str(e.value).startswith("the truth table lacks columns ['truth'] (has ")
    extra = pd.DataFrame({"image_id": ["nowhere"], "concept": ["concept0"], "truth": [1], "truth_source": ["label"]})
    tr = pd.concat([f["truth"], extra], ignore_index=True).astype({"truth": object})
    tr.loc[0, "truth"] = "unknown"
    res = _run(f, truth=tr, eta=0.1)
    ref = _run(f, truth=f["truth"], eta=0.1)
    assert res.presence["truth"].isna().sum() == ref.presence["truth"].isna().sum() + len(res.summary["coverage"])
    assert res.estimates["rho_hat_truth"].notna().any()


def test_estimate_columns_types_and_eta_rows(small):
    res = _run(small, methods=list(agg.ALL_AGGREGATIONS), eta=0.1)
    est = res.estimates
    for c in ("n_draws", "n_used", "n_unrated", "n_distinct", "n_ratings"):
        assert est[c].dtype == np.int64, c
    assert est["degenerate"].dtype == bool
    for m in agg.ALL_AGGREGATIONS:
        rows = est[est["aggregation"] == m]
        uses = m in ("bragg_uniform", "bragg_model", "bragg_debiased")
        assert (rows["eta"] == 0.1).all() if uses else rows["eta"].isna().all(), m
        assert (rows["eta_source"] == ("config" if uses else "n/a")).all(), m
    ex = small["explanations"]
    for _, g in est.groupby("aggregation"):
        np.testing.assert_array_equal(g["automated_rho"], ex["automated_rho"])
        np.testing.assert_array_equal(g["exact_rho"], ex["exact_rho"])


def test_missing_or_text_scores_of_explanations(small):
    f = small
    ex = f["explanations"].drop(columns=["automated_rho"]).astype({"exact_rho": object})
    ex.loc[1, "exact_rho"] = "n/a"
    res = aggregate_crowd(ex, f["design"], f["items"], f["ratings"], eta=0.1)
    est = res.estimates
    assert est["automated_rho"].dtype == np.float64 and est["automated_rho"].isna().all()
    assert est.loc[est["explanation_id"] == ex["explanation_id"][1], "exact_rho"].isna().all()
    assert est["exact_rho"].notna().sum() == len(agg.AGGREGATIONS) * (len(ex) - 1)


def test_counts_per_explanation_against_their_definitions(small):
    f = small
    res = _run(f, eta=0.1)
    est = res.estimates[res.estimates["aggregation"] == "majority"].set_index("explanation_id")
    d = f["design"]
    concept = dict(zip(f["explanations"]["explanation_id"], f["explanations"]["explanation"], strict=True))
    d = d.assign(concept=d["explanation_id"].map(concept))
    per_item = f["ratings"].groupby(["image_id", "concept"]).size().rename("n").reset_index()
    d = d.merge(per_item, on=["image_id", "concept"], how="left")
    for eid, g in d.groupby("explanation_id"):
        rated = g[g["n"].notna()]
        assert est.loc[eid, "n_draws"] == len(g) and est.loc[eid, "n_used"] == len(rated)
        assert est.loc[eid, "n_distinct"] == rated["image_id"].nunique()
        assert est.loc[eid, "n_ratings"] == rated.drop_duplicates("image_id")["n"].sum()


def test_partly_rated_unrated_and_undrawn_explanations(small, caplog):
    f = small
    ex = f["explanations"]
    ids = ex["explanation_id"].tolist()
    design = f["design"][f["design"]["explanation_id"] != ids[-1]]  # the last explanation has no draws
    c1 = ex.loc[1, "explanation"]
    d1 = design[design["explanation_id"] == ids[1]]
    ratings = f["ratings"][~f["ratings"]["concept"].isin([c1])]  # explanation 1: no rating at all
    c2 = ex.loc[2, "explanation"]
    d2 = design[design["explanation_id"] == ids[2]]
    keep_img = d2["image_id"].iloc[0]  # explanation 2: only the first drawn image rated
    ratings = ratings[(ratings["concept"] != c2) | (ratings["image_id"] == keep_img)]
    c3 = ex.loc[3, "explanation"]
    drop_img = design[design["explanation_id"] == ids[3]]["image_id"].iloc[0]  # explanation 3: one image unrated
    ratings = ratings[(ratings["concept"] != c3) | (ratings["image_id"] != drop_img)]
    with caplog.at_level(logging.WARNING, logger="neuronaudit.crowd.aggregate"):
        res = aggregate_crowd(ex, design, f["items"], ratings, eta=0.1, level=0.8)
    est = res.estimates[res.estimates["aggregation"] == "majority"].set_index("explanation_id")
    n2 = int((d2["image_id"] == keep_img).sum())
    n3 = int((design[design["explanation_id"] == ids[3]]["image_id"] != drop_img).sum())
    assert est.loc[ids[1], "n_used"] == 0 and np.isnan(est.loc[ids[1], "rho_hat"]) and not est.loc[ids[1], "degenerate"]
    assert est.loc[ids[-1], "n_draws"] == 0 and np.isnan(est.loc[ids[-1], "rho_hat"])
    assert est.loc[ids[2], "n_used"] == n2 and est.loc[ids[3], "n_used"] == n3
    reasons = res.excluded.reasons("explanation")
    assert reasons == {ids[-1]: "no draws in design.parquet", ids[1]: "no draw with every atom concept rated"}
    partial = int(((est["n_used"] > 0) & (est["n_used"] < est["n_draws"])).sum())
    assert res.summary["explanations_partly_rated"] == partial >= 2
    assert res.summary["explanations_without_estimate"] == 2
    unrated = int((est["n_draws"] - est["n_used"]).sum())
    msgs = [r.getMessage() for r in caplog.records]
    assert f"{partial} explanations estimated on part of their draws (unrated draws left out: {unrated} in all)" in msgs
    # the level reaches the interval: unclipped widths are 2 z(0.8) se
    ok = est[(est["n_used"] > 1) & (est["hi"] < 1) & (est["lo"] > -1) & ~est["degenerate"]]
    assert len(ok)
    np.testing.assert_allclose(ok["hi"] - ok["lo"], 2 * stats.norm.ppf(0.9) * ok["se"], rtol=1e-9)
    assert set(d1["image_id"])  # (explanation 1 had draws)


def test_one_rated_draw_is_degenerate_not_missing(small):
    f = small
    ex = f["explanations"]
    eid, concept = ex["explanation_id"][0], ex["explanation"][0]
    first = f["design"][f["design"]["explanation_id"] == eid]["image_id"].iloc[0]
    design = f["design"][(f["design"]["explanation_id"] != eid) | (f["design"]["image_id"] == first)]
    design = design[~((design["explanation_id"] == eid) & design.duplicated(["explanation_id", "image_id"]))]
    res = aggregate_crowd(ex, design, f["items"], f["ratings"], eta=0.1)
    row = res.estimates[(res.estimates["explanation_id"] == eid) & (res.estimates["aggregation"] == "majority")].iloc[0]
    # one draw: an estimate (w a c / sqrt(w c - (w c)^2) for c = 1) without a standard error
    assert row["n_used"] == 1 and np.isfinite(row["rho_hat"]) and np.isnan(row["se"])
    assert concept


def test_beta_and_prior_eps_reach_the_presence(small):
    f = small
    res = _run(f, beta=0.3, prior_eps=0.1, eta=0.2, methods=["bragg_uniform", "bragg_model"])
    p = res.presence
    u = p[(p["aggregation"] == "bragg_uniform") & (p["n_ratings"] > 0)]
    exp = bragg_posterior(u["n_yes"].to_numpy(), u["n_ratings"].to_numpy(), 0.2, prior=0.3, eps=0.1)
    np.testing.assert_allclose(u["presence"], exp, rtol=1e-12)
    mdl = p[(p["aggregation"] == "bragg_model") & (p["n_ratings"] > 0)]
    exp = bragg_posterior(mdl["n_yes"].to_numpy(), mdl["n_ratings"].to_numpy(), 0.2, prior=mdl["prior"].to_numpy(),
                          eps=0.1)
    np.testing.assert_allclose(mdl["presence"], exp, rtol=1e-12)


@pytest.mark.parametrize("methods,warned", [(["majority", "bragg_uniform"], False), (["bragg_model"], True),
                                            (["bragg_per_input"], True), (["bragg_debiased"], True),
                                            (["bragg_model", "bragg_per_input", "bragg_debiased"], True)])
def test_missing_prior_warning_only_for_model_priors(small, caplog, methods, warned):
    f = small
    items = f["items"].copy()
    items.loc[items.index[~items["is_gold"]][:2], "prior"] = np.nan
    with caplog.at_level(logging.WARNING, logger="neuronaudit.crowd.aggregate"):
        _run({**f, "items": items}, methods=methods, eta=0.1, beta=0.25)
    msg = "2 items have no model prior; BRAgg's model prior falls back to beta = 0.25 there"
    assert (msg in [r.getMessage() for r in caplog.records]) == warned


def test_fewer_raters_than_planned_warning(small, caplog):
    f = small
    items = f["items"]
    ng = items.loc[~items["is_gold"], ["image_id", "concept"]]
    a, b = ng.iloc[0], ng.iloc[1]
    r = f["ratings"]
    drop_a = (r["image_id"] == a["image_id"]) & (r["concept"] == a["concept"])
    one_b = (r["image_id"] == b["image_id"]) & (r["concept"] == b["concept"])
    r = r[~drop_a & ~(one_b & one_b.cumsum().gt(1))]
    with caplog.at_level(logging.WARNING, logger="neuronaudit.crowd.aggregate"):
        res = _run({**f, "ratings": r}, eta=0.1)
    n_ng = int((~items["is_gold"]).sum())
    assert res.summary["items_fewer_raters_than_planned"] == 2
    assert f"2 of {n_ng} non-gold items have fewer than the planned 3 raters (1 have none)" in \
        [x.getMessage() for x in caplog.records]


def test_planned_raters_ignores_gold_and_unrated_items():
    f = synthetic_crowd(n_explanations=3, n_inputs=200, n=10, raters_per_input=2, eta=0.1, seed=1, n_gold=120)
    items = f["items"]
    gold = items.loc[items["is_gold"], ["image_id", "concept"]]
    extra = gold.loc[gold.index.repeat(3)].assign(task="g", rater=[f"G{i % 3}" for i in range(3 * len(gold))],
                                                  rating=1, source="s", submitted_at=pd.NaT)
    ratings = pd.concat([f["ratings"], extra], ignore_index=True)  # gold items: 2 + 3 = 5 ratings each
    res = aggregate_crowd(f["explanations"], f["design"], items, ratings, eta=0.1)
    assert res.summary["planned_raters"] == 2 and int(items["is_gold"].sum()) > (~items["is_gold"]).sum()
    # most non-gold items unrated: still the most common count among the rated ones
    ng = items[~items["is_gold"]]
    keep = ng.iloc[:3]
    r = f["ratings"].merge(keep[["image_id", "concept"]], on=["image_id", "concept"])
    res = aggregate_crowd(f["explanations"], f["design"], items, r, eta=0.1)
    assert res.summary["planned_raters"] == 2
    res0 = aggregate_crowd(f["explanations"], f["design"], items, f["ratings"].iloc[:0], eta=0.1)
    assert res0.summary["planned_raters"] == 0 and res0.summary["items_fewer_raters_than_planned"] == 0


def test_explanation_components_of_a_dict():
    assert agg.explanation_components({"kind": "simple", "concept": "dog"}) == ([(1.0, "c0", ("dog",))], 0.0)
    comps, bias = agg.explanation_components({"kind": "linear", "terms": [[0.5, "a"], [-1.0, "b"]], "bias": 0.25})
    assert comps == [(0.5, "c0", ("a",)), (-1.0, "c0", ("b",))] and bias == 0.25


def test_draw_presence_checks_and_edges():
    items = pd.DataFrame({"image_id": ["i", "i", "j"], "concept": ["a", "b", "a"]})
    vals = np.array([[0.6, 0.3, 0.9]])
    structured = [{"kind": "simple", "concept": "a"}, {"kind": "simple", "concept": "b"}]
    with pytest.raises(ValueError) as e:
        agg.explanation_presence(structured, np.array([0]), np.array(["i"]), items, np.ones((1, 2)))
    assert str(e.value) == "values has 2 columns but there are 3 items"
    for bad in ([2], [-1], [0, 2]):
        with pytest.raises(ValueError) as e:
            agg.explanation_presence(structured, np.array(bad), np.array(["i"] * len(bad)), items, vals)
        assert str(e.value) == "draw_expl must index the 2 explanations"
    # draws of the first explanation only; none at all
    s = agg.explanation_presence(structured, np.array([0, 0]), np.array(["i", "j"]), items, vals)
    np.testing.assert_array_equal(s, [[0.6, 0.9]])
    s0, cc0, (d0, it0) = agg._draw_presence(structured, np.zeros(0, dtype=int), np.zeros(0, dtype=object), items, vals)
    assert s0.shape == (1, 0) and cc0.shape == (1, 0)
    # clustered: second moment s^2 (docstring); looked-up pairs are (draw, item)
    clustered = [{"kind": "clustered", "clusters": [{"formula": "a", "lower": 0.2, "upper": 0.6},
                                                     {"formula": "a AND NOT b", "lower": 1.0, "upper": 1.0}]}]
    s, cc, (d, it) = agg._draw_presence(clustered, np.array([0, 0]), np.array(["j", "i"]), items, vals)
    exp = np.array([0.4 * 0.9 + 1.0 * np.nan, 0.4 * 0.6 + 1.0 * 0.6 * 0.7])
    np.testing.assert_allclose(s[0], exp, rtol=1e-12)
    np.testing.assert_allclose(cc[0, 1], exp[1] ** 2, rtol=1e-12)
    pairs = set(zip(d.tolist(), it.tolist(), strict=True))
    assert pairs == {(0, 2), (1, 0), (1, 1)}


def test_no_explanations_at_all(small):
    f = small
    res = aggregate_crowd(f["explanations"].iloc[:0], f["design"].iloc[:0], f["items"], f["ratings"], eta=0.1)
    assert len(res.estimates) == 0 and list(res.estimates.columns) == agg.ESTIMATE_COLUMNS


# -- choose_eta and soft_presence, directly ---------------------------------------------------------------

def _rated(item, rating):
    return agg.RatedItems(item=np.asarray(item), rater=np.zeros(len(item), dtype=int), raters=np.array(["r"], dtype=object),
                          rating=np.asarray(rating, dtype=np.int8), task=np.full(len(item), "", dtype=object), n_read=len(item),
                          n_unknown=0, unknown_pairs=[], n_repeat=0, n_conflict=0)


def test_choose_eta_override_em_and_fallback_records(caplog):
    yes, total, gold = np.array([3, 0, 2, 1]), np.array([3, 3, 3, 3]), np.zeros(4, bool)
    c = agg.choose_eta(0.3, yes, total, gold)
    assert (c.eta, c.source, c.n, c.raw, c.note) == (0.3, "config", 0, 0.3, "")
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError) as e:
            agg.choose_eta(bad, yes, total, gold)
        assert str(e.value) == f"crowd.aggregate.eta = {bad!r}: an override must lie strictly in (0, 1)"
    for bad in ("EM", "xx"):
        with pytest.raises(ValueError) as e:
            agg.choose_eta(bad, yes, total, gold)
        assert str(e.value) == f"crowd.aggregate.eta = {bad!r}: use null (EM), 'em', 'gold' or a number in (0, 1)"
    em = agg.choose_eta("em", yes, total, gold)
    assert em.source == "em" and em.n == 12 and em.note == "" and em.eta == em.raw == _em_eta(yes, total)
    with caplog.at_level(logging.WARNING, logger="neuronaudit.crowd.aggregate"):
        fb = agg.choose_eta(None, np.array([1, 0]), np.array([1, 1]), np.zeros(2, bool))
    assert (fb.eta, fb.source, fb.n, fb.raw) == (0.2, "fallback", 0, 0.2)
    assert fb.note == "EM impossible (EM for eta needs items with at least 2 ratings)"
    assert ("eta by EM impossible (EM for eta needs items with at least 2 ratings); using eta = 0.2"
            in [r.getMessage() for r in caplog.records])


def test_choose_eta_gold_notes_and_counts(caplog):
    yes, total = np.array([3, 0, 3, 0]), np.array([3, 3, 3, 3])
    gold = np.array([False, False, True, True])
    ga = np.array([1.0, 0.0, 1.0, 0.0])  # finite answers also on non-gold rows: they must not count
    rated = _rated([0, 1, 2, 2, 3, 3], [1, 0, 1, 0, 0, 0])
    g = agg.choose_eta("gold", yes, total, gold, rated, ga)
    assert (g.source, g.n, g.raw, g.note) == ("gold", 4, 0.25, "1 of 4 gold ratings disagree")
    with pytest.raises(ValueError) as e:
        agg.choose_eta("gold", yes, total, gold, rated, None)
    assert str(e.value) == "eta = 'gold' needs the ratings and the items' gold answers"
    with pytest.raises(ValueError):
        agg.choose_eta("gold", yes, total, gold, None, ga)
    with caplog.at_level(logging.WARNING, logger="neuronaudit.crowd.aggregate"):
        no = agg.choose_eta("gold", yes, total, gold, _rated([0, 1], [1, 0]), ga)
    assert no.source == "em" and no.note == (f"no rated gold item: eta by EM instead; clipped from {no.raw:.4g} into "
                                             "[0.001, 0.499999]")
    assert "eta = 'gold' but no gold item was rated; estimating eta by EM instead" in [r.getMessage() for r in caplog.records]
    both = agg.choose_eta("gold", np.array([1, 0]), np.array([1, 1]), np.zeros(2, bool), _rated([0], [1]), np.full(2, np.nan))
    assert both.note == ("no rated gold item: eta by EM instead; "
                         "EM impossible (EM for eta needs items with at least 2 ratings)")
    # clipped: the note says from what
    hi = agg.choose_eta("gold", yes, total, gold, _rated([2, 3], [0, 1]), ga)
    assert hi.raw == 1.0 and hi.eta == 0.5 - 1e-6 and hi.note == "2 of 2 gold ratings disagree; clipped from 1 into [0.001, 0.499999]"
    lo = agg.choose_eta("gold", yes, total, gold, _rated([2, 3], [1, 0]), ga)
    assert lo.eta == 1e-3 and lo.note == "0 of 2 gold ratings disagree; clipped from 0 into [0.001, 0.499999]"


def test_soft_presence_passes_beta_eps_and_priors():
    yes, total = np.array([0, 1, 2, 3, 0]), np.array([3, 3, 3, 3, 0])
    prior = np.array([0.0001, 0.3, np.nan, 0.9999, 0.5])
    beta, eta, eps = 0.3, 0.2, 0.15
    out = agg.soft_presence(yes, total, prior, agg.ALL_AGGREGATIONS, beta=beta, eta=eta, eps=eps)
    mp = np.where(np.isfinite(prior), prior, beta)
    exp_u = bragg_posterior(yes, total, eta, prior=beta, eps=eps)
    exp_m = bragg_posterior(yes, total, eta, prior=mp, eps=eps)
    exp_p = agg.bragg_posterior_per_input(yes, total, prior=mp, eps=eps)
    t1, t0 = bragg_class_means(total, eta, mp, eps)
    exp_d = (exp_m - t0) / (t1 - t0)
    for k, exp in enumerate((None, exp_u, exp_m, exp_p, exp_d)):
        if exp is not None:
            np.testing.assert_allclose(out[k, :4], exp[:4], rtol=1e-12)
    assert np.isnan(out[:, 4]).all()
    none = agg.soft_presence(yes, total, None, ["bragg_model", "bragg_per_input"], beta=beta, eta=eta, eps=eps)
    full = agg.soft_presence(yes, total, np.full(5, beta), ["bragg_model", "bragg_per_input"], beta=beta, eta=eta, eps=eps)
    np.testing.assert_array_equal(none, full)
    with pytest.raises(ValueError) as e:
        agg.soft_presence(yes, total, None, ["majority", "vote"])
    assert str(e.value) == f"unknown aggregation(s) ['vote']; expected some of {list(agg.ALL_AGGREGATIONS)}"


def test_dedupe_ratings_fields_and_messages():
    items = pd.DataFrame({"image_id": ["i", "j", "k"], "concept": ["a", "a", "b"]})
    r = pd.DataFrame({"image_id": ["i", "i", "j", "k", "k"], "concept": ["a", "a", "a", "b", "b"],
                      "rater": ["r1", "r2", "r1", "r2", "r3"], "rating": [1, 0, 1, 1, 0]})
    got = agg.dedupe_ratings(r, items)
    assert (got.n_read, got.n_unknown, got.unknown_pairs, got.n_repeat, got.n_conflict) == (5, 0, [], 0, 0)
    assert got.task.dtype == object and list(got.task) == [""] * 5 and got.rating.dtype == np.int8
    assert got.raters.dtype == object and sorted(got.raters) == ["r1", "r2", "r3"]
    assert sorted(zip(got.item.tolist(), got.raters[got.rater].tolist(), got.rating.tolist(), strict=True)) == [
        (0, "r1", 1), (0, "r2", 0), (1, "r1", 1), (2, "r2", 1), (2, "r3", 0)]
    with pytest.raises(ValueError) as e:
        agg.dedupe_ratings(r.drop(columns=["rater"]), items)
    assert str(e.value).startswith("the ratings table lacks columns ['rater'] (has ")
    bad = r.astype({"rating": object})
    bad.loc[2, "rating"] = "yes"
    bad.loc[4, "rating"] = 7
    with pytest.raises(ValueError) as e:
        agg.dedupe_ratings(bad, items)
    assert str(e.value) == ("ratings row 2: rating 'yes' is not 0/1 (2 such rows); re-import the answers with "
                            "crowd.ratings.ingest_ratings")
    # the last submitted answer wins, whatever the time zone notation; repeats and disagreements counted
    rep = pd.concat([r, r.iloc[[0, 3]].assign(rating=[0, 1])], ignore_index=True)
    rep["submitted_at"] = ["2026-11-22T10:00:00Z"] * 5 + ["2026-11-22T03:00:00-08:00", "2026-11-22T09:00:00Z"]
    rep["task"] = ["t1"] * 5 + ["t2", "t2"]
    got = agg.dedupe_ratings(rep, items)
    assert (got.n_repeat, got.n_conflict) == (2, 1)
    kept = dict(zip(zip(got.item.tolist(), got.raters[got.rater].tolist(), strict=True),
                    zip(got.rating.tolist(), got.task.tolist(), strict=True), strict=True))
    assert kept[(0, "r1")] == (0, "t2")  # 03:00-08:00 = 11:00 UTC, after 10:00
    assert kept[(2, "r2")] == (1, "t1")  # 09:00 is before 10:00: the first answer stays
    assert len(got.item) == 5


def test_summary_presence_table_and_final_log_line(small, caplog):
    f = small
    ex = f["explanations"].copy()
    ex.loc[ex.index[:2], "layer"] = "other"  # two (model, layer) evaluations
    with caplog.at_level(logging.INFO, logger="neuronaudit.crowd.aggregate"):
        res = aggregate_crowd(ex, f["design"], f["items"], f["ratings"], truth=f["truth"], eta=0.1, level=0.9)
    s, items = res.summary, f["items"]
    n_items, gold = len(items), int(items["is_gold"].sum())
    per_item = f["ratings"].groupby(["image_id", "concept"]).size()
    assert list(s) == ["ratings_read", "ratings_kept", "ratings_unknown_item", "repeat_answers",
                       "repeat_answers_disagreeing", "items", "gold_items", "items_rated", "planned_raters",
                       "items_fewer_raters_than_planned", "items_without_prior", "eta", "eta_source", "eta_n", "eta_raw",
                       "eta_note", "explanations", "explanations_partly_rated", "explanations_without_estimate",
                       "unrated_draws", "estimates_clipped", "coverage", "coverage_true_presence", "level",
                       "estimator"]
    assert s["estimates_clipped"] == {m: 0 for m in agg.AGGREGATIONS}
    assert (s["ratings_read"], s["ratings_kept"], s["items"], s["gold_items"]) == (len(f["ratings"]), len(f["ratings"]), n_items, gold)
    assert s["items_rated"] == len(per_item) and s["eta_raw"] == 0.1 and s["level"] == 0.9
    assert list(s["coverage"]) == list(agg.AGGREGATIONS) and list(s["coverage_true_presence"]) == list(agg.AGGREGATIONS)
    est = res.estimates
    for m in agg.AGGREGATIONS:
        g = est[est["aggregation"] == m]
        assert s["coverage"][m] == pytest.approx(g["covers_exact"].dropna().astype(bool).mean())
    p = res.presence
    assert isinstance(p.index, pd.RangeIndex) and len(p) == len(agg.AGGREGATIONS) * n_items
    assert str(p["truth"].dtype) == "Int8"
    np.testing.assert_array_equal(p["truth"].iloc[:n_items].astype(int), f["truth"]["truth"])
    # which evaluations each item serves: the (model, layer) of the explanations whose draws looked it up
    concept_of = dict(zip(ex["explanation"], ex["model"] + "/" + ex["layer"], strict=True))
    drawn = set(zip(f["design"]["image_id"], f["design"]["explanation_id"].map(dict(zip(ex["explanation_id"], ex["explanation"], strict=True))), strict=True))
    first = p.iloc[:n_items]
    for img, con, ev in zip(first["image_id"], first["concept"], first["evaluations"], strict=True):
        assert json.loads(ev) == ([concept_of[con]] if (img, con) in drawn else []), (img, con, ev)
    assert {json.loads(e)[0] for e in first["evaluations"] if e != "[]"} == {"synth/layer", "synth/other"}
    line = (f"eta = 0.1000 (config, n = 0); {len(f['ratings'])} of {len(f['ratings'])} ratings kept; "
            f"{len(ex)} explanations x 4 aggregations estimated")
    assert line in [r.getMessage() for r in caplog.records]
    no_truth = aggregate_crowd(ex, f["design"], f["items"], f["ratings"], eta=0.1)
    assert no_truth.presence["truth"].isna().all() and str(no_truth.presence["truth"].dtype) == "Int8"
    assert no_truth.summary["coverage_true_presence"] is None


def test_item_index_lookups_edges_and_messages():
    items = pd.DataFrame({"image_id": ["i", "j", "i"], "concept": ["a", "a", "b"]})
    idx = agg.item_index(items)
    got = idx.find(np.array(["i", "j", "i", "j", "x", "i"], dtype=object), np.array(["a", "a", "b", "b", "a", "z"], dtype=object))
    assert got.dtype == np.int64 and got.tolist() == [0, 1, 2, -1, -1, -1]  # (j, b): both known, not an item
    empty = agg.item_index(items.iloc[:0])
    e = empty.find(np.array(["i"], dtype=object), np.array(["a"], dtype=object))
    assert e.dtype == np.int64 and e.tolist() == [-1]
    dup = pd.DataFrame({"image_id": ["i", "j", "k", "j"], "concept": ["a", "a", "a", "a"]})
    with pytest.raises(ValueError) as err:
        agg.item_index(dup)
    assert str(err.value) == ("items repeat (image_id, concept) = ('j', 'a') at row 3 (1 repeats); items.parquet needs "
                              "one row per distinct pair")
    with pytest.raises(ValueError) as err:
        agg.item_index(items.drop(columns=["concept"]))
    assert str(err.value) == ("the items table lacks columns ['concept'] (has ['image_id']); write it with the crowd "
                              "design stage (docs/schemas.md)")
    with pytest.raises(ValueError) as err:
        agg._parts([{"kind": "simple", "concept": "a"}, {"kind": "nonsense"}])
    assert str(err.value).startswith("explanation 1: cannot read its structured form {'kind': 'nonsense'}: ")
    yes, total = agg.item_counts(_rated([0, 0, 2], [1, 1, 0]), 3)
    assert yes.dtype == total.dtype == np.int64 and yes.tolist() == [2, 0, 0] and total.tolist() == [2, 0, 1]


def test_choose_eta_int_gold_flags_nullable_answers_and_clip_note():
    yes, total = np.array([3, 0, 2, 1, 3]), np.array([3, 3, 3, 3, 3])
    flags = [0, 0, 0, 0, 1]  # ints, not bools
    c = agg.choose_eta("em", yes, total, flags)
    assert c.n == 12 and c.raw == _em_eta(yes[:4], total[:4])
    ga = pd.array([pd.NA, pd.NA, pd.NA, pd.NA, 1], dtype="Int8")
    g = agg.choose_eta("gold", yes, total, np.array(flags, bool), _rated([4, 4, 0], [1, 0, 1]), ga)
    assert (g.source, g.n, g.raw) == ("gold", 2, 0.5)
    perfect = agg.choose_eta("em", np.array([3, 0, 3, 0]), np.array([3, 3, 3, 3]), np.zeros(4, bool))
    assert perfect.eta == 1e-3 and perfect.note == f"clipped from {perfect.raw:.4g} into [0.001, 0.499999]"


def test_soft_presence_uniform_prior_is_clipped_by_eps():
    yes, total = np.array([0, 3]), np.array([3, 3])
    out = agg.soft_presence(yes, total, None, ["bragg_uniform"], beta=0.05, eta=0.2, eps=0.15)
    np.testing.assert_allclose(out[0], bragg_posterior(yes, total, 0.2, prior=0.05, eps=0.15), rtol=1e-12)
    assert not np.allclose(out[0], bragg_posterior(yes, total, 0.2, prior=0.05))
