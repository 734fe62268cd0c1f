"""End-to-end: Snakemake on config/tiny.yaml in a temporary copy of the workflow, every output read
back; then the caching rules of docs/caching.md (no-op rerun, one setting reruns one stage and what
depends on it, a library change reruns the stages that import it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from neuronaudit.io import read_matrix

from .conftest import REPO
from .conftest import planned_rules as _planned_rules

pytestmark = pytest.mark.slow


def test_every_output_reads_back(tiny_run):
    res = tiny_run / "results" / "tiny"
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    manifest = pd.read_parquet(res / "manifest.parquet")
    assert manifest["split"].value_counts().to_dict() == cfg["dataset"]["splits"]
    labels = pd.read_parquet(res / "labels.parquet")
    assert len(labels) == len(manifest) * labels["concept"].nunique()
    ids = list(manifest["image_id"])
    for model, mspec in cfg["models"].items():
        for layer in mspec["layers"]:
            m = read_matrix(res / "activations" / model / f"{layer}.parquet")
            assert list(m.image_ids) == ids
            acts = m["activation"]
            assert np.isfinite(acts).all() and acts.std(0).max() > 0
            assert m.meta["model"] == model and "versions" in m.meta
    for cm in cfg["concept_models"]:
        emb = read_matrix(res / "embeddings" / f"{cm}.parquet")
        assert list(emb.image_ids) == ids and np.isfinite(emb["embedding"]).all()
    for cm, vocab in cfg["presence"]:
        p = read_matrix(res / "presence" / cm / f"{vocab}.parquet")
        assert list(p.image_ids) == ids
        prob = p["probability"]
        assert prob.shape[1] == len(p.columns) and ((prob >= 0) & (prob <= 1)).all()
    # calibrations are fitted against classes and superclasses only (SPEC sec. 2), probes on every concept
    import json

    kinds = labels.drop_duplicates("concept").set_index("concept")["kind"].astype(str)
    conse = json.loads((res / "concept_models" / "conse.json").read_text())
    assert {kinds[c] for c in conse["concepts"]} == {"class", "superclass"}
    probe = json.loads((res / "concept_models" / "probe.json").read_text())
    assert "attribute" in {kinds[c] for c in probe["concepts"]}
    # a log per job
    assert (tiny_run / "logs" / "tiny" / "build_dataset.log").stat().st_size > 0


def test_probe_presence_beats_chance_on_classes(tiny_run):
    """The default concept model must carry signal: its class presence separates the classes (AUC)."""
    from sklearn.metrics import roc_auc_score

    res = tiny_run / "results" / "tiny"
    p = read_matrix(res / "presence" / "probe" / "labels.parquet")
    manifest = pd.read_parquet(res / "manifest.parquet")
    val = (manifest["split"] != "train").to_numpy()
    aucs = [roc_auc_score(manifest["label"].to_numpy()[val] == c, p["probability"][val, p.columns.index(c)])
            for c in sorted(manifest["label"].unique())]
    assert np.mean(aucs) > 0.8, aucs


def test_noop_rerun_runs_nothing(tiny_run):
    assert _planned_rules(tiny_run) == {}


def test_one_setting_reruns_its_stage_and_dependents_only(tiny_run):
    cfg = yaml.safe_load((tiny_run / "config" / "tiny.yaml").read_text())
    cfg["models"]["cnn"]["train"]["epochs"] = 2
    (tiny_run / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    try:
        planned = _planned_rules(tiny_run)
        assert set(planned) >= {"train_small_cnn", "extract_activations_cnn"}
        assert "extract_activations_lite0" not in planned and "build_dataset" not in planned
        assert not any(r.startswith("embed") for r in planned)
    finally:
        shutil.copy(REPO / "config" / "tiny.yaml", tiny_run / "config" / "tiny.yaml")
    assert _planned_rules(tiny_run) == {}


def test_library_change_reruns_the_stages_that_use_it(tiny_run):
    mod = tiny_run / "src" / "neuronaudit" / "activations" / "train.py"
    original = mod.read_text()
    mod.write_text(original + "\n# a change\n")
    try:
        planned = _planned_rules(tiny_run)
        assert "train_small_cnn" in planned and "build_dataset" not in planned
    finally:
        mod.write_text(original)
    assert _planned_rules(tiny_run) == {}


def test_transitively_imported_module_change_reruns_the_stage(tiny_run):
    """aggregation.py is imported by the scoring stage only through studies/automated.py: no list names it."""
    mod = tiny_run / "src" / "neuronaudit" / "aggregation.py"
    original = mod.read_text()
    mod.write_text(original + "\n# a change\n")
    try:
        planned = _planned_rules(tiny_run)
        assert "score_explanations" in planned and "setting2" in planned
        assert "build_dataset" not in planned and "extract_activations_lite0" not in planned
    finally:
        mod.write_text(original)
    assert _planned_rules(tiny_run) == {}


def test_invalid_config_fails_before_any_job_naming_the_key(tmp_path):
    bad = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    bad["activations"] = {"batch_size": "many"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", "-n",
                           "--configfile", str(tmp_path / "bad.yaml")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "batch_size" in text and "many" in text
    assert not (tmp_path / "results").exists()


def test_imported_explanations_are_normalised_and_scored(tiny_run):
    """config/tiny.yaml imports a CLIP-Dissect-style CSV for lite0/head: every row arrives, and is scored."""
    res = tiny_run / "results" / "tiny"
    src = pd.read_csv(REPO / "config" / "examples" / "tiny_lite0_head_clip_dissect.csv")
    imported = pd.read_parquet(res / "explanations" / "lite0" / "head" / "imported.parquet")
    assert len(imported) == len(src) == 1280
    assert (imported.sort_values("neuron")["explanation"].to_numpy() == src.sort_values("unit")["description"].to_numpy()).all()
    scores = pd.read_parquet(res / "scores" / "lite0" / "head" / "imported.parquet")
    assert set(scores["neuron"]) == set(range(1280))
    assert scores["rho"].notna().mean() > 0.5
    assert not (res / "explanations" / "cnn" / "fc1" / "imported.parquet").exists()
