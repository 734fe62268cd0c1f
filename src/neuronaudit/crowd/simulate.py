"""Simulated MTurk workers answering the exported tasks (issue 9, item 7). Rule ``crowd_simulate``;
docs/crowd.md.

The simulation goes through the real path: it reads the batch input CSV exactly as MTurk would, and
writes a batch **results** CSV in MTurk's format, which ``crowd_import`` reads like any real one.

* **Truth** per (image, concept) of the tasks (:func:`neuronaudit.crowd.design.simulated_truth`): the
  dataset's label where the labels know the concept, else one seeded Bernoulli draw of the guide's
  calibrated probability; written to ``CROWD/truth.parquet`` (image_id, concept, truth, truth_source)
  so that the aggregation can report exact rho against what the raters saw.
* **Workers**: a seeded pool (:func:`neuronaudit.raters.make_rater_pool`: honest workers with error
  rates ~ Beta(``error_beta``), a ``spammer_fraction`` answering at random), each with a WorkerId like
  MTurk's (``A`` + 13 characters).
* **Assignments**: every task (HIT) gets ``raters_per_input`` distinct workers; each ticks an image
  when (truth XOR an error of probability = their error rate) says so. A ``rejected_fraction`` of the
  assignments is rejected by the requester (status ``Rejected``, answers at random) and, as MTurk
  republishes a rejected assignment, done again by another worker, so every input keeps
  ``raters_per_input`` kept ratings. Gold items are answered like any other.
* **Format** (:data:`RESULT_COLUMNS`): HITId, HITTypeId, Title, Reward, CreationTime, MaxAssignments,
  AssignmentId, WorkerId, AssignmentStatus (``Approved`` / ``Rejected``), AcceptTime, SubmitTime
  (``Sun Nov 22 10:31:05 PST 2026``), WorkTimeInSeconds, ``Input.<column>`` for every batch column,
  ``Answer.taskAnswers`` (crowd-form JSON ``[{"img_1": {"on": true}, ...}]``, blank slots omitted),
  Approve, Reject. Everything is a function of the seed: the same inputs give the same file.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.crowd.design import read_guide, simulated_truth, stable_index
from neuronaudit.crowd.mturk import image_id_from_cell
from neuronaudit.data.arrays import split_rows
from neuronaudit.io import provenance, write_csv, write_table
from neuronaudit.raters import make_rater_pool

log = logging.getLogger(__name__)

__all__ = ["RESULT_COLUMNS", "TRUTH_COLUMNS", "mturk_time", "worker_ids", "simulate_results", "truth_table",
           "run_simulate"]

RESULT_COLUMNS = ["HITId", "HITTypeId", "Title", "Reward", "CreationTime", "MaxAssignments", "AssignmentId",
                  "WorkerId", "AssignmentStatus", "AcceptTime", "SubmitTime", "WorkTimeInSeconds"]
TRUTH_COLUMNS = ["image_id", "concept", "truth", "truth_source"]
#: the batch's creation time (US Pacific standard time, as MTurk writes it)
_START = datetime(2026, 11, 22, 9, 0, 0)
_ALNUM = np.array(list(string.ascii_uppercase + string.digits))


def mturk_time(t: datetime) -> str:
    """MTurk's time format: ``Sun Nov 22 10:31:05 PST 2026`` (t in Pacific standard time)."""
    return t.strftime("%a %b %d %H:%M:%S PST %Y")


def _ids(rng: np.random.Generator, n: int, length: int, prefix: str = "") -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        chars = _ALNUM[rng.integers(0, len(_ALNUM), size=(n, length))]
        for row in chars:
            s = prefix + "".join(row)
            if s not in seen and len(out) < n:
                seen.add(s)
                out.append(s)
    return out


def worker_ids(n: int, seed: int) -> list[str]:
    """``n`` distinct MTurk-like WorkerIds (``A`` + 13 upper-case letters and digits), seeded."""
    return _ids(np.random.default_rng([int(seed), stable_index("workers")]), n, 13, "A")


