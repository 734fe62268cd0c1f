"""The crowd stage end to end through Snakemake on config/tiny.yaml (issue 9, item 7): design -> MTurk
export -> simulated workers in MTurk's results format -> import (-> aggregate -> tables when present)."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from neuronaudit.crowd.mturk import image_id_from_cell

from .conftest import snakemake_cmd

pytestmark = pytest.mark.slow

CFG = ("--cores", "2", "--configfile", "config/tiny.yaml")


def _crowd(work):
    return work / "results" / "tiny" / "crowd"


def test_the_crowd_files_of_the_tiny_study(tiny_run):
    crowd = _crowd(tiny_run)
    expl = pd.read_parquet(crowd / "explanations.parquet")
    design = pd.read_parquet(crowd / "design.parquet")
    items = pd.read_parquet(crowd / "items.parquet")
    tasks = pd.read_parquet(crowd / "tasks.parquet")
    excluded = pd.read_parquet(crowd / "explanations.excluded.parquet")
    # 3 neurons x 2 methods, each kept or excluded with a reason
    assert len(expl) + len(excluded) == 6 and len(expl) >= 3
    assert set(expl["method"]) <= {"clip_dissect", "le_l1_label"}
    assert (design.groupby("explanation_id").size() == 40).all()
    assert set(design["explanation_id"]) == set(expl["explanation_id"])
    assert np.allclose(design["weight"], 1.0 / (expl["n_population"].iloc[0] * design["q"]))
    assert not items.duplicated(["image_id", "concept"]).any()
    assert tasks.groupby("task").size().max() <= 15 and (tasks.groupby("task")["concept"].nunique() == 1).all()
    # le_l1_label names labelled concepts: its exact rho is known
    assert expl.loc[expl["method"] == "le_l1_label", "exact_rho"].notna().all()
    # export: template variables = batch columns; every task image rendered
    html = (crowd / "mturk" / "task.html").read_text()
    batch = pd.read_csv(crowd / "mturk" / "batch_input.csv", dtype=str, keep_default_na=False)
    assert list(batch.columns) == list(dict.fromkeys(re.findall(r"\$\{([^}]*)\}", html)))
    assert len(batch) == tasks["task"].nunique()
    assert {p.stem for p in (crowd / "images").glob("*.png")} == set(tasks["image_id"])
    cost = json.loads((crowd / "cost.json").read_text())
    assert cost["total"] == pytest.approx(len(batch) * 3 * 0.06)
    # simulated answers -> import: reconciliation in the log, every item rated 3 times
    sim = pd.read_csv(crowd / "answers" / "mturk_simulated.csv", dtype=str, keep_default_na=False)
    cells = {image_id_from_cell(v) for c in sim.columns if c.startswith("Input.image_") for v in sim[c] if v}
    assert cells == set(tasks["image_id"])
    log = (tiny_run / "logs" / "tiny" / "crowd_import.log").read_text()
    n_rej = int((sim["AssignmentStatus"] == "Rejected").sum())
    assert f"rows read {len(sim)} = kept {len(sim) - n_rej} + rejected {n_rej} + duplicate 0" in log
    report = json.loads((crowd / "import_report.json").read_text())
    assert report["coverage"]["items_unrated"] == 0 and report["coverage"]["ratings_per_item_min"] == 3
    ratings = pd.read_parquet(crowd / "ratings.parquet")
    assert len(ratings) == 3 * len(tasks)
    truth = pd.read_parquet(crowd / "truth.parquet")
    assert set(zip(truth["image_id"], truth["concept"], strict=True)) == set(
        zip(items["image_id"], items["concept"], strict=True))
    if (crowd / "estimates.parquet").exists():
        est = pd.read_parquet(crowd / "estimates.parquet")
        assert set(est["explanation_id"]) == set(expl["explanation_id"])
        assert (tiny_run / "results" / "tiny" / "tables" / "crowd_table3.csv").exists()


def test_import_reruns_on_a_new_answer_file_and_names_a_broken_row(tiny_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, symlinks=True)
    crowd = _crowd(work)
    assert "crowd_import" not in snakemake_cmd(work, "-n", *CFG).stdout
    sim = pd.read_csv(crowd / "answers" / "mturk_simulated.csv", dtype=str, keep_default_na=False)
    # a second batch of answers by another worker, dropped into answers/: the import reruns and keeps it
    extra = sim[sim["AssignmentStatus"] != "Rejected"].drop_duplicates("Input.task_id").head(2).copy()
    extra["AssignmentId"] = ["EXTRA1", "EXTRA2"]
    extra["WorkerId"] = "AEXTRAWORKER01"
    extra.to_csv(crowd / "answers" / "batch2.csv", index=False)
    dry = snakemake_cmd(work, "-n", *CFG)
    assert "crowd_import" in dry.stdout, dry.stdout[-2000:]
    before = len(pd.read_parquet(crowd / "ratings.parquet"))
    run = snakemake_cmd(work, "results/tiny/crowd/ratings.parquet", *CFG)
    assert run.returncode == 0, run.stderr[-3000:]
    after = pd.read_parquet(crowd / "ratings.parquet")
    assert len(after) > before and "AEXTRAWORKER01" in set(after["rater"])
    # a malformed row in a listed answer file fails the import naming file, line and column
    bad = sim.copy()
    bad.loc[4, "AssignmentStatus"] = "Maybe"
    bad_path = work / "bad_results.csv"
    bad.to_csv(bad_path, index=False)
    fail = snakemake_cmd(work, "results/tiny/crowd/ratings.parquet", *CFG, "--config",
                         f"crowd={{answers: [{bad_path}]}}")
    assert fail.returncode != 0
    log = (work / "logs" / "tiny" / "crowd_import.log").read_text()
    assert "bad_results.csv" in log and "line 6" in log and "AssignmentStatus" in log, log[-2000:]
