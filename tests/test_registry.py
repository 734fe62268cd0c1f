"""Explainers and scorers plug in: a class registered in a test runs through the same dispatch the
pipeline's explain and score jobs use (explain_layer, check_method, config validation, score_layer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuronaudit.config import ConfigError, load_config
from neuronaudit.explainers.registry import (
    EXPLAINERS,
    Explainer,
    ExplainInputs,
    get_explainer,
    register_explainer,
)
from neuronaudit.explainers.stage import check_method, explain_layer
from neuronaudit.explanations import TABLE_COLUMNS, explanation_table
from neuronaudit.io import read_meta, read_table, write_matrix, write_table
from neuronaudit.studies.automated import score_layer
from neuronaudit.studies.scorers import SCORERS, Scorer, ScoringData, register_scorer


@pytest.fixture
def toy_explainer():
    @register_explainer
    class MostActiveConcept(Explainer):
        """Toy: the concept with the largest mean presence on the neuron's top image."""

        name = "toy_top_image"
        inputs = frozenset({"activations", "labels", "concept_model"})
        params = {"offset": 0}

        def explain(self, inputs: ExplainInputs, offset: int = 0) -> pd.DataFrame:
            top = np.argmax(inputs.activations, axis=0)  # one image per neuron
            best = np.argmax(inputs.presence[top], axis=1)
            dicts = [{"kind": "simple", "concept": inputs.concepts[(c + offset) % len(inputs.concepts)]}
                     for c in best]
            return explanation_table(np.arange(len(dicts)), inputs.method, dicts, {"offset": offset})

    yield MostActiveConcept
    del EXPLAINERS["toy_top_image"]


def _files(d):
    """40 images (val / test alternate) of 4 classes; neuron k fires on class k, neuron 4 on class 0."""
    n = 40
    ids = np.array([f"i{k:02d}" for k in range(n)])
    cls = np.arange(n) % 4
    split = np.where((np.arange(n) // 4) % 2 == 0, "val", "test")
    write_table(pd.DataFrame({"image_id": ids, "source": "x", "label": cls.astype(str), "split": split}),
                d / "manifest.parquet")
    concepts = [f"class{c}" for c in range(4)]
    y = (cls[:, None] == np.arange(4)).astype(np.int8)
    write_table(pd.DataFrame({"image_id": np.repeat(ids, 4), "concept": np.tile(concepts, n), "kind": "class",
                              "present": y.ravel()}), d / "labels.parquet")
    rng = np.random.default_rng(0)
    acts = np.column_stack([y, y[:, 0]]).astype(np.float32) * 3 + rng.normal(0, 0.1, (n, 5)).astype(np.float32)
    write_matrix(d / "acts.parquet", ids, {"activation": acts}, columns=[str(k) for k in range(5)])
    return concepts


def test_a_registered_explainer_runs_through_the_explain_stage(tmp_path, toy_explainer):
    concepts = _files(tmp_path)
    assert isinstance(get_explainer("toy_top_image"), toy_explainer)
    methods = {"toy": {"method": "toy_top_image", "presence": "label", "params": {"offset": 1}},
               "le_l1": {"method": "le_l1", "presence": "label"}}
    check_method("toy", methods["toy"])  # the DAG-time check knows it, and its params
    with pytest.raises(ValueError, match=r"not understood by toy_top_image; allowed: \['offset'\]"):
        check_method("toy", {"method": "toy_top_image", "params": {"ofset": 1}})
    outs = {m: tmp_path / "explanations" / f"{m}.parquet" for m in methods}
    tables = explain_layer(methods, outs, manifest_path=tmp_path / "manifest.parquet",
                           labels_path=tmp_path / "labels.parquet", activations_path=tmp_path / "acts.parquet",
                           model="m", layer="l")
    toy = read_table(outs["toy"])
    assert list(toy.columns) == TABLE_COLUMNS and (toy["method"] == "toy").all()
    # neuron k fires on class k: the toy names class k + offset 1
    assert toy["explanation"].tolist() == [concepts[(k + 1) % 4] for k in range(4)] + [concepts[1]]
    assert tables["le_l1"]["explanation"].tolist() == concepts + [concepts[0]]
    meta = read_meta(outs["toy"])
    assert meta["entry"]["method"] == "toy_top_image" and meta["n_images"] == 20 and meta["runtime"]["seconds"] >= 0


def test_unknown_methods_list_the_registered_ones(toy_explainer):
    with pytest.raises(ValueError, match=r"use one of the registered methods \[.*'le'.*'toy_top_image'\]"):
        check_method("x", {"method": "lne"})
    with pytest.raises(ValueError, match="unknown explanation method 'lne'; registered"):
        get_explainer("lne")
    # the config schema's enum is the registry
    tiny = Path(__file__).resolve().parents[1] / "config" / "tiny.yaml"
    cfg = load_config(tiny, overrides={"explain": {"methods": {"t": {"method": "toy_top_image"}}}})
    assert cfg["explain"]["methods"]["t"]["method"] == "toy_top_image"
    with pytest.raises(ConfigError, match="is not one of"):
        load_config(tiny, overrides={"explain": {"methods": {"t": {"method": "lne"}}}})


def test_input_checks_follow_the_declared_inputs(toy_explainer):
    with pytest.raises(ValueError, match="works on the binary ground-truth labels"):
        check_method("x", {"method": "invert", "presence": "cm"})
    with pytest.raises(ValueError, match="needs image-text similarities"):
        check_method("x", {"method": "clip_dissect", "presence": "label"})
    check_method("x", {"method": "toy_top_image", "presence": "cm"}, {"cm": {"backend": "conse"}},
                 {"labels": {"source": "dataset"}})
    with pytest.raises(TypeError, match="inputs"):
        register_explainer(type("Bad", (Explainer,), {"name": "bad", "inputs": frozenset({"pixels"}),
                                                       "explain": lambda self, inputs: None}))


def test_a_registered_scorer_runs_through_the_score_stage(tmp_path):
    concepts = _files(tmp_path)

    @register_scorer
    class Oracle(Scorer):
        """Toy: presence = the labels, known for every named concept."""

        kind = "oracle"

        def presence(self, data: ScoringData):
            labels = data.labels
            wide = labels.pivot_table(index="image_id", columns="concept", values="present")
            return wide.loc[list(data.image_ids), data.named].to_numpy(np.float32), list(data.named)

    try:
        table = explanation_table(range(5), "cd", [{"kind": "simple", "concept": c} for c in concepts + [concepts[0]]])
        write_table(table, tmp_path / "cd.parquet")
        scores = score_layer({"cd": tmp_path / "cd.parquet"}, {"cd": tmp_path / "scores.parquet"},
                             activations_path=tmp_path / "acts.parquet", manifest_path=tmp_path / "manifest.parquet",
                             labels_path=tmp_path / "labels.parquet", presence_paths={}, scorers=["oracle"],
                             label_scoring=False,
                             model="m", layer="l")["cd"]
        label = score_layer({"cd": tmp_path / "cd.parquet"}, {"cd": tmp_path / "scores2.parquet"},
                            activations_path=tmp_path / "acts.parquet", manifest_path=tmp_path / "manifest.parquet",
                            labels_path=tmp_path / "labels.parquet", presence_paths={}, model="m", layer="l")["cd"]
    finally:
        del SCORERS["oracle"]
    assert (scores["concept_model"] == "oracle").all() and (scores["rho"] > 0.9).all()
    np.testing.assert_allclose(scores["rho"], label["rho"])  # the oracle is the labels
