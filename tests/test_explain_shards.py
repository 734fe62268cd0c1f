"""Sharded explanation methods (issue 12, item 4; docs/explain_stage.md "Sharding").

Library: a layer explained in shards (tiles of neurons, every n-th tile per shard) and gathered gives
the rows of an unsharded run bit for bit, the same exclusions, runtime summed; bad shard sets are
refused naming the file. Pipeline (slow: Snakemake on config/tiny.yaml): explain.shards = 1 plans no
shard job; explain.shards = 3 plans explain_shard / explain_gather jobs whose files equal the
unsharded run's; a shard deleted, or a run killed after a shard finished, reruns only the missing
shards (the others' files untouched).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from neuronaudit.exclusions import sidecar_path
from neuronaudit.explainers.stage import check_method, explain_layer, gather_shards, runtime_table
from neuronaudit.io import read_meta, read_table, write_matrix, write_table
from tests.conftest import copy_workflow, run_snakemake

# ---------------------------------------------------------------------------------------------- library
N_IMAGES, N_NEURONS, N_CLASSES, N_CONCEPTS = 120, 66, 5, 120
METHODS = {
    "le_cm": {"method": "le", "presence": "cm", "vocabulary": "v"},
    "le_label": {"method": "le", "presence": "label"},
    "l1": {"method": "le_l1", "presence": "cm", "vocabulary": "v"},
    "inv": {"method": "invert", "params": {"length": 3}},
    "top": {"method": "top_class"},
}


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    """120 val images of 5 classes with 3 attributes, a 120-concept presence matrix, 66 neurons mixing
    concepts, one all-NaN (excluded) and one constant. At this size LE's floats differ in the last bits
    between one call on all neurons and calls on tiles of 16 (BLAS blocking), so equal rows need tiles."""
    d = tmp_path_factory.mktemp("layer")
    rng = np.random.default_rng(0)
    ids = np.array([f"img{i:04d}" for i in range(N_IMAGES)])
    cls = rng.integers(0, N_CLASSES, N_IMAGES)
    write_table(pd.DataFrame({"image_id": ids, "source": "x", "label": [f"class{c}" for c in cls], "split": "val"}),
                d / "manifest.parquet")
    attrs = rng.random((N_IMAGES, 3)) < 0.3
    y = np.column_stack([cls[:, None] == np.arange(N_CLASSES), attrs]).astype(np.int8)
    concepts = [f"class{c}" for c in range(N_CLASSES)] + ["striped", "dotted", "plain"]
    kinds = ["class"] * N_CLASSES + ["attribute"] * 3
    write_table(pd.DataFrame({"image_id": np.repeat(ids, len(concepts)), "concept": np.tile(concepts, N_IMAGES),
                              "kind": np.tile(kinds, N_IMAGES), "present": y.ravel()}), d / "labels.parquet")
    prob = rng.beta(0.4, 1.2, size=(N_IMAGES, N_CONCEPTS)).astype(np.float32)
    prob[:, : y.shape[1]] = np.clip(y + 0.2 * rng.random(y.shape), 0, 1)
    prob[:, -1] *= 0.2  # fails LE's activity filter (top-5 mean < 0.5): an exclusion of the method itself
    write_matrix(d / "presence.parquet", ids, {"probability": prob}, columns=[f"w{j}" for j in range(N_CONCEPTS)])
    mix = rng.normal(size=(N_CONCEPTS, N_NEURONS)) * (rng.random((N_CONCEPTS, N_NEURONS)) < 0.15)
    acts = (prob @ mix + 0.3 * rng.normal(size=(N_IMAGES, N_NEURONS))).astype(np.float32)
    acts[:, 7] = np.nan
    acts[:, 12] = 1.0
    write_matrix(d / "acts.parquet", ids, {"activation": acts}, columns=[str(k) for k in range(N_NEURONS)])
    return d


def _explain(d, out_dir, shard=None, methods=METHODS, tile=16):
    outs = {m: out_dir / f"{m}.parquet" for m in methods}
    explain_layer(methods, outs, manifest_path=d / "manifest.parquet", labels_path=d / "labels.parquet",
                  activations_path=d / "acts.parquet", model="m", layer="l",
                  presence_paths={("cm", "v"): d / "presence.parquet"}, shard=shard, tile_neurons=tile)
    return outs


def test_shards_gathered_equal_the_unsharded_rows_bit_for_bit(layer, tmp_path):
    whole = _explain(layer, tmp_path / "whole")
    n = 4  # 65 kept neurons in 5 tiles (16, 16, 16, 16, 1): shards of tiles {1, 5}, {2}, {3}, {4}
    parts = [_explain(layer, tmp_path / f"s{i}", shard=(i, n)) for i in range(1, n + 1)]
    for m in METHODS:
        files = [p[m] for p in parts]
        got = gather_shards(files, tmp_path / "gathered" / f"{m}.parquet")
        want = read_table(whole[m])
        assert 7 not in set(want["neuron"]) and len(want) >= N_NEURONS - 1, m
        pd.testing.assert_frame_equal(read_table(tmp_path / "gathered" / f"{m}.parquet"), want, check_exact=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        pd.testing.assert_frame_equal(read_table(sidecar_path(tmp_path / "gathered" / f"{m}.parquet")),
                                      read_table(sidecar_path(whole[m])), check_exact=True)
        a, b = read_meta(whole[m]), read_meta(tmp_path / "gathered" / f"{m}.parquet")
        for key in ("model", "layer", "method", "entry", "split", "n_images", "n_concepts", "n_layer_neurons",
                    "excluded"):
            assert a[key] == b[key], (m, key)
        shard_rt = [read_meta(f)["runtime"] for f in files]
        assert b["runtime"]["n_neurons"] == a["runtime"]["n_neurons"] == N_NEURONS - 1
        assert [r["n_neurons"] for r in shard_rt] == [17, 16, 16, 16]
        for key in ("seconds", "seconds_inputs", "seconds_total"):
            assert b["runtime"][key] == pytest.approx(sum(r[key] for r in shard_rt), rel=1e-12)
        assert b["shards"]["n"] == n and b["shards"]["seconds"] == [r["seconds"] for r in shard_rt]
    # LE's activity filter is recorded once, not once per tile or shard
    t = read_table(sidecar_path(tmp_path / "gathered" / "le_cm.parquet"))
    assert t.loc[t["item"] == "concept", "name"].tolist() == [f"w{N_CONCEPTS - 1}"] and (t["item"] == "neuron").sum() == 1
    rt = runtime_table([tmp_path / "gathered" / f"{m}.parquet" for m in METHODS] + [whole["inv"]])
    assert rt.loc[rt["method"] == "le_cm", "shards"].item() == n and rt["shards"].tolist().count(1) == 1


def test_tiles_bound_each_call_and_more_shards_than_tiles_leave_empty_shards(layer, tmp_path):
    """Tiles of 32 neurons: 3 tiles, so shards 4 and 5 of 5 explain nothing and are still gathered."""
    m = {"le_cm": METHODS["le_cm"]}
    whole = _explain(layer, tmp_path / "whole", methods=m, tile=32)
    parts = [_explain(layer, tmp_path / f"s{i}", shard=(i, 5), methods=m, tile=32)["le_cm"] for i in range(1, 6)]
    assert [len(read_table(p)) for p in parts] == [32, 32, 1, 0, 0]
    got = gather_shards(parts, tmp_path / "g.parquet")
    pd.testing.assert_frame_equal(got, read_table(whole["le_cm"]), check_exact=True)
    # a different tile size is a different (rounding-level) computation: its shards do not mix
    other = _explain(layer, tmp_path / "t4", shard=(2, 5), methods=m, tile=16)["le_cm"]
    with pytest.raises(ValueError, match=r"t4/le_cm.parquet: its provenance differs .*'tile_neurons'"):
        gather_shards([parts[0], other, *parts[2:]], tmp_path / "bad.parquet")


def test_le_presence_setup_is_done_once_per_job_and_changes_no_bit(layer, tmp_path, monkeypatch):
    """LE's presence-only setup (activity filter, standardised train rows, FISTA step size) is computed
    once per (layer, method) job, not once per tile, and the rows equal those of one call per tile."""
    from neuronaudit.explainers import methods as le_methods
    from neuronaudit.explainers.registry import ExplainInputs, get_explainer
    from neuronaudit.explainers.stage import _run_tiles, generate

    calls = []
    orig = le_methods.prepare_presence
    monkeypatch.setattr(le_methods, "prepare_presence", lambda *a, **k: calls.append(1) or orig(*a, **k))
    m = {k: METHODS[k] for k in ("le_cm", "le_label")}
    outs = _explain(layer, tmp_path / "whole", methods=m, tile=16)  # 65 kept neurons: 5 tiles
    assert len(calls) == 2  # one per method, not 5
    assert read_table(outs["le_cm"])["neuron"].nunique() == 65
    calls.clear()
    _explain(layer, tmp_path / "s2", shard=(2, 3), methods=m, tile=16)  # tiles 2 and 5
    assert len(calls) == 2
    # _run_tiles with the shared setup = separate calls per tile (each preparing its own), bit for bit
    rng = np.random.default_rng(5)
    x = rng.beta(0.4, 1.2, size=(150, 40)).astype(np.float32)
    acts = (x @ rng.normal(size=(40, 40)) + rng.normal(size=(150, 40))).astype(np.float32)
    names = [f"w{j}" for j in range(40)]
    tiles = [(0, 16), (16, 32), (32, 40)]
    calls.clear()
    data = ExplainInputs(method="le", entry={"method": "le"}, activations=acts, presence=x, concepts=names)
    shared = _run_tiles(get_explainer("le"), data, tiles, np.arange(40), "le")
    assert len(calls) == 1
    separate = pd.concat([generate("le", {"method": "le"}, acts[:, a:b], presence=x, concepts=names)
                          .assign(neuron=lambda t, a=a: t["neuron"] + a) for a, b in tiles], ignore_index=True)
    assert len(calls) == 4
    pd.testing.assert_frame_equal(shared, separate, check_exact=True)


def test_bad_shard_sets_are_refused_naming_the_file(layer, tmp_path):
    m = {"inv": METHODS["inv"]}
    parts = [_explain(layer, tmp_path / f"s{i}", shard=(i, 3), methods=m)["inv"] for i in range(1, 4)]
    with pytest.raises(ValueError, match=r"shards \['1-of-3', '2-of-3'\], not 1\.\.3 of 3"):
        gather_shards(parts[:2], tmp_path / "g.parquet")
    with pytest.raises(ValueError, match=r"not 1\.\.3 of 3"):
        gather_shards([parts[0], parts[0], parts[2]], tmp_path / "g.parquet")
    whole = _explain(layer, tmp_path / "whole", methods=m)["inv"]
    with pytest.raises(ValueError, match=r"whole/inv.parquet: not a shard file"):
        gather_shards([whole, *parts[1:]], tmp_path / "g.parquet")
    other = _explain(layer, tmp_path / "l3", shard=(2, 3), methods={"inv": {"method": "invert",
                                                                            "params": {"length": 1}}})["inv"]
    with pytest.raises(ValueError, match=r"l3/inv.parquet: its provenance differs .* \['entry'\]"):
        gather_shards([parts[0], other, parts[2]], tmp_path / "g.parquet")
    with pytest.raises(ValueError, match="not per-neuron explainers"):
        _explain(layer, tmp_path / "cd", shard=(1, 2),
                 methods={"cd": {"method": "clip_dissect", "presence": "cm", "vocabulary": "v"}})


def test_shards_key_is_checked_per_method():
    check_method("le_w", {"method": "le", "presence": "label", "shards": 4})
    check_method("cd", {"method": "clip_dissect", "presence": "cm", "vocabulary": "v", "shards": 1})
    with pytest.raises(ValueError, match=r"explain.methods.cd.shards = 3: clip_dissect does not explain each neuron"):
        check_method("cd", {"method": "clip_dissect", "presence": "cm", "vocabulary": "v", "shards": 3})
    with pytest.raises(ValueError, match=r"explain.methods.le_w.shards = 0"):
        check_method("le_w", {"method": "le", "presence": "label", "shards": 0})
    with pytest.raises(ValueError, match=r"explain.methods.line_offline.shards: LINE's jobs are sharded by line.shards"):
        check_method("line_offline", {"method": "line", "shards": 2})


# --------------------------------------------------------------------------------------------- pipeline
SHARDED = ["le_label", "le_words", "le_l1_label", "invert_l1", "top_class"]
LAYERS = ["head"]  # lite0 head: 1,280 neurons, 5 tiles: shards of 2, 2 and 1 tiles
TARGETS = [f"results/tiny/explanations/lite0/{layer}/{m}.parquet" for layer in LAYERS for m in SHARDED]
SHARD_DIR = "results/tiny/explain_shards/lite0"


def _tiny_config(work: Path) -> None:
    """config/tiny.yaml with LE over the 300-word vocabulary (ConSE) beside the label methods."""
    path = work / "config" / "tiny.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["explain"]["methods"] = {
        "clip_dissect": {"method": "clip_dissect", "presence": "conse", "vocabulary": "words"},
        "le_label": {"method": "le", "presence": "label"},
        "le_words": {"method": "le", "presence": "conse", "vocabulary": "words"},
        "le_l1_label": {"method": "le_l1", "presence": "label"},
        "invert_l1": {"method": "invert", "params": {"length": 1}},
        "top_class": {"method": "top_class"},
    }
    cfg["crowd"]["methods"] = ["clip_dissect", "le_l1_label"]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _jobs(out: str) -> dict[str, int]:
    table = out.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def _ran(proc) -> dict[str, int]:
    """Rules and how many of their jobs a real run executed (Snakemake's log on stderr)."""
    names = re.findall(r"^(?:local)?rule (\w+):$", proc.stderr + proc.stdout, re.M)
    return {n: names.count(n) for n in set(names)}


SHARDS3 = ["--config", "explain={shards: 3}"]


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("explain_shards"))
    _tiny_config(work)
    # a flag first: run_snakemake puts --configfile (which takes several values) before these arguments
    run_snakemake(work, "--rerun-incomplete", *TARGETS)  # explain.shards = 1: the layer's explain job
    ref = work / "unsharded"
    ref.mkdir()
    for t in TARGETS:
        for f in (Path(t), sidecar_path(t)):
            dest = ref / f.relative_to("results/tiny/explanations")
            dest.parent.mkdir(parents=True, exist_ok=True)
            (work / f).rename(dest)
    proc = run_snakemake(work, "--rerun-incomplete", *TARGETS, *SHARDS3)
    return work, proc


