"""Bringing the answers in (issue 9, item 3 wired into the pipeline). Rule ``crowd_import``; docs/crowd.md.

:func:`answer_files` lists what the rule reads, explicitly, so that Snakemake reruns the import when a
file is added, removed or changed: the simulated results CSV (when ``crowd.simulate.enabled``), every
``*.csv`` / ``*.parquet`` dropped into ``CROWD/answers/`` (other than a stale simulated file when the
simulation is off), and every path of ``crowd.answers`` (MTurk batch results CSVs, long ratings CSVs,
ratings Parquets such as the rating app's ``CROWD/app_ratings.parquet``).

:func:`run_import` rebuilds ``CROWD/ratings.parquet`` from them with
:func:`neuronaudit.crowd.ratings.ingest_ratings` (one reconciliation line per file in the log: rows read
= kept + rejected + duplicate; a malformed row fails the job with file, line and column) and then
reconciles the store with the design: ratings per task item (min / median / max against
``raters_per_input``), items without a rating, ratings of tasks or images the design does not know.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.crowd.ratings import ingest_ratings, read_store
from neuronaudit.io import write_json

log = logging.getLogger(__name__)

__all__ = ["SIMULATED_NAME", "answer_files", "coverage", "run_import"]

#: the simulated results CSV in CROWD/answers/
SIMULATED_NAME = "mturk_simulated.csv"


def answer_files(crowd_dir, simulate: bool, extra: Sequence[str] = ()) -> list[str]:
    """The answer files of the import, in a fixed order (module docstring)."""
    crowd_dir = Path(crowd_dir)
    sim = crowd_dir / "answers" / SIMULATED_NAME
    files = [str(sim)] if simulate else []
    found = sorted(p for p in (crowd_dir / "answers").glob("*") if p.suffix.lower() in (".csv", ".parquet")
                   and p.is_file() and not p.name.startswith("."))
    files += [str(p) for p in found if p.name != SIMULATED_NAME]
    files += [str(p) for p in extra]
    return list(dict.fromkeys(os.path.normpath(f) for f in files))


def coverage(store: pd.DataFrame, tasks: pd.DataFrame, raters_per_input: int) -> dict[str, Any]:
    """How the ratings cover the design's task items (module docstring)."""
    if not len(tasks):
        return {"items": 0, "ratings": int(len(store))}
    key = ["task", "image_id", "concept"]
    slots = tasks[key + ["is_gold"]].drop_duplicates(key)
    per = store.groupby(key, observed=True).size().rename("n").reset_index()
    merged = slots.merge(per, on=key, how="left").fillna({"n": 0})
    n = merged["n"].to_numpy(dtype=np.int64)
    known = store.merge(slots[key], on=key, how="left", indicator=True)["_merge"].to_numpy() == "both"
    items = tasks.loc[~tasks["is_gold"].astype(bool), ["image_id", "concept"]].drop_duplicates()
    per_item = store.groupby(["image_id", "concept"], observed=True).size().rename("n").reset_index()
    mi = items.merge(per_item, on=["image_id", "concept"], how="left").fillna({"n": 0})["n"].to_numpy(np.int64)
    return {
        "task_slots": int(len(merged)), "tasks": int(tasks["task"].nunique()),
        "tasks_answered": int(store.loc[known, "task"].nunique()) if len(store) else 0,
        "ratings": int(len(store)), "ratings_outside_design": int((~known).sum()),
        "raters": int(store["rater"].nunique()) if len(store) else 0,
        "items": int(len(items)), "items_unrated": int((mi == 0).sum()),
        "items_below_target": int((mi < raters_per_input).sum()), "raters_per_input_target": int(raters_per_input),
        "ratings_per_item_min": int(mi.min()) if mi.size else 0,
        "ratings_per_item_median": float(np.median(mi)) if mi.size else 0.0,
        "ratings_per_item_max": int(mi.max()) if mi.size else 0,
        "slots_unrated": int((n == 0).sum()),
    }


def run_import(*, answers: Sequence[str], tasks_path, store_path, raters_per_input: int,
               report_path=None) -> dict[str, Any]:
    """The ``crowd_import`` rule: rebuild the ratings store from ``answers`` and reconcile (module docstring)."""
    store_path = Path(store_path)
    if store_path.exists():  # rebuilt from the listed files: a file taken out of the list leaves the store
        store_path.unlink()
    if not answers:
        log.warning("no answer files: the ratings store is empty (turn crowd.simulate on or list files in crowd.answers)")
    counts = ingest_ratings(list(answers), store_path)
    store = read_store(store_path)
    tasks = pd.read_parquet(tasks_path)
    cov = coverage(store, tasks, raters_per_input)
    totals = {k: int(sum(c[k] for c in counts)) for k in ("rows_read", "kept", "rejected", "duplicate", "ratings_added")}
    log.info("all files: rows read %d = kept %d + rejected %d + duplicate %d; %d ratings in %s",
             totals["rows_read"], totals["kept"], totals["rejected"], totals["duplicate"], len(store), store_path)
    if len(tasks):
        log.info("design coverage: %d of %d tasks answered; %d items, ratings per item min %d / median %g / max %d "
                 "(target %d); %d items unrated, %d below target; %d ratings outside the design",
                 cov["tasks_answered"], cov["tasks"], cov["items"], cov["ratings_per_item_min"],
                 cov["ratings_per_item_median"], cov["ratings_per_item_max"], raters_per_input, cov["items_unrated"],
                 cov["items_below_target"], cov["ratings_outside_design"])
        if cov["ratings_outside_design"]:
            log.warning("%d ratings belong to no (task, image, concept) of the design: answers of another design? "
                        "They are kept in the store", cov["ratings_outside_design"])
    report = {"files": [{k: v for k, v in c.items() if k != "line"} | {"line": c["line"]} for c in counts],
              "totals": totals, "coverage": cov}
    if report_path is not None:
        write_json(report, report_path)
    return report
