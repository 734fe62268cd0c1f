"""Degenerate inputs (issue 7, items 1 and 8): an all-NaN or constant column, a concept with one
positive, a class with no test image, methods that scored different neurons. Each is left out and
counted (log, sidecar ``<output>.excluded.parquet`` or columns), never empties a study nor crashes it.

All tests write real pipeline files with the io helpers and call the library functions the
workflow scripts call.
"""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

from neuronaudit.exclusions import sidecar_path
from neuronaudit.explainers.importers import explanation_table
from neuronaudit.explainers.stage import explain_layer
from neuronaudit.io import read_meta, read_table, write_matrix, write_table
from neuronaudit.studies.automated import automated_tables, downstream_study, score_layer
from neuronaudit.studies.stage import load_probing_set, setting1_job, study_pairs, write_study_table

N_CLASSES, PER_CLASS = 4, 40
RARE = ["rare0", "rare1", "rare2"]  # attributes with a single positive image


def _dataset(d, split_of=None):
    """160 images of 4 classes (val / test alternate), 3 single-positive attributes; manifest + labels."""
    n = N_CLASSES * PER_CLASS
    ids = np.array([f"img{i:04d}" for i in range(n)])
    cls = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    split = np.where(np.arange(n) % 2 == 0, "val", "test") if split_of is None else split_of(cls)
    write_table(pd.DataFrame({"image_id": ids, "source": "x", "label": [f"class{c}" for c in cls], "split": split}),
                d / "manifest.parquet")
    classes = [f"class{c}" for c in range(N_CLASSES)]
    y = np.zeros((n, N_CLASSES + len(RARE)), dtype=np.int8)
    y[np.arange(n), cls] = 1
    y[np.arange(len(RARE)) * 2, N_CLASSES + np.arange(len(RARE))] = 1  # one positive each, on val images
    concepts = classes + RARE
    kinds = ["class"] * N_CLASSES + ["attribute"] * len(RARE)
    write_table(pd.DataFrame({"image_id": np.repeat(ids, len(concepts)), "concept": np.tile(concepts, n),
                              "kind": np.tile(kinds, n), "present": y.ravel()}), d / "labels.parquet")
    return ids, cls, y, split, concepts


def _activations(d, ids, cls, *, skip=None, seed=0):
    """6 neurons: 0-3 follow the classes, 4 is all NaN, 5 is constant; image ``skip`` has no row."""
    rng = np.random.default_rng(seed)
    acts = (2.0 * (cls[:, None] == np.arange(4)) + rng.normal(size=(len(ids), 4))).astype(np.float32)
    acts = np.column_stack([acts, np.full(len(ids), np.nan, np.float32), np.ones(len(ids), np.float32)])
    keep = np.ones(len(ids), bool) if skip is None else np.arange(len(ids)) != skip
    write_matrix(d / "acts.parquet", ids[keep], {"activation": acts[keep]}, columns=[str(k) for k in range(6)])
    return acts


def _excluded(out):
    t = read_table(sidecar_path(out))
    return t.groupby(["item", "reason"]).size().to_dict(), t


