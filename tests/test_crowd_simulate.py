"""Simulated MTurk workers (neuronaudit.crowd.simulate) and the import wiring (neuronaudit.crowd.answers)."""

import re

import numpy as np
import pandas as pd
import pytest

from neuronaudit.crowd.answers import SIMULATED_NAME, answer_files, run_import
from neuronaudit.crowd.design import make_tasks
from neuronaudit.crowd.export import batch_input
from neuronaudit.crowd.mturk import RatingsImportError, read_mturk_results
from neuronaudit.crowd.ratings import ingest_ratings, read_store
from neuronaudit.crowd.simulate import RESULT_COLUMNS, mturk_time, simulate_results, worker_ids
from neuronaudit.io import write_csv

MTURK_TIME = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{2} "
                        r"\d{2}:\d{2}:\d{2} PST \d{4}")


def _design(n_images=50, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"img{k:03d}" for k in range(n_images)]
    items = pd.concat([pd.DataFrame({"image_id": ids, "concept": "dog"}),
                       pd.DataFrame({"image_id": ids[:20], "concept": "cat"})], ignore_index=True)
    tasks = make_tasks(items, 15, 0, seed=0)
    truth = {(i, c): int(rng.random() < 0.3) for i, c in zip(items["image_id"], items["concept"], strict=True)}
    return tasks, truth


def _settings(**sim):
    return {"seed": 1, "raters_per_input": 3, "mturk": {"reward_per_task": 0.05},
            "simulate": {"n_raters": 12, "error_beta": [2, 8], "spammer_fraction": 0.1, "rejected_fraction": 0.1, **sim}}


def _batch_csv(tmp_path, tasks):
    p = tmp_path / "batch_input.csv"
    write_csv(batch_input(tasks, 15, ""), p)
    return pd.read_csv(p, dtype=str, keep_default_na=False)


def test_simulated_results_are_read_back_by_the_mturk_reader(tmp_path):
    tasks, truth = _design()
    batch = _batch_csv(tmp_path, tasks)
    res, counts = simulate_results(batch, truth, _settings())
    path = tmp_path / "answers" / SIMULATED_NAME
    write_csv(res, path)
    header = pd.read_csv(path, nrows=0).columns.tolist()
    assert header[:len(RESULT_COLUMNS)] == RESULT_COLUMNS
    assert header[-3:] == ["Answer.taskAnswers", "Approve", "Reject"]
    assert [c for c in header if c.startswith("Input.")] == [f"Input.{c}" for c in batch.columns]
    assert all(MTURK_TIME.fullmatch(t) for t in res["SubmitTime"]) and all(MTURK_TIME.fullmatch(t) for t in res["AcceptTime"])
    assert res["AssignmentId"].is_unique and res["WorkerId"].str.fullmatch(r"A[A-Z0-9]{13}").all()
    n_rej = int((res["AssignmentStatus"] == "Rejected").sum())
    assert n_rej == counts["rejected"] > 0
    b = read_mturk_results(path)
    assert b.rows_read == len(res) and b.rejected == n_rej and b.duplicate == 0 and b.kept == len(res) - n_rej
    # every task keeps raters_per_input distinct workers (a rejected assignment is done again)
    kept = res[res["AssignmentStatus"] != "Rejected"]
    assert (kept.groupby("HITId")["WorkerId"].nunique() == 3).all()
    assert (kept.groupby("Input.task_id").size() == 3).all()
    frame = b.frame("sim")
    assert len(frame) == 3 * len(tasks)
    assert set(zip(frame["image_id"], frame["concept"], strict=True)) == set(truth)


def test_perfect_workers_answer_the_truth(tmp_path):
    tasks, truth = _design()
    batch = _batch_csv(tmp_path, tasks)
    res, _ = simulate_results(batch, truth, _settings(error_beta=[1e-6, 1e6], spammer_fraction=0.0, rejected_fraction=0.0))
    write_csv(res, tmp_path / "r.csv")
    f = read_mturk_results(tmp_path / "r.csv").frame("sim")
    expected = np.array([truth[(i, c)] for i, c in zip(f["image_id"], f["concept"], strict=True)])
    np.testing.assert_array_equal(f["rating"].to_numpy(), expected)