@pytest.mark.slow
def test_dag_unchanged_with_one_shard_and_sharded_with_three(tmp_path):
    work = copy_workflow(tmp_path)
    _tiny_config(work)
    one = _jobs(run_snakemake(work, "-n").stdout)
    assert "explain_shard" not in one and "explain_gather" not in one and one["explain"] == 4
    three = _jobs(run_snakemake(work, "-n", *SHARDS3).stdout)
    assert three["explain_shard"] == 4 * len(SHARDED) * 3 and three["explain_gather"] == 4 * len(SHARDED)
    assert three["explain"] == 4  # clip_dissect compares neurons: it stays in the layer's job
    assert three["total"] == one["total"] + 4 * len(SHARDED) * 4
    # one method's own shards: splits only that method; --set-scatter explain=N sets explain.shards,
    # and a method's own shards: wins over it
    own = _jobs(run_snakemake(work, "-n", "--config", "explain={methods: {le_words: {shards: 2}}}").stdout)
    assert own["explain_shard"] == 4 * 2 and own["explain_gather"] == 4
    scat = _jobs(run_snakemake(work, "-n", "--set-scatter", "explain=2").stdout)
    assert scat["explain_shard"] == 4 * len(SHARDED) * 2
    both = _jobs(run_snakemake(work, "-n", "--set-scatter", "explain=3", "--config",
                               "explain={methods: {le_words: {shards: 2}}}").stdout)
    assert both["explain_shard"] == 4 * ((len(SHARDED) - 1) * 3 + 2)
    bad = run_snakemake(work, "-n", "--config", "explain={methods: {clip_dissect: {shards: 2}}}", check=False)
    assert bad.returncode != 0 and "explain.methods.clip_dissect.shards = 2" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_pipeline_shards_equal_the_unsharded_files(sharded_run):
    work, proc = sharded_run
    ran = _ran(proc)
    assert ran["explain_shard"] == len(LAYERS) * len(SHARDED) * 3 and "explain" not in ran, ran
    for t in TARGETS:
        rel = Path(t).relative_to("results/tiny/explanations")
        want, got = read_table(work / "unsharded" / rel), read_table(work / t)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        pd.testing.assert_frame_equal(read_table(sidecar_path(work / t)), read_table(sidecar_path(work / "unsharded" / rel)))
        a, b = read_meta(work / "unsharded" / rel), read_meta(work / t)
        assert {k: a[k] for k in ("entry", "n_images", "n_concepts", "excluded")} == \
            {k: b[k] for k in ("entry", "n_images", "n_concepts", "excluded")}
        shards = [read_meta(work / SHARD_DIR / rel.parent.name / rel.stem / f"shard_{i}-of-3.parquet")["runtime"]
                  for i in (1, 2, 3)]
        assert b["runtime"]["seconds"] == pytest.approx(sum(s["seconds"] for s in shards), rel=1e-12)
        assert b["runtime"]["n_neurons"] == a["runtime"]["n_neurons"] == sum(s["n_neurons"] for s in shards)
    words = read_table(work / "results/tiny/explanations/lite0/head/le_words.parquet")
    assert len(words) == 1280 and json.loads(words["params"][0])["max_length"] == 10


