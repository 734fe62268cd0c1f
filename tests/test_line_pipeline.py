"""LINE in the pipeline, end to end on config/tiny.yaml (slow): the offline variant sharded over 3
scattergather jobs per layer, gathered into the layer's explanation table and history, scored with the
other methods, summarised in the polysemanticity table and the CoSy-style table of every method, and
resumed from its per-neuron checkpoints."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from neuronaudit.io import read_meta
from tests.conftest import copy_workflow, run_snakemake

LINE = json.dumps({"shards": 3, "neurons_per_layer": 5, "iterations": 4})
HIST = "results/tiny/explanations/lite0/head/line_offline_history.parquet"
EXPL = "results/tiny/explanations/lite0/head/line_offline.parquet"
SCORE = "results/tiny/scores/lite0/head/line_offline.parquet"
POLY = "results/tiny/tables/line_polysemanticity.csv"
COSY = "results/tiny/tables/cosy.csv"


@pytest.fixture(scope="module")
def line_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("line"))
    # a flag first: run_snakemake puts --configfile (which takes several values) before these arguments
    run_snakemake(work, "--rerun-incomplete", HIST, SCORE, POLY, COSY, "--config", f"line={LINE}")
    return work


@pytest.mark.slow
def test_line_offline_explanations_history_scores_and_tables(line_run):
    hist = pd.read_parquet(line_run / HIST)
    expl = pd.read_parquet(line_run / EXPL)
    assert hist["neuron"].nunique() == 5 and len(expl) == 5
    per = hist.groupby("neuron").size()
    assert (per == 10 + 4 + 1).all()  # 10 classes, 4 iterations, the summary
    assert set(expl["method"]) == {"line_offline"}
    final = hist.sort_values("step").groupby("neuron").tail(1).set_index("neuron")
    assert expl.set_index("neuron")["explanation"].sort_index().tolist() == final["best_concept"].sort_index().tolist()
    ids = set(sum((list(x) for x in hist["image_ids"]), []))
    manifest = pd.read_parquet(line_run / "results/tiny/manifest.parquet").set_index("image_id")
    assert set(manifest.loc[list(ids), "split"]) == {"train"}  # retrieved from train: never val or test
    shards = sorted((line_run / "results/tiny/line/lite0/head/line_offline").glob("shard_*.parquet"))
    assert [p.name for p in shards] == [f"shard_{i}-of-3.parquet" for i in (1, 2, 3)]
    assert sum(pd.read_parquet(p)["neuron"].nunique() for p in shards) == 5
    meta = read_meta(line_run / EXPL)
    assert meta["runtime"]["n_neurons"] == 5 and meta["n_layer_neurons"] == 1280
    scores = pd.read_parquet(line_run / SCORE)
    assert set(scores["method"]) == {"line_offline"} and set(scores["neuron"]) == set(expl["neuron"])
    poly = pd.read_csv(line_run / POLY)
    assert len(poly) == 4 * 1  # every configured layer x line_offline
    assert poly["n_neurons"].eq(5).all() and poly["share_new_concepts"].between(0, 1).all()
    cosy = pd.read_csv(line_run / COSY)
    assert {"line_offline", "clip_dissect", "le_label", "invert_l1", "top_class"} <= set(cosy["method"])
    assert len(cosy[cosy["method"] == "line_offline"]) == 4 and cosy["mean_auc"].between(0, 1).all()
    assert (line_run / "results/tiny/figures/cosy.png").stat().st_size > 1000


@pytest.mark.slow
def test_rerun_after_a_kill_before_the_gather_resumes_from_checkpoints(line_run):
    """As if the run was killed after the neurons finished but before the shards and the gather wrote."""
    for p in (line_run / "results/tiny/line/lite0/head/line_offline").glob("shard_*.parquet"):
        p.unlink()
    (line_run / HIST).unlink()
    (line_run / EXPL).unlink()
    before = {p: p.stat().st_mtime_ns for p in (line_run / "results/tiny/line/lite0/head/line_offline/neurons").iterdir()}
    assert len(before) == 5
    run_snakemake(line_run, "--rerun-incomplete", HIST, "--config", f"line={LINE}")
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # no neuron recomputed
    logs = [(line_run / f"logs/tiny/line_shard/lite0/head/line_offline/{i}-of-3.log").read_text() for i in (1, 2, 3)]
    assert all("(0 computed, " in t.strip().splitlines()[-2] for t in logs), logs  # the last run's summary line
    assert pd.read_parquet(line_run / HIST)["neuron"].nunique() == 5