def test_noisy_workers_err_at_about_their_rate_and_the_file_is_seeded(tmp_path):
    tasks, truth = _design(200)
    batch = _batch_csv(tmp_path, tasks)
    s = _settings(spammer_fraction=0.0, rejected_fraction=0.0)
    r1, _ = simulate_results(batch, truth, s)
    r2, _ = simulate_results(batch, truth, s)
    pd.testing.assert_frame_equal(r1, r2)
    write_csv(r1, tmp_path / "r.csv")
    f = read_mturk_results(tmp_path / "r.csv").frame("sim")
    expected = np.array([truth[(i, c)] for i, c in zip(f["image_id"], f["concept"], strict=True)])
    err = float((f["rating"].to_numpy() != expected).mean())
    assert 0.1 < err < 0.3  # Beta(2, 8): mean 0.2
    r3, _ = simulate_results(batch, truth, {**s, "seed": 2})
    assert not r3["Answer.taskAnswers"].equals(r1["Answer.taskAnswers"])
    assert worker_ids(5, 0) == worker_ids(5, 0) and len(set(worker_ids(50, 0))) == 50


def test_mturk_time_format():
    from datetime import datetime

    assert mturk_time(datetime(2026, 11, 22, 10, 31, 5)) == "Sun Nov 22 10:31:05 PST 2026"


def test_more_raters_than_workers_is_an_error(tmp_path):
    tasks, truth = _design(15)
    with pytest.raises(ValueError, match="n_raters"):
        simulate_results(_batch_csv(tmp_path, tasks), truth, {**_settings(n_raters=2)})


def test_import_is_idempotent_and_reconciles(tmp_path):
    tasks, truth = _design()
    tasks.to_parquet(tmp_path / "tasks.parquet")
    res, counts = simulate_results(_batch_csv(tmp_path, tasks), truth, _settings())
    crowd = tmp_path / "crowd"
    write_csv(res, crowd / "answers" / SIMULATED_NAME)
    files = answer_files(crowd, simulate=True)
    assert files == [str(crowd / "answers" / SIMULATED_NAME)]
    store = crowd / "ratings.parquet"
    rep = run_import(answers=files, tasks_path=tmp_path / "tasks.parquet", store_path=store, raters_per_input=3,
                     report_path=crowd / "import_report.json")
    t = rep["totals"]
    assert t["rows_read"] == t["kept"] + t["rejected"] + t["duplicate"] and t["rejected"] == counts["rejected"]
    cov = rep["coverage"]
    assert cov["items_unrated"] == 0 and cov["ratings_per_item_min"] == cov["ratings_per_item_max"] == 3
    assert cov["ratings_outside_design"] == 0
    first = read_store(store)
    assert len(first) == 3 * len(tasks)
    # importing the same file again changes nothing
    again = ingest_ratings(files, store)
    assert again[0]["ratings_added"] == 0 and again[0]["kept"] == 0
    assert again[0]["duplicate"] == t["kept"] and again[0]["rejected"] == t["rejected"]
    pd.testing.assert_frame_equal(read_store(store), first)
    run_import(answers=files, tasks_path=tmp_path / "tasks.parquet", store_path=store, raters_per_input=3)
    pd.testing.assert_frame_equal(read_store(store), first)
    # a file dropped into answers/ is picked up; a stale simulated file is not when the simulation is off
    extra = crowd / "answers" / "batch2.csv"
    write_csv(res.head(3), extra)
    assert answer_files(crowd, simulate=True) == [str(crowd / "answers" / SIMULATED_NAME), str(extra)]
    assert answer_files(crowd, simulate=False, extra=["x/app.parquet"]) == [str(extra), "x/app.parquet"]


def test_a_malformed_answer_row_names_file_line_and_column(tmp_path):
    tasks, truth = _design(15)
    tasks.to_parquet(tmp_path / "tasks.parquet")
    res, _ = simulate_results(_batch_csv(tmp_path, tasks), truth, _settings(rejected_fraction=0.0))
    res.loc[1, "Answer.taskAnswers"] = '[{"img_1": {"on": maybe}}]'
    bad = tmp_path / "bad.csv"
    write_csv(res, bad)
    with pytest.raises(RatingsImportError) as err:
        run_import(answers=[str(bad)], tasks_path=tmp_path / "tasks.parquet", store_path=tmp_path / "r.parquet",
                   raters_per_input=3)
    msg = str(err.value)
    assert "bad.csv" in msg and "line 3" in msg and "Answer.taskAnswers" in msg
    assert not (tmp_path / "r.parquet").exists()
