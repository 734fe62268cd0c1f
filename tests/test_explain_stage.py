"""The explain and automated-evaluation stages (docs/explain_stage.md).

(a) the literature's sanity check: label-based methods name an ImageNet classifier's output neurons by
    their own class, on real images; (b) the scoring path evaluates explanations as SPEC sec. 2 defines;
    (c) the stage's outputs on config/tiny.yaml through Snakemake (the shared ``tiny_run``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neuronaudit.explainers.importers import TABLE_COLUMNS, explanation_table
from neuronaudit.explainers.stage import check_method, generate, runtime_table
from neuronaudit.studies.automated import (
    SCORE_COLUMNS,
    automated_tables,
    downstream_text,
    mean_sem,
    score_table,
)


# ------------------------------------------------------------------------------------ (a) sanity check
@pytest.fixture(scope="module")
def logits_on_views(imagenet_jpegs):
    """Lite0 logits of the foolbox ImageNet JPEGs, each in 8 deterministic views (flips and crops)."""
    import torch
    from PIL import Image, ImageOps

    from neuronaudit.activations.models import load_model

    lite0 = load_model({"source": "efficientnet_lite", "variant": 0})
    images, classes = [], []
    for path, cls in imagenet_jpegs:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        crops = [(0, 0, w, h), (0, 0, int(0.85 * w), int(0.85 * h)), (int(0.15 * w), int(0.15 * h), w, h),
                 (int(0.1 * w), int(0.1 * h), int(0.9 * w), int(0.9 * h))]
        for box in crops:
            view = img.crop(box)
            images += [view, ImageOps.mirror(view)]
            classes += [cls, cls]
    x = torch.stack([lite0.transform(im) for im in images])
    with torch.inference_mode():
        logits = lite0.model(x).numpy()
    return logits, np.asarray(classes)


def test_label_methods_name_output_neurons_by_their_class(logits_on_views):
    logits, classes = logits_on_views
    class_ids = sorted(set(classes.tolist()))  # 19 distinct classes (609 appears twice)
    acts = logits[:, class_ids]  # neuron j = the logit of class_ids[j]
    cls_index = np.searchsorted(class_ids, classes)
    names = [f"class {c}" for c in class_ids]
    onehot = np.eye(len(class_ids), dtype=np.float32)[cls_index]
    n_views = int(np.bincount(cls_index).min())
    entries = {
        "le_l1_label": {"method": "le_l1"},
        "invert_l1": {"method": "invert", "params": {"length": 1}},
        "top_class": {"method": "top_class", "params": {"top_k": n_views}},
    }
    rates = {}
    for name, entry in entries.items():
        if entry["method"] == "top_class":
            table = generate(name, entry, acts, class_index=cls_index, class_names=names)
        else:
            table = generate(name, entry, acts, presence=onehot, concepts=names)
        assert list(table.columns) == TABLE_COLUMNS and (table["method"] == name).all()
        rates[name] = float((table["explanation"].to_numpy() == np.asarray(names)).mean())
    print("own-class rate per method:", rates)
    assert all(r >= 0.9 for r in rates.values()), rates  # observed: 1.0 for all three


# ------------------------------------------------------------------------------------ (b) scoring path
def _presence():
    rng = np.random.default_rng(0)
    n = 400
    pres = {"dog": rng.random(n), "cat": rng.random(n), "grass": (rng.random(n) < 0.3).astype(float)}
    return n, pres


def test_score_table_evaluates_spec_formulas():
    n, p = _presence()
    rng = np.random.default_rng(1)
    acts = rng.standard_normal((n, 4)) + np.column_stack([p["dog"], p["cat"], p["grass"], p["dog"] * p["cat"]])
    dicts = [
        {"kind": "simple", "concept": "dog"},
        {"kind": "linear", "terms": [[0.5, "dog"], [-0.2, "cat"]], "bias": 0.1},
        {"kind": "compositional", "formula": "(dog OR cat) AND NOT grass"},
        {"kind": "clustered", "clusters": [{"lower": 0, "upper": 1, "formula": "dog AND cat"},
                                           {"lower": 1, "upper": 3, "formula": "grass"}]},
    ]
    expected_s = [
        p["dog"],
        0.5 * p["dog"] - 0.2 * p["cat"] + 0.1,
        (1 - (1 - p["dog"]) * (1 - p["cat"])) * (1 - p["grass"]),
        0.5 * p["dog"] * p["cat"] + 2.0 * p["grass"],
    ]
    table = explanation_table([0, 1, 2, 3], "m", dicts)
    concepts = ["grass", "cat", "dog"]  # any column order
    matrix = np.column_stack([p[c] for c in concepts])
    scores = score_table(table, acts, matrix, concepts, "probe")
    want = [np.corrcoef(acts[:, k], s)[0, 1] for k, s in enumerate(expected_s)]
    np.testing.assert_allclose(scores["rho"], want, atol=1e-10)
    assert (scores["reason"] == "").all() and (scores["concept_model"] == "probe").all()
    assert scores["length"].tolist() == [1, 2, 3, 3]


def test_unknown_concepts_and_constant_neurons_score_nan_with_a_reason():
    n, p = _presence()
    acts = np.column_stack([p["dog"], np.ones(n), p["cat"]])
    table = explanation_table([0, 1, 2], "cd", [{"kind": "simple", "concept": "dog"},
                                                {"kind": "simple", "concept": "dog"},
                                                {"kind": "simple", "concept": "zebra crossing"}])
    scores = score_table(table, acts, np.column_stack([p["dog"]]), ["dog"], "probe")
    assert scores["rho"].iloc[0] == pytest.approx(1.0)
    assert np.isnan(scores["rho"].iloc[1]) and scores["reason"].iloc[1] == "constant activation"
    assert np.isnan(scores["rho"].iloc[2]) and scores["reason"].iloc[2].startswith("concept unknown to probe")
    none_known = score_table(table, acts, np.zeros((n, 0)), [], "label")
    assert none_known["rho"].isna().all()


def test_tables_split_simple_and_complex_methods_with_mean_and_sem():
    rows = []
    for method, length, rhos in [("cd", 1, [0.1, 0.3, np.nan]), ("le", 3, [0.2, 0.4, 0.6])]:
        for k, r in enumerate(rhos):
            rows.append({"model": "m", "layer": "l", "neuron": k, "method": method, "concept_model": "probe",
                         "rho": r, "reason": "" if np.isfinite(r) else "constant activation",
                         "length": length if k else 1})
    t1, t2 = automated_tables(pd.DataFrame(rows, columns=SCORE_COLUMNS))
    assert t1["method"].tolist() == ["cd"] and t2["method"].tolist() == ["le"]
    r1 = t1.iloc[0]
    assert (r1["n_neurons"], r1["n_scored"], r1["n_nan"]) == (3, 2, 1)
    assert r1["mean"] == pytest.approx(0.2) and r1["sem"] == pytest.approx(np.std([0.1, 0.3], ddof=1) / np.sqrt(2))
    assert r1["mean_pm_sem"] == "0.2000 ± 0.1000"
    assert mean_sem(np.array([np.nan]))[0] != mean_sem(np.array([np.nan]))[0]  # NaN


def test_downstream_text_and_config_checks():
    assert downstream_text({"kind": "linear", "terms": [[0.1, "cat"], [0.9, "dog"], [-1, "car"]], "bias": 0}) == "dog, cat"
    assert downstream_text({"kind": "compositional", "formula": "dog AND NOT car"}) == "dog AND NOT car"
    cms = {"probe": {"backend": "probe"}, "conse": {"backend": "conse"}}
    vocabs = {"labels": {"source": "dataset"}, "words": {"source": "wordfreq"}}
    check_method("cd", {"method": "clip_dissect", "presence": "conse", "vocabulary": "words"}, cms, vocabs)
    with pytest.raises(ValueError, match="only knows the dataset's labelled"):
        check_method("le_probe", {"method": "le", "presence": "probe", "vocabulary": "words"}, cms, vocabs)
    with pytest.raises(ValueError, match="explain.methods.x.params"):
        check_method("x", {"method": "invert", "params": {"lenght": 3}}, cms, vocabs)
    with pytest.raises(ValueError, match="not a configured concept model"):
        check_method("x", {"method": "le", "presence": "siglip"}, cms, vocabs)


# ------------------------------------------------------------------------------------ (c) tiny run
@pytest.mark.slow
def test_tiny_run_explain_outputs(tiny_run):
    import yaml

    from neuronaudit.io import read_meta

    cfg = yaml.safe_load((tiny_run / "config/tiny.yaml").read_text())
    res = tiny_run / "results/tiny"
    methods = cfg["explain"]["methods"]
    scorers = {"label", *cfg["explain"]["scoring"]["concept_models"]}
    paths = []
    for model, spec in cfg["models"].items():
        for layer in spec["layers"]:
            n_neurons = None
            for method, entry in methods.items():
                path = res / f"explanations/{model}/{layer}/{method}.parquet"
                if entry["method"] == "import" and not path.exists():
                    # imports exist only for layers with a file (tests/test_pipeline.py checks which)
                    continue
                table = pd.read_parquet(path)
                meta = read_meta(path)
                paths.append(path)
                assert list(table.columns) == TABLE_COLUMNS and (table["method"] == method).all()
                if entry["method"] == "line":
                    # LINE explains a seeded subset of line.neurons_per_layer neurons (docs/line.md)
                    neurons = table["neuron"].tolist()
                    assert len(table) == cfg["line"]["neurons_per_layer"] and neurons == sorted(set(neurons))
                    assert meta["split"] == "val" and meta["runtime"]["seconds"] >= 0
                    scores = pd.read_parquet(res / f"scores/{model}/{layer}/{method}.parquet")
                    assert set(scores["concept_model"]) == scorers and len(scores) == len(scorers) * len(table)
                    continue
                n_neurons = n_neurons or len(table)
                assert len(table) == n_neurons and table["neuron"].tolist() == list(range(n_neurons))
                assert meta["split"] == "val" and meta["n_images"] == 200 and meta["runtime"]["seconds"] >= 0
                assert meta["entry"]["method"] == entry["method"]
                if entry["method"] in ("le_l1", "top_class") or entry.get("params", {}).get("length") == 1:
                    assert (table["length"] == 1).all()
                for s in table["structured"]:
                    json.loads(s)
                scores = pd.read_parquet(res / f"scores/{model}/{layer}/{method}.parquet")
                assert list(scores.columns) == SCORE_COLUMNS
                assert set(scores["concept_model"]) == scorers and len(scores) == len(scorers) * n_neurons
                ok = scores["rho"].notna()
                assert (scores.loc[ok, "reason"] == "").all() and (scores.loc[~ok, "reason"] != "").all()
                assert scores.loc[ok, "rho"].between(-1, 1).all()
            # CLIP-Dissect names words: the probe scores only labelled ones, the rest NaN with a reason
            cd = pd.read_parquet(res / f"scores/{model}/{layer}/clip_dissect.parquet")
            unknown = cd[(cd["concept_model"] == "probe") & cd["reason"].str.startswith("concept unknown to probe")]
            assert len(unknown) > 0
            # LE(label) scored by the ground truth and by the probe (AUC ~0.95) mostly agree
            le = pd.read_parquet(res / f"scores/{model}/{layer}/le_label.parquet").pivot(
                index="neuron", columns="concept_model", values="rho").dropna()
            assert np.corrcoef(le["label"], le["probe"])[0, 1] > 0.5
    t1 = pd.read_csv(res / "tables/table1_automated.csv")
    t2 = pd.read_csv(res / "tables/table2_complex.csv")
    for t in (t1, t2):
        assert {"mean", "sem", "mean_pm_sem", "n_scored", "n_nan"} <= set(t.columns)
        assert ((t["n_scored"] + t["n_nan"]) == t["n_neurons"]).all()
    assert {"clip_dissect", "invert_l1", "le_l1_label", "top_class"} <= set(t1["method"])
    assert {"le_label", "invert_l3"} <= set(t2["method"]) and (t1["max_length"] == 1).all()
    assert len(t1) + len(t2) == len(paths) * len(scorers)  # every explanation file (imports only where given)
    runtime = pd.read_csv(res / "tables/runtime.csv")
    assert len(runtime) == len(paths) and runtime["seconds"].ge(0).all()
    pd.testing.assert_frame_equal(runtime[["model", "layer", "method"]],
                                  runtime_table(paths)[["model", "layer", "method"]])
    t5 = pd.read_csv(res / "tables/table5_downstream.csv")
    classes = pd.read_csv(res / "tables/table5_downstream_classes.csv")
    assert set(t5["model"]) == set(cfg["downstream"]["models"]) == {"lite0"}  # cnn is trained on the data
    assert (t5["n_classes"] == 10).all() and t5["mean_auc"].between(0, 1).all()
    assert len(classes) == 10 * len(t5) and classes["auc"].between(0, 1).all()


@pytest.mark.slow
def test_similarity_rule_matches_presence_file(tiny_run):
    """The explain_similarity path (cos from embeddings + text encoder) equals the presence rule's score."""
    import yaml

    from neuronaudit.data.arrays import read_presence, split_rows
    from neuronaudit.explainers.similarity import split_concept_matrix

    cfg = yaml.safe_load((tiny_run / "config/tiny.yaml").read_text())
    res = tiny_run / "results/tiny"
    out = tiny_run / "similarity_check.parquet"
    split_concept_matrix(cfg["concept_models"]["conse"], res / "concept_models/conse.npz", res / "embeddings/conse.parquet",
                         res / "manifest.parquet", {"source": "wordfreq", "n": 300}, res / "labels.parquet", out,
                         values=["score", "probability"], max_concepts=50)
    rows = split_rows(pd.read_parquet(res / "manifest.parquet"), "val")
    ref, names = read_presence(res / "presence/conse/words.parquet", "score", rows, max_concepts=50)
    ids = pd.read_parquet(res / "manifest.parquet")["image_id"].to_numpy()[rows]
    got, got_names = read_presence(out, "score", image_ids=ids)
    assert got_names == names
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_skipped_images_and_nan_presence_are_left_out_not_fatal(tmp_path):
    """An image the extraction skipped (no activation row) and an image with a NaN embedding (NaN
    presence) are left out of the scores instead of failing the stage or turning every rho NaN."""
    from neuronaudit.data.arrays import load_activations
    from neuronaudit.io import write_matrix
    from neuronaudit.studies.automated import score_table

    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"image_id": [f"i{k}" for k in range(50)], "split": "test"})
    acts = rng.normal(size=(50, 3)).astype(np.float32)
    keep = np.ones(50, bool)
    keep[7] = False  # undecodable: the extraction wrote no row for it
    write_matrix(tmp_path / "a.parquet", manifest["image_id"][keep], {"activation": acts[keep]})
    loaded, names = load_activations(tmp_path / "a.parquet", manifest, np.arange(50))
    assert np.isnan(loaded[7]).all() and np.allclose(loaded[keep], acts[keep]) and names == ["0", "1", "2"]
    presence = (acts[:, [0]] > 0).astype(np.float32)
    presence[11] = np.nan  # NaN embedding for that image
    table = pd.DataFrame({"neuron": [0], "method": ["m"], "length": [1],
                          "structured": [json.dumps({"kind": "simple", "concept": "c"})]})
    scores = score_table(table, loaded, presence, ["c"], "probe")
    ok = keep.copy()
    ok[11] = False
    expected = np.corrcoef(acts[ok, 0], presence[ok, 0])[0, 1]
    assert np.isclose(scores["rho"].iloc[0], expected)