def simulate_results(batch: pd.DataFrame, truth: Mapping[tuple[str, str], int], settings: Mapping[str, Any],
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The MTurk results DataFrame of simulated workers answering ``batch`` (the batch input CSV as
    read with ``dtype=str``, blanks ""), and counts. ``truth`` maps (image_id, concept) to 0/1."""
    sim = dict(settings.get("simulate", {}))
    seed = int(settings.get("seed", 0))
    m = int(settings.get("raters_per_input", 3))
    n_pool = int(sim.get("n_raters", 30))
    rejected_fraction = float(sim.get("rejected_fraction", 0.01))
    if m > n_pool:
        raise ValueError(f"crowd.raters_per_input = {m} needs at least that many simulated workers; "
                         f"crowd.simulate.n_raters is {n_pool}")
    rng = np.random.default_rng([seed, stable_index("simulate")])
    pool = make_rater_pool(n_pool, rng, error_beta=tuple(sim.get("error_beta", (2.0, 8.0))),
                           spammer_fraction=float(sim.get("spammer_fraction", 0.1)))
    workers = worker_ids(n_pool, seed)
    err = np.nan_to_num(pool["error_rate"].to_numpy(dtype=np.float64), nan=0.5)
    kind = pool["kind"].to_numpy()
    slots = [c for c in batch.columns if c.startswith("image_")]
    hit_ids = _ids(rng, len(batch), 30)
    hit_type = _ids(rng, 1, 30)[0]
    mturk = dict(settings.get("mturk", {}))
    reward = f"${float(mturk.get('reward_per_task', 0.05)):.2f}"
    title = str(mturk.get("title", "Select the images that contain a concept"))
    rows: list[dict[str, Any]] = []
    n_rejected = 0
    for t, rec in enumerate(batch.to_dict("records")):
        concept = rec["concept"]
        cells = [(k, rec[c]) for k, c in enumerate(slots, start=1) if isinstance(rec[c], str) and rec[c].strip()]
        c_true = np.array([truth[(image_id_from_cell(v), concept)] for _, v in cells], dtype=np.int8)
        order = rng.permutation(n_pool)
        reject = rng.random(m) < rejected_fraction
        n_extra = min(int(reject.sum()), n_pool - m)
        chosen = list(order[: m + n_extra])
        status = ["Rejected" if r else "Approved" for r in reject] + ["Approved"] * n_extra
        created = _START + timedelta(seconds=int(t) * 7)
        for w, st in zip(chosen, status, strict=True):
            if st == "Rejected":
                ans = rng.integers(0, 2, size=len(cells)).astype(np.int8)
                n_rejected += 1
            elif kind[w] == "yes":
                ans = np.ones(len(cells), dtype=np.int8)
            else:
                ans = c_true ^ (rng.random(len(cells)) < err[w]).astype(np.int8)
            accept = created + timedelta(seconds=int(rng.integers(60, 3600)))
            work = int(rng.integers(25, 240))
            row = {
                "HITId": hit_ids[t], "HITTypeId": hit_type, "Title": title, "Reward": reward,
                "CreationTime": mturk_time(created), "MaxAssignments": m, "AssignmentId": _ids(rng, 1, 30)[0],
                "WorkerId": workers[w], "AssignmentStatus": st, "AcceptTime": mturk_time(accept),
                "SubmitTime": mturk_time(accept + timedelta(seconds=work)), "WorkTimeInSeconds": work,
            }
            for c in batch.columns:
                row[f"Input.{c}"] = rec[c]
            answers = {f"img_{k}": {"on": bool(a)} for (k, _), a in zip(cells, ans, strict=True)}
            row["Answer.taskAnswers"] = json.dumps([answers])
            row["Approve"] = ""
            row["Reject"] = "answers at random" if st == "Rejected" else ""
            rows.append(row)
    cols = [*RESULT_COLUMNS, *(f"Input.{c}" for c in batch.columns), "Answer.taskAnswers", "Approve", "Reject"]
    out = pd.DataFrame(rows, columns=cols)
    counts = {"tasks": int(len(batch)), "assignments": int(len(out)), "rejected": n_rejected,
              "workers": int(out["WorkerId"].nunique()) if len(out) else 0,
              "spammers": int((kind != "honest").sum()), "mean_error_honest": float(np.mean(err[kind == "honest"]))
              if (kind == "honest").any() else float("nan")}
    return out, counts


def truth_table(items: pd.DataFrame, truth: Mapping[str, np.ndarray], sources: Mapping[str, str],
                image_pos: Mapping[str, int]) -> pd.DataFrame:
    """truth.parquet rows for the (image_id, concept) of ``items``."""
    pos = items["image_id"].map(image_pos).to_numpy(np.int64)
    t = np.array([truth[c][i] for c, i in zip(items["concept"], pos, strict=True)], dtype=np.int8)
    return pd.DataFrame({"image_id": items["image_id"].to_numpy(object), "concept": items["concept"].to_numpy(object),
                         "truth": t, "truth_source": items["concept"].map(sources).to_numpy(object)})


def run_simulate(*, batch_path, items_path, manifest_path, labels_path, guide_path, settings: Mapping[str, Any],
                 outs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``crowd_simulate`` rule: the simulated results CSV (outs["answers"]) and truth.parquet (outs["truth"])."""
    batch = pd.read_csv(batch_path, dtype=str, keep_default_na=False)
    items = pd.read_parquet(items_path)
    manifest = pd.read_parquet(manifest_path, columns=["image_id", "split"])
    rows = split_rows(manifest, settings.get("split", "test"))
    image_ids = manifest["image_id"].to_numpy(dtype=object)[rows]
    guide, concepts = read_guide(guide_path, image_ids)
    needed = sorted(items["concept"].unique()) if len(items) else []
    unknown = [c for c in needed if c not in concepts]
    if unknown:
        raise ValueError(f"{items_path}: concepts {unknown[:5]} are not in the guide's presence {guide_path}; "
                         "rebuild the crowd design")
    cols = [concepts.index(c) for c in needed]
    truth, sources = simulated_truth(needed, image_ids, guide[:, cols], pd.read_parquet(labels_path),
                                     int(settings.get("seed", 0)), str(settings.get("guide", "guide")))
    image_pos = {iid: i for i, iid in enumerate(image_ids)}
    table = truth_table(items, truth, sources, image_pos) if len(items) else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in TRUTH_COLUMNS}).astype({"truth": np.int8})
    lookup = {(i, c): int(v) for i, c, v in zip(table["image_id"], table["concept"], table["truth"], strict=True)}
    results, counts = simulate_results(batch, lookup, settings)
    write_csv(results, outs["answers"])
    write_table(table, outs["truth"], provenance(guide=settings.get("guide"), seed=int(settings.get("seed", 0))))
    log.info("simulated %d assignments of %d tasks by %d workers (%d spammers, honest mean error %.3f); %d rejected",
             counts["assignments"], counts["tasks"], counts["workers"], counts["spammers"],
             counts["mean_error_honest"], counts["rejected"])
    if len(table):
        log.info("truth: %d items, %.1f%% positive; sources %s", len(table), 100 * table["truth"].mean(),
                 table["truth_source"].value_counts().to_dict())
    return counts