def _mtimes(work: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (work / SHARD_DIR).rglob("shard_*.parquet") if ".excluded" not in p.name}


@pytest.mark.slow
def test_a_lost_shard_is_the_only_one_rerun(sharded_run):
    """A run stopped before the gather with one shard file missing (lost, or its job failed)."""
    work, _ = sharded_run
    lost = work / SHARD_DIR / "head/le_words/shard_2-of-3.parquet"
    out = work / "results/tiny/explanations/lite0/head/le_words.parquet"
    lost.unlink()
    out.unlink()
    before = _mtimes(work)
    proc = run_snakemake(work, "--rerun-incomplete", *TARGETS, *SHARDS3)
    assert _ran(proc) == {"explain_shard": 1, "explain_gather": 1}, _ran(proc)
    after = _mtimes(work)
    assert {p: after[p] for p in before} == before and lost.exists()
    pd.testing.assert_frame_equal(read_table(out), read_table(work / "unsharded/lite0/head/le_words.parquet"),
                                  check_exact=True)


@pytest.mark.slow
def test_a_killed_run_resumes_from_the_finished_shards(sharded_run):
    """Snakemake and its job killed (SIGKILL to the process group: a node lost, the OOM killer) as soon as
    it reports a finished shard of LE over the words; the rerun (--unlock, --rerun-incomplete as after
    any hard kill) makes the other shards and the gather, and leaves the finished shard as it was."""
    work, _ = sharded_run
    folder = work / SHARD_DIR / "head/le_words"
    for p in folder.glob("shard_*"):
        p.unlink()
    target = "results/tiny/explanations/lite0/head/le_words.parquet"
    (work / target).unlink()
    env = {**os.environ, "PYTHONPATH": str(work / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile", "config/tiny.yaml", *SHARDS3]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:  # Snakemake's log: "Finished jobid: 3 (Rule: explain_shard)"
            seen.append(line)
            if re.match(r"Finished jobid: \d+ \(Rule: explain_shard\)", line):
                break
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=120)
    assert any("Finished jobid" in x for x in seen), "".join(seen[-30:])
    done = {p: p.stat().st_mtime_ns for p in folder.glob("shard_*-of-3.parquet")}
    assert done, "no shard finished before the kill"
    run_snakemake(work, "--unlock", target, *SHARDS3)  # a lock the killed run may have left
    rerun = run_snakemake(work, "--rerun-incomplete", target, *SHARDS3)
    ran = _ran(rerun)
    assert ran.get("explain_shard", 0) == 3 - len(done) and ran.get("explain_gather") == 1, ran
    assert {p: p.stat().st_mtime_ns for p in done} == done
    pd.testing.assert_frame_equal(read_table(work / target), read_table(work / "unsharded/lite0/head/le_words.parquet"),
                                  check_exact=True)