def test_explain_leaves_out_nan_and_constant_columns_not_the_images(tmp_path, caplog):
    ids, cls, y, split, concepts = _dataset(tmp_path)
    _activations(tmp_path, ids, cls, skip=10)  # image 10 (val) skipped by the extraction
    rng = np.random.default_rng(1)
    prob = np.clip(y + 0.1 * rng.random(y.shape), 0, 1).astype(np.float32)
    prob[:, N_CLASSES] = np.nan  # one concept the concept model gives no value for
    write_matrix(tmp_path / "presence.parquet", ids, {"probability": prob}, columns=concepts)
    methods = {"le_cm": {"method": "le", "presence": "cm", "vocabulary": "v"},
               "le_label": {"method": "le", "presence": "label"},
               "l1": {"method": "le_l1", "presence": "cm", "vocabulary": "v"}}
    outs = {m: tmp_path / "explanations" / f"{m}.parquet" for m in methods}
    with caplog.at_level(logging.INFO):
        tables = explain_layer(methods, outs, manifest_path=tmp_path / "manifest.parquet",
                               labels_path=tmp_path / "labels.parquet", activations_path=tmp_path / "acts.parquet",
                               model="m", layer="l", presence_paths={("cm", "v"): tmp_path / "presence.parquet"})
    n_val = int((split == "val").sum())
    for m, table in tables.items():
        assert sorted(table["neuron"]) == [0, 1, 2, 3, 5], m  # neuron ids keep the layer's numbering
        meta = read_meta(outs[m])
        assert meta["n_images"] == n_val - 1 and meta["n_layer_neurons"] == 6  # only the skipped image is dropped
        counts, _ = _excluded(outs[m])
        assert counts[("neuron", "activation: all NaN")] == 1
        assert counts[("image", "no finite activation value (image skipped)")] == 1
        assert meta["excluded"]["neuron"] == {"activation: all NaN": 1}
    counts, t = _excluded(outs["le_cm"])
    assert counts[("concept", "presence: all NaN")] == 1
    assert t.loc[t["reason"] == "presence: all NaN", "name"].tolist() == ["rare0"]
    # LE(label): the single-positive attributes fail LE's activity filter; counted, with the reason
    counts, t = _excluded(outs["le_label"])
    assert counts[("concept", "le_label activity filter: mean of the top-5 values < 0.5")] == len(RARE)
    assert "le_label: 3 concept(s) left out: le_label activity filter" in caplog.text
    assert "explain m/l: 1 neuron(s) left out: activation: all NaN; e.g. ['4']" in caplog.text
    assert "m/l: 1 neuron(s) constant on the val images" in caplog.text


def test_score_layer_all_nan_concept_keeps_every_image(tmp_path):
    ids, cls, y, split, concepts = _dataset(tmp_path)
    acts = _activations(tmp_path, ids, cls)
    test = split == "test"
    prob = np.clip(y[test] + 0.2 * np.random.default_rng(2).random(y[test].shape), 0, 1).astype(np.float32)
    prob[:, 1] = np.nan  # class1 unscorable by this concept model
    write_matrix(tmp_path / "scoring.parquet", ids[test], {"probability": prob}, columns=concepts,
                 meta={"concepts": concepts})
    table = explanation_table([0, 1, 2, 4, 5], "cd", [{"kind": "simple", "concept": f"class{k}"} for k in
                                                       (0, 1, 2, 3, 0)])
    write_table(table, tmp_path / "cd.parquet")
    out = tmp_path / "scores" / "cd.parquet"
    scores = score_layer({"cd": tmp_path / "cd.parquet"}, {"cd": out}, activations_path=tmp_path / "acts.parquet",
                         manifest_path=tmp_path / "manifest.parquet", labels_path=tmp_path / "labels.parquet",
                         presence_paths={"cm": tmp_path / "scoring.parquet"}, label_scoring=False, model="m",
                         layer="l")["cd"]
    rho = scores.set_index("neuron")["rho"]
    # every test image is used for the good columns (a row-wise NaN filter would have left none)
    np.testing.assert_allclose(rho[0], np.corrcoef(acts[test, 0], prob[:, 0])[0, 1], rtol=1e-6)
    np.testing.assert_allclose(rho[2], np.corrcoef(acts[test, 2], prob[:, 2])[0, 1], rtol=1e-6)
    reason = scores.set_index("neuron")["reason"]
    assert np.isnan(rho[1]) and reason[1].startswith("concept left out for cm: ['class1']")
    assert np.isnan(rho[4]) and reason[4] == "neuron left out: activation: all NaN"
    assert np.isnan(rho[5]) and reason[5] == "constant activation"
    counts, _ = _excluded(out)
    assert counts == {("concept", "cm presence: all NaN"): 1, ("neuron", "activation: all NaN"): 1}


