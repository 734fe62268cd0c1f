"""The crowd task design (neuronaudit.crowd.design): MG-IS draws and weights, items, gold, tasks, exclusions."""

import json

import numpy as np
import pandas as pd
import pytest

from neuronaudit.crowd.design import (
    build_design,
    explanation_id,
    gold_pool,
    guide_activation,
    make_tasks,
    select_neurons,
    simulated_truth,
)
from neuronaudit.explanations import Explanation

N = 300
SETTINGS = {"n": 60, "gamma": 0.2, "seed": 3, "images_per_task": 15, "gold_per_task": 1, "guide": "g"}


def _data(seed=0):
    """Activations of 4 neurons (neuron 3 constant), a guide over concepts a, b, c (c all zero), labels of a."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"img{i:04d}" for i in range(N)], dtype=object)
    a_true = (rng.random(N) < 0.3).astype(float)
    acts = np.stack([2 * a_true + rng.standard_normal(N), rng.standard_normal(N), rng.standard_normal(N),
                     np.full(N, 1.5)], axis=1).astype(np.float32)
    guide = np.stack([np.clip(0.8 * a_true + 0.1 * rng.random(N), 0, 1), rng.random(N) * 0.5, np.zeros(N)], axis=1)
    labels = pd.DataFrame({"image_id": ids, "concept": "a", "kind": "class", "present": a_true.astype(np.int8)})
    return ids, {("m", "l"): acts}, guide, ["a", "b", "c"], labels


def _cands(rows):
    out = []
    for neuron, method, struct in rows:
        e = Explanation.from_dict(struct)
        out.append({"model": "m", "layer": "l", "neuron": neuron, "method": method, "explanation": e.to_text(),
                    "structured": e.to_json()})
    return pd.DataFrame(out)


def _simple(c):
    return {"kind": "simple", "concept": c}


def test_q_and_weights_match_the_closed_form():
    ids, acts, guide, concepts, labels = _data()
    cands = _cands([(0, "x", _simple("a")), (1, "x", {"kind": "linear", "terms": [[1.0, "a"], [-2.0, "b"]], "bias": 0.0})])
    d = build_design(cands, acts, ids, guide, concepts, SETTINGS, labels=labels)
    assert len(d.explanations) == 2 and (d.explanations["n_population"] == N).all()
    pos = {iid: i for i, iid in enumerate(ids)}
    for k, (neuron, c) in enumerate([(0, guide[:, 0]), (1, np.maximum(guide[:, 0] - 2 * guide[:, 1], 0))]):
        eid = d.explanations["explanation_id"].iloc[k]
        g = d.design[d.design["explanation_id"] == eid]
        assert len(g) == SETTINGS["n"] and list(g["draw"]) == list(range(SETTINGS["n"]))
        a = acts[("m", "l")][:, neuron].astype(float)
        a_hat = (a - a.mean()) / a.std()
        u = np.abs(a_hat) * c
        q = 0.8 * u / u.sum() + 0.2 / N
        i = g["image_id"].map(pos).to_numpy()
        np.testing.assert_allclose(g["q"], q[i], rtol=1e-12)
        np.testing.assert_allclose(g["weight"], 1 / (N * q[i]), rtol=1e-12)
        np.testing.assert_allclose(g["a_hat"], a_hat[i], rtol=1e-6)
        np.testing.assert_allclose(g["c_guide"], c[i], rtol=1e-12)
        assert (g["c_guide"] >= 0).all()
    # the draws follow q: the strongly guided explanation over-samples its high-|a_hat| c inputs
    g0 = d.design[d.design["explanation_id"] == d.explanations["explanation_id"].iloc[0]]
    assert g0["c_guide"].mean() > guide[:, 0].mean()


def test_negative_guide_of_a_linear_explanation_is_clipped():
    pm = np.array([[0.2, 0.9], [0.8, 0.1]])
    e = Explanation.from_dict({"kind": "linear", "terms": [[1.0, "a"], [-1.0, "b"]], "bias": 0.0})
    np.testing.assert_allclose(guide_activation([e], ["a", "b"], pm)[:, 0], [0.0, 0.7])


def test_an_item_needed_by_two_explanations_is_rated_once():
    ids, acts, guide, concepts, labels = _data()
    cands = _cands([(0, "x", _simple("a")), (0, "y", _simple("a")), (1, "x", _simple("b")),
                    (2, "z", {"kind": "compositional", "formula": "a AND b"})])
    d = build_design(cands, acts, ids, guide, concepts, {**SETTINGS, "n": 120}, labels=labels)
    items = d.items[~d.items["is_gold"]]
    assert not items.duplicated(["image_id", "concept"]).any()
    # every (draw image, atom concept) of every explanation is an item
    conc = d.explanations.set_index("explanation_id")["concepts"].map(json.loads)
    need = {(r.image_id, c) for r in d.design.itertuples() for c in conc[r.explanation_id]}
    assert need == set(zip(items["image_id"], items["concept"], strict=True))
    # x and y (same neuron, same concept, but different draws streams) share items; an image drawn twice is one item
    assert len(items) < len(d.design) * 1.0
    shared = set(d.design.loc[d.design["explanation_id"].str.endswith("/x") & d.design["explanation_id"].str.startswith("m/l/0/"), "image_id"]) & set(
        d.design.loc[d.design["explanation_id"] == "m/l/0/y", "image_id"])
    assert shared, "the two explanations of neuron 0 should share drawn images"
    rated = d.tasks[~d.tasks["is_gold"]]
    assert not rated.duplicated(["image_id", "concept"]).any(), "an item appears in one task only"
    assert set(zip(rated["image_id"], rated["concept"], strict=True)) == need
    # tasks: at most 15 images, one concept each, positions 1..size
    per = d.tasks.groupby("task")
    assert per.size().max() <= 15
    assert (per["concept"].nunique() == 1).all()
    for _, g in per:
        assert sorted(g["position"]) == list(range(1, len(g) + 1))
        assert g["image_id"].is_unique


def test_gold_items_come_from_the_labels_and_are_mixed_into_every_task():
    ids, acts, guide, concepts, labels = _data()
    cands = _cands([(0, "x", _simple("a")), (1, "x", _simple("b"))])
    d = build_design(cands, acts, ids, guide, concepts, {**SETTINGS, "n": 100, "gold_per_task": 2}, labels=labels)
    truth = dict(zip(labels["image_id"], labels["present"], strict=True))
    ta = d.tasks[d.tasks["concept"] == "a"]
    assert (ta.groupby("task")["is_gold"].sum() == 2).all()
    gold = ta[ta["is_gold"]]
    assert all(int(ans) == truth[i] for i, ans in zip(gold["image_id"], gold["gold_answer"], strict=True))
    assert set(gold["gold_answer"].astype(int)) == {0, 1}, "positives and negatives alternate"
    assert not set(gold["image_id"]) & set(ta.loc[~ta["is_gold"], "image_id"])
    assert d.tasks.loc[~d.tasks["is_gold"], "gold_answer"].isna().all()
    gi = d.items[d.items["is_gold"]]
    assert set(zip(gi["image_id"], gi["concept"], strict=True)) == set(
        zip(d.tasks.loc[d.tasks["is_gold"], "image_id"], d.tasks.loc[d.tasks["is_gold"], "concept"], strict=True))
    # b is unlabelled and its guide is never clear (p <= 0.5 but > 0.01 mostly): gold only from clear cases
    pool, src = gold_pool("b", ids, {}, {"b": guide[:, 1]}, set(), 0)
    assert src in ("guide", "") and all(guide[list(ids).index(i), 1] <= 0.01 for i, a in pool if a == 0)
    # no gold: tasks hold up to images_per_task rated items
    d0 = build_design(cands, acts, ids, guide, concepts, {**SETTINGS, "n": 100, "gold_per_task": 0}, labels=labels)
    assert not d0.tasks["is_gold"].any() and d0.tasks.groupby("task").size().max() <= 15


def test_make_tasks_balances_and_rejects_bad_sizes():
    items = pd.DataFrame({"image_id": [f"i{k}" for k in range(20)], "concept": "a"})
    t = make_tasks(items, 15, 0, seed=0)
    assert sorted(t.groupby("task").size()) == [10, 10]
    assert list(t["task"].unique()) == ["t000001", "t000002"]
    # a gold pool smaller than gold_per_task never shows an image twice in a task
    g = make_tasks(items, 15, 3, seed=0, gold={"a": [("g0", 1)]})
    assert not g.duplicated(["task", "image_id"]).any() and (g.groupby("task")["is_gold"].sum() == 1).all()
    with pytest.raises(ValueError, match="gold_per_task"):
        make_tasks(items, 15, 15, seed=0)


def test_the_design_is_seeded_and_per_explanation():
    ids, acts, guide, concepts, labels = _data()
    cands = _cands([(0, "x", _simple("a")), (1, "x", _simple("b"))])
    d1 = build_design(cands, acts, ids, guide, concepts, SETTINGS, labels=labels)
    d2 = build_design(cands, acts, ids, guide, concepts, SETTINGS, labels=labels)
    for name in ("explanations", "design", "items", "tasks"):
        pd.testing.assert_frame_equal(getattr(d1, name), getattr(d2, name))
    d3 = build_design(cands, acts, ids, guide, concepts, {**SETTINGS, "seed": 4}, labels=labels)
    assert not d3.design["image_id"].equals(d1.design["image_id"])
    # adding an explanation changes no other explanation's draws
    d4 = build_design(_cands([(2, "w", _simple("b")), (0, "x", _simple("a")), (1, "x", _simple("b"))]), acts, ids,
                      guide, concepts, SETTINGS, labels=labels)
    for eid in d1.explanations["explanation_id"]:
        a = d1.design[d1.design["explanation_id"] == eid].reset_index(drop=True)
        b = d4.design[d4.design["explanation_id"] == eid].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


def test_degenerate_explanations_are_excluded_and_counted():
    ids, acts, guide, concepts, labels = _data()
    cands = _cands([(0, "x", _simple("a")), (3, "x", _simple("a")), (1, "x", _simple("zebra")),
                    (2, "x", _simple("c")), (7, "x", _simple("a"))])
    d = build_design(cands, acts, ids, guide, concepts, SETTINGS, labels=labels)
    assert list(d.explanations["explanation_id"]) == [explanation_id("m", "l", 0, "x")]
    reasons = d.exclusions.reasons("explanation")
    assert reasons["m/l/3/x"] == "constant activation on the split"
    assert reasons["m/l/1/x"].startswith("concept unknown to the guide")
    assert reasons["m/l/2/x"].startswith("the guide predicts zero everywhere")
    assert reasons["m/l/7/x"].startswith("neuron 7 not in")
    # nothing left: empty tables, no crash
    d0 = build_design(cands.iloc[[1, 2]], acts, ids, guide, concepts, SETTINGS, labels=labels)
    assert len(d0.explanations) == len(d0.design) == len(d0.items) == len(d0.tasks) == 0
    assert d0.exclusions.count("explanation") == 2


def test_exact_rho_uses_the_truth_and_automated_rho_is_carried():
    ids, acts, guide, concepts, labels = _data()
    truth, sources = simulated_truth(["a", "b"], ids, guide[:, :2], labels, 0, "g")
    assert sources == {"a": "label", "b": "bernoulli(g probability)"}
    np.testing.assert_array_equal(truth["a"], labels["present"].to_numpy())
    t2, _ = simulated_truth(["a", "b"], ids, guide[:, :2], labels, 0, "g")
    np.testing.assert_array_equal(truth["b"], t2["b"])
    assert abs(truth["b"].mean() - guide[:, 1].mean()) < 0.08
    cands = _cands([(0, "x", _simple("a")), (1, "x", _simple("b"))])
    d = build_design(cands, acts, ids, guide, concepts, SETTINGS, labels=labels, truth={"a": truth["a"]},
                     automated={"m/l/0/x": 0.42})
    a = acts[("m", "l")][:, 0].astype(float)
    ex = d.explanations.set_index("explanation_id")
    assert ex.loc["m/l/0/x", "exact_rho"] == pytest.approx(np.corrcoef(a, truth["a"])[0, 1], rel=1e-6)
    assert np.isnan(ex.loc["m/l/1/x", "exact_rho"])
    assert ex.loc["m/l/0/x", "automated_rho"] == 0.42 and np.isnan(ex.loc["m/l/1/x", "automated_rho"])


def test_select_neurons():
    a = select_neurons(100, 10, 0, "m", "l")
    assert len(a) == 10 and np.all(np.diff(a) > 0) and np.array_equal(a, select_neurons(100, 10, 0, "m", "l"))
    assert not np.array_equal(a, select_neurons(100, 10, 0, "m", "l2"))
    assert len(select_neurons(5, 10, 0, "m", "l")) == 5
    np.testing.assert_array_equal(select_neurons(100, [5, 2, 5], 0, "m", "l"), [2, 5])
    with pytest.raises(ValueError, match="outside"):
        select_neurons(100, [3, 100], 0, "m", "l")
