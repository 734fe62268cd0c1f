"""Benchmark of the crowd path's two heavy steps (issue 9, "Performance"): prints figures, asserts nothing.

1. Aggregation (``crowd.aggregate.aggregate_crowd``): 2,000 explanations x 180 MG-IS draws x 3 raters
   (target <= 5 s): counts, EM for eta, the four aggregations, the explanations' soft presence at the
   draws and the delta-method intervals, end to end from the frames. A second run mixes explanation
   kinds (a third simple, a third linear with 3 terms, a third compositional with 2 concepts).
2. Import (``crowd.ratings.ingest_ratings``) of a 100,000-row MTurk batch results CSV in MTurk's format
   (target <= 10 s), then the same file again (idempotent: nothing added).

Each is timed as the best of --repeats runs in this process, wall and CPU seconds (the build machine is
shared: the CPU time is the steadier figure); the load average is printed for context.

    python benchmarks/bench_crowd.py            # the issue's sizes
    python benchmarks/bench_crowd.py --quick    # 200 explanations, 10,000 MTurk rows
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neuronaudit.crowd.aggregate import aggregate_crowd, synthetic_crowd
from neuronaudit.crowd.ratings import ingest_ratings

HEAD = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime", "MaxAssignments",
        "RequesterAnnotation", "AssignmentDurationInSeconds", "AutoApprovalDelayInSeconds", "Expiration",
        "NumberOfSimilarHITs", "LifetimeInSeconds", "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime",
        "SubmitTime", "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
        "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate", "Last7DaysApprovalRate"]
SLOTS = 15


def best_of(fn, repeats: int):
    """(best wall, all walls, CPU seconds of the best run, result)."""
    times, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(times), times, cpus[int(np.argmin(times))], out


def mixed_kinds(files: dict) -> dict:
    """A third of the explanations linear (3 terms), a third compositional (2 concepts), with items and
    ratings for every atom concept at every drawn image (3 raters, eta 0.05)."""
    ex = files["explanations"].copy()
    e = len(ex)
    concepts = ex["explanation"].to_numpy()
    rng = np.random.default_rng(1)
    other = concepts[rng.integers(0, e, (e, 2))]
    structured = []
    for k in range(e):
        c0, c1, c2 = concepts[k], other[k, 0], other[k, 1]
        if k % 3 == 1:
            structured.append({"kind": "linear", "terms": [[0.6, c0], [0.3, c1], [-0.2, c2]], "bias": 0.0})
        elif k % 3 == 2:
            structured.append({"kind": "compositional", "formula": f"{c0} AND NOT {c1}"})
        else:
            structured.append({"kind": "simple", "concept": c0})
    ex["structured"] = [json.dumps(s) for s in structured]
    d = files["design"].merge(ex[["explanation_id", "structured"]], on="explanation_id")
    need = {(i, c) for i, s in zip(d["image_id"], d["structured"], strict=True)
            for c in _concepts(s)}
    items = pd.DataFrame(sorted(need), columns=["image_id", "concept"])
    items["prior"] = rng.random(len(items))
    items["is_gold"] = False
    items["gold_answer"] = pd.array([pd.NA] * len(items), dtype="Int8")
    truth = (rng.random(len(items)) < 0.3).astype(np.int8)
    rep = np.repeat(np.arange(len(items)), 3)
    flips = (rng.random(len(rep)) < 0.05).astype(np.int8)
    ratings = pd.DataFrame({"task": "t", "image_id": items["image_id"].to_numpy()[rep],
                            "concept": items["concept"].to_numpy()[rep],
                            "rater": np.char.add("W", (rep % 60 + np.tile(np.arange(3), len(items))).astype(str)),
                            "rating": truth[rep] ^ flips, "source": "bench", "submitted_at": pd.NaT})
    return {"explanations": ex, "design": files["design"], "items": items, "ratings": ratings}


def _concepts(s: str) -> list[str]:
    d = json.loads(s)
    if d["kind"] == "simple":
        return [d["concept"]]
    if d["kind"] == "linear":
        return [c for _, c in d["terms"]]
    return [w for w in d["formula"].split() if w not in ("AND", "NOT", "OR")]


def write_mturk_results(path: Path, n_rows: int, seed: int = 0) -> None:
    """A batch results CSV as MTurk writes it: one row per assignment, 3 assignments per HIT, 2% rejected,
    answers as crowd-form JSON (slots of the last, short task left blank), image URLs as uploaded."""
    rng = np.random.default_rng(seed)
    sel = rng.random((n_rows, SLOTS)) < 0.3
    workers = [f"A{''.join(rng.choice(list('ABCDEFGHJKLMNPQRSTUVWXYZ0123456789'), 13))}" for _ in range(400)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(HEAD + ["Input.task_id", "Input.concept", *(f"Input.image_{k}" for k in range(1, SLOTS + 1)),
                           "Answer.taskAnswers", "Approve", "Reject"])
        for i in range(n_rows):
            hit = i // 3
            n_img = SLOTS if hit % 50 else 9  # some tasks are shorter: blank slots
            ans = json.dumps([{f"img_{k}": {"on": bool(sel[i, k - 1])} for k in range(1, n_img + 1)}])
            status = "Rejected" if i % 50 == 0 else "Approved"
            w.writerow([f"3Z{hit:010d}", "3TYPE", "Select all the images that contain a concept", "desc", "images",
                        "$0.05", "Sun Nov 22 09:00:00 PST 2026", "3", "BatchId:1;", "600", "259200",
                        "Wed Nov 25 09:00:00 PST 2026", "", "259200", f"3A{i:012d}", workers[(i * 7 + hit) % 400],
                        status, "Sun Nov 22 10:30:05 PST 2026", f"Sun Nov 22 10:{i % 60:02d}:{i % 57:02d} PST 2026",
                        "Wed Nov 25 10:31:05 PST 2026", "" if status == "Rejected" else "Sun Nov 22 12:00:00 PST 2026",
                        "Sun Nov 22 12:00:00 PST 2026" if status == "Rejected" else "", "", str(30 + i % 90),
                        "0% (0/0)", "0% (0/0)", "0% (0/0)", f"t{hit:06d}", f"concept {hit % 250}",
                        *[f"https://bucket.s3.amazonaws.com/crowd/images/img{(hit * 15 + k) % 50_000:06d}.png"
                          if k <= n_img else "" for k in range(1, SLOTS + 1)],
                        ans, "", ""])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--explanations", type=int, default=None)
    ap.add_argument("--rows", type=int, default=None, help="MTurk result rows (assignments)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n_expl = args.explanations or (200 if args.quick else 2000)
    n_rows = args.rows or (10_000 if args.quick else 100_000)
    print(f"load average (shared machine): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    files = synthetic_crowd(n_explanations=n_expl, n_inputs=4000, n=180, raters_per_input=3, eta=0.05, seed=0)
    print(f"\naggregation: {n_expl} explanations x 180 draws x 3 raters = {len(files['ratings']):,} ratings "
          f"of {len(files['items']):,} items")

    def run(f=files):
        return aggregate_crowd(f["explanations"], f["design"], f["items"], f["ratings"], truth=f.get("truth"))

    best, times, cpu, res = best_of(run, args.repeats)
    cov = res.summary["coverage"]
    print(f"  simple explanations: best {best:.2f} s wall ({cpu:.2f} s CPU) of {[round(t, 2) for t in times]} "
          "(target <= 5 s); "
          f"eta = {res.summary['eta']:.4f} by {res.summary['eta_source']} (true 0.05); "
          f"coverage of the 95% intervals: " + ", ".join(f"{k} {v:.3f}" for k, v in cov.items()))
    mixed = mixed_kinds(files)
    best_m, times_m, cpu_m, _ = best_of(lambda: run(mixed), args.repeats)
    print(f"  mixed kinds (simple / linear 3 terms / compositional): {len(mixed['ratings']):,} ratings, "
          f"best {best_m:.2f} s wall ({cpu_m:.2f} s CPU) of {[round(t, 2) for t in times_m]}")

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "Batch_1_batch_results.csv"
        t0 = time.perf_counter()
        write_mturk_results(f, n_rows)
        print(f"\nMTurk import: {n_rows:,} assignment rows ({f.stat().st_size / 2**20:.0f} MiB, written in "
              f"{time.perf_counter() - t0:.1f} s)")
        times, cpus = [], []
        for r in range(args.repeats):
            store = Path(tmp) / f"ratings{r}.parquet"
            t0, c0 = time.perf_counter(), time.process_time()
            (c,) = ingest_ratings([f], store)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        print(f"  first import: best {min(times):.2f} s wall ({cpus[int(np.argmin(times))]:.2f} s CPU) of "
              f"{[round(t, 2) for t in times]} (target <= 10 s): "
              f"rows read {c['rows_read']:,} = kept {c['kept']:,} + rejected {c['rejected']:,} + duplicate "
              f"{c['duplicate']:,}; {c['ratings_added']:,} ratings added")
        t0, c0 = time.perf_counter(), time.process_time()
        (c2,) = ingest_ratings([f], store)
        print(f"  the same file again: {time.perf_counter() - t0:.2f} s wall ({time.process_time() - c0:.2f} s CPU), "
              f"{c2['ratings_added']} ratings added, "
              f"{c2['duplicate']:,} duplicates")


if __name__ == "__main__":
    main()