def test_tables_compare_methods_on_the_neurons_all_of_them_scored():
    rows = []
    for method, scored, length in [("a", range(10), 1), ("b", range(5), 1), ("c", range(2, 10), 3)]:
        for k in range(10):
            r = 0.1 * k if k in scored else np.nan
            rows.append({"model": "m", "layer": "l", "neuron": k, "method": method, "concept_model": "cm", "rho": r,
                         "reason": "" if np.isfinite(r) else "x", "length": length})
    t1, t2 = automated_tables(pd.DataFrame(rows))
    t = pd.concat([t1, t2]).set_index("method")
    assert t["n_scored"].to_dict() == {"a": 10, "b": 5, "c": 8}
    assert (t["n_common"] == 3).all() and (t["n_methods"] == 3).all()  # neurons 2, 3, 4
    np.testing.assert_allclose(t["mean"], [0.3, 0.3, 0.3])
    np.testing.assert_allclose(t["mean_scored"], [0.45, 0.2, 0.55])
    assert (t["compared_on"] == "the 3 neurons scored by all 3 methods scored here").all()


def test_a_method_the_scorer_cannot_score_does_not_empty_the_comparison():
    """CLIP-Dissect's free words are no label concepts: under the label scorer it scores no neuron,
    and must be left out of the comparison (saying so), not shrink it to zero neurons (seen e2e)."""
    rows = []
    for method, scored in [("a", range(10)), ("b", range(4, 10)), ("words", [])]:
        for k in range(10):
            r = 0.1 * k if k in scored else np.nan
            rows.append({"model": "m", "layer": "l", "neuron": k, "method": method, "concept_model": "label",
                         "rho": r, "reason": "", "length": 1})
    t, _ = automated_tables(pd.DataFrame(rows))
    t = t.set_index("method")
    assert (t["n_common"] == 6).all() and (t["n_methods"] == 2).all()
    np.testing.assert_allclose(t.loc[["a", "b"], "mean"], [0.65, 0.65])
    assert np.isnan(t.loc["words", "mean"]) and t.loc["words", "n_scored"] == 0
    assert t.loc["words", "compared_on"] == "not compared: label scored none of its neurons"


def test_a_method_scored_on_few_neurons_is_not_compared_but_keeps_its_own_mean():
    """Seen on the default study: CLIP-Dissect's words were label concepts for 7 of 1,280 neurons, and
    the common subset shrank every method's Table 1 mean to those 7 neurons."""
    rows = []
    for method, scored in [("a", range(20)), ("b", range(2, 20)), ("words", [0, 1, 5])]:
        for k in range(20):
            r = 0.05 * k if k in scored else np.nan
            rows.append({"model": "m", "layer": "l", "neuron": k, "method": method, "concept_model": "label",
                         "rho": r, "reason": "", "length": 1})
    t, _ = automated_tables(pd.DataFrame(rows))
    t = t.set_index("method")
    assert (t["n_common"] == 18).all() and (t["n_methods"] == 2).all()
    np.testing.assert_allclose(t.loc[["a", "b"], "mean"], [np.mean(0.05 * np.arange(2, 20))] * 2)
    assert np.isnan(t.loc["words", "mean"])
    np.testing.assert_allclose(t.loc["words", "mean_scored"], np.mean([0, 0.05, 0.25]))
    assert t.loc["words", "compared_on"].startswith("not compared: label scored only 3 of its 20 neurons")
    # with a lower bar it is compared, and then the common subset is neuron 5 alone
    t2, _ = automated_tables(pd.DataFrame(rows), min_coverage=0.1)
    assert (t2["n_common"] == 1).all()


def test_downstream_counts_classes_without_a_positive_test_image(tmp_path, monkeypatch):
    # test split: classes 0 and 1 only -> classes 2 and 3 have no positive test image
    ids, cls, y, split, concepts = _dataset(tmp_path, split_of=lambda c: np.where(c < 2, "test", "val"))
    _activations(tmp_path, ids, cls)
    table = explanation_table([0, 1, 2, 3, 4], "cd", [{"kind": "simple", "concept": f"class{k}"} for k in
                                                       (0, 1, 2, 3, 0)])
    write_table(table, tmp_path / "cd.parquet", meta={"model": "m", "layer": "l", "method": "cd"})
    vocab = [f"class{k}" for k in range(N_CLASSES)]

    def fake_encode(texts, **_):  # one direction per class name: the text model is not under test
        return np.array([np.eye(N_CLASSES)[vocab.index(t)] for t in texts])

    monkeypatch.setattr("neuronaudit.text.encode_texts", fake_encode)
    per_class, summary = downstream_study([tmp_path / "cd.parquet"], {("m", "l"): tmp_path / "acts.parquet"},
                                          tmp_path / "manifest.parquet", tmp_path / "labels.parquet")
    row = summary.iloc[0]
    assert (row["n_classes"], row["n_classes_used"], row["n_classes_excluded"]) == (4, 2, 2)
    assert row["excluded_reason"] == "no positive test image: 2"
    assert per_class["excluded_reason"].tolist() == ["", "", "no positive test image", "no positive test image"]
    assert per_class["neuron"].tolist() == [0, 1, 2, 3]  # the all-NaN neuron 4 is never matched
    assert row["mean_auc"] == pytest.approx(per_class["auc"].iloc[:2].mean()) and row["mean_auc"] > 0.8


def test_probe_warns_with_the_count_of_all_constant_concepts():
    from neuronaudit.concepts.probe import ProbeConceptModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = np.zeros((60, 32))
    y[:, 0] = x[:, 0] > 0
    y[:, 1] = 1  # no negative; concepts 2..31 have no positive
    names = [f"c{i}" for i in range(32)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ProbeConceptModel(features={"source": "test"}, max_iter=20).fit(x, y, names)
    msg = " ".join(str(w.message) for w in caught)
    assert "31 of 32 concepts have no positive (30) or no negative (1)" in msg and "(+11 more)" in msg
    assert model.info()["degenerate"]["no positive training example"] == names[2:]
    assert model.info()["degenerate"]["no negative training example"] == ["c1"]


def test_setting1_leaves_out_bad_guide_columns_and_says_why(tmp_path):
    ids, cls, y, split, concepts = _dataset(tmp_path, split_of=lambda c: np.full(len(c), "val"))
    _activations(tmp_path, ids, cls)
    prob = np.clip(0.8 * y + 0.1, 0, 1).astype(np.float32)
    prob[:, 0] = np.nan  # guide gives nothing for class0 (MG-IS weights would sum to zero)
    prob[:, 1] = 0.0  # guide says "absent" everywhere for class1
    write_matrix(tmp_path / "presence.parquet", ids, {"probability": prob}, columns=concepts)
    files = (tmp_path / "manifest.parquet", tmp_path / "labels.parquet")
    guide = {"cm": str(tmp_path / "presence.parquet")}
    ps = load_probing_set(*files, str(tmp_path / "acts.parquet"), guide, split="val", min_positives=5)
    assert ps.concepts == ["class2", "class3"] and ps.neurons == ["0", "1", "2", "3"]
    assert ps.acts.shape == (len(ids), 4)  # no image lost to the all-NaN neuron or guide column
    s = ps.excluded.summary()
    assert s["concept"] == {"guide cm: all NaN": 1, "guide cm: probability 0 on every image of D (MG-IS undefined)": 1,
                            "fewer than min_positives = 5 positive images in D": len(RARE)}
    assert s["neuron"] == {"activation: all NaN": 1, "activation: constant on the images": 1}
    pairs_excl = ps.excluded.__class__("study_pairs")
    pairs = study_pairs(*files, {("m", "l"): str(tmp_path / "acts.parquet")}, guide, split="val", min_positives=5,
                        exclusions=pairs_excl, n_random_pairs=2, seed=0)
    assert set(pairs["concept"]) <= {"class2", "class3"} and pairs_excl.count("concept") == 2 + len(RARE)
    settings = {"samplers": ["uniform", "mg_is"], "ns": [20], "seeds": 2, "gamma": 0.2, "alpha": 2.0,
                "estimator": "unbiased", "rng": 0}
    df = setting1_job(ps, pairs, "m", "l", "cm", settings)
    assert np.isfinite(df["rho_hat"]).all() and set(df["sampler"]) == {"uniform", "mg_is"}
    out = tmp_path / "sampling" / "cm.parquet"
    write_study_table(df, out, meta={}, excluded=ps.excluded)
    counts, _ = _excluded(out)
    assert counts[("concept", "guide cm: all NaN")] == 1
    assert read_meta(out)["excluded"]["neuron"] == s["neuron"]
