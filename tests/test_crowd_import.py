"""Import of real ratings (issue 9, item 3): MTurk batch results CSVs, the long CSV, the ratings Parquet."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronaudit.crowd.mturk import image_id_from_cell, read_mturk_results
from neuronaudit.crowd.ratings import RATINGS_COLUMNS, RatingsImportError, ingest_ratings, read_store

N_SLOTS = 15
# the columns of an MTurk batch results CSV, in MTurk's order (Input.* and Answer.* are the task's)
HEAD = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime", "MaxAssignments",
        "RequesterAnnotation", "AssignmentDurationInSeconds", "AutoApprovalDelayInSeconds", "Expiration",
        "NumberOfSimilarHITs", "LifetimeInSeconds", "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime",
        "SubmitTime", "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
        "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate", "Last7DaysApprovalRate"]
INPUTS = ["Input.task_id", "Input.concept"] + [f"Input.image_{k}" for k in range(1, N_SLOTS + 1)]
TAIL = ["Approve", "Reject"]


def _assignment(i: int, hit: int, worker: str, status: str, selected: set[int], n_images: int = N_SLOTS,
                concept: str = "dog, \"big\" one", url: bool = True) -> dict:
    images = [(f"https://bucket.s3.amazonaws.com/study/h{hit}_{k}.jpg" if url else f"h{hit}_{k}")
              if k <= n_images else "" for k in range(1, N_SLOTS + 1)]
    return {"hit": hit, "asg": f"ASG{i:06d}", "worker": worker, "status": status, "selected": selected,
            "images": images, "concept": concept}


def write_mturk(path, assignments, encoding: str = "checkbox", extra_answer: bool = True) -> None:
    """Write ``assignments`` as MTurk writes a batch results CSV (every field quoted, CRLF line ends)."""
    if encoding == "flat":
        answers = [f"Answer.img_{k}" for k in range(1, N_SLOTS + 1)]
    else:
        answers = ["Answer.taskAnswers"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(HEAD + INPUTS + answers + TAIL)
        for a in assignments:
            meta = [f"HIT{a['hit']:05d}", "3TYPE", "Select images", "desc", "images", "$0.05",
                    "Sun Nov 22 09:00:00 PST 2026", "3", "BatchId:1;", "600", "259200",
                    "Wed Nov 25 09:00:00 PST 2026", "", "259200", a["asg"], a["worker"], a["status"],
                    "Sun Nov 22 10:30:05 PST 2026", "Sun Nov 22 10:31:05 PST 2026", "Wed Nov 25 10:31:05 PST 2026",
                    "", "", "", "60", "0% (0/0)", "0% (0/0)", "0% (0/0)"]
            inputs = [f"task{a['hit']:04d}", a["concept"], *a["images"]]
            n = sum(1 for x in a["images"] if x)
            if encoding == "flat":
                ans = ["on" if k in a["selected"] else "" for k in range(1, N_SLOTS + 1)]
            elif encoding == "selected":
                ans = [json.dumps([{"selected": [f"img_{k}" for k in sorted(a["selected"])], "comments": "ok"}])]
            else:
                obj = {f"img_{k}": {"on": k in a["selected"]} for k in range(1, n + 1)}
                if extra_answer:
                    obj["comments"] = 'no, "really"'
                ans = [json.dumps([obj])]
            w.writerow(meta + inputs + ans + ["", ""])


def expected(assignments) -> pd.DataFrame:
    rows, seen = [], set()
    for a in assignments:
        if a["status"] == "Rejected" or a["asg"] in seen:
            continue
        seen.add(a["asg"])
        for k, img in enumerate(a["images"], 1):
            if img:
                rows.append((f"task{a['hit']:04d}", f"h{a['hit']}_{k}", a["concept"], a["worker"],
                             int(k in a["selected"])))
    return pd.DataFrame(rows, columns=["task", "image_id", "concept", "rater", "rating"])


def stored(store) -> pd.DataFrame:
    return read_store(store)[["task", "image_id", "concept", "rater", "rating"]].astype({"rating": int})


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    key = ["task", "image_id", "concept", "rater"]
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    return a.equals(b.astype(a.dtypes.to_dict()))


def small_batch():
    return [
        _assignment(0, 0, "W1", "Approved", {1, 3}),
        _assignment(1, 0, "W2", "Submitted", {1}),
        _assignment(2, 0, "W3", "Rejected", set(range(1, 16))),
        _assignment(3, 1, "W1", "Approved", set(), n_images=7),  # a last task with 7 images
        _assignment(4, 1, "W2", "Approved", {2, 7}, n_images=7),
    ]


@pytest.mark.parametrize("encoding", ["checkbox", "flat", "selected"])
def test_mturk_results_both_answer_encodings(tmp_path, encoding):
    batch = small_batch()
    batch.append(dict(batch[1]))  # a repeated assignment (same AssignmentId) counts once
    f = tmp_path / "Batch_123_batch_results.csv"
    write_mturk(f, batch, encoding)
    store = tmp_path / "ratings.parquet"
    (c,) = ingest_ratings([f], store)
    assert (c["rows_read"], c["kept"], c["rejected"], c["duplicate"]) == (6, 4, 1, 1)
    assert c["ratings_added"] == 15 + 15 + 7 + 7
    assert c["line"].endswith("rows read 6 = kept 4 + rejected 1 + duplicate 1; 44 rating rows added")
    df = read_store(store)
    assert list(df.columns) == list(RATINGS_COLUMNS)
    assert str(df["rating"].dtype) == "int8" and str(df["submitted_at"].dtype) == "datetime64[ns, UTC]"
    assert (df["source"] == "Batch_123_batch_results.csv (mturk)").all()
    assert (df["submitted_at"] == pd.Timestamp("2026-11-22 18:31:05", tz="UTC")).all()  # PST = UTC-8
    assert same(stored(store), expected(batch))
    assert "W3" not in set(df["rater"])  # rejected


def test_image_id_mapping():
    assert image_id_from_cell("https://b.s3.amazonaws.com/study/ab12.jpg?X-Amz=1#f") == "ab12"
    assert image_id_from_cell("study/images/n0153_17.PNG") == "n0153_17"
    assert image_id_from_cell("https://x/y/a%20b.jpeg") == "a b"
    assert image_id_from_cell(" img_0007 ") == "img_0007"
    assert image_id_from_cell("https://x/y/val.0001") == "val.0001"  # not an image extension: kept


def test_ids_not_urls_and_reading_without_store(tmp_path):
    batch = [_assignment(0, 5, "W9", "Approved", {2}, n_images=3, url=False)]
    f = tmp_path / "r.csv"
    write_mturk(f, batch, "checkbox", extra_answer=False)
    b = read_mturk_results(f)
    assert b.image_id == ["h5_1", "h5_2", "h5_3"] and b.rating == [0, 1, 0] and b.kept == 1


def test_reimport_changes_nothing_and_overlapping_downloads(tmp_path, caplog):
    batch = small_batch()
    f1, store = tmp_path / "first.csv", tmp_path / "ratings.parquet"
    write_mturk(f1, batch[:3])
    ingest_ratings([f1], store)
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    mtime = store.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="neuronaudit.crowd.ratings"):
        (c,) = ingest_ratings([f1], store)
    assert (c["rows_read"], c["kept"], c["rejected"], c["duplicate"], c["ratings_added"]) == (3, 0, 1, 2, 0)
    assert "rows read 3 = kept 0 + rejected 1 + duplicate 2" in caplog.text
    assert hashlib.sha256(store.read_bytes()).hexdigest() == digest and store.stat().st_mtime_ns == mtime
    # a later download of the whole batch holds the earlier assignments again: they count as duplicates
    f2 = tmp_path / "second.csv"
    write_mturk(f2, batch)
    (c,) = ingest_ratings([f2], store)
    assert (c["rows_read"], c["kept"], c["rejected"], c["duplicate"]) == (5, 2, 1, 2)
    assert same(stored(store), expected(batch))
    assert set(read_store(store)["source"]) == {"first.csv (mturk)", "second.csv (mturk)"}
    # both files in one call, in either order: same store content
    other = tmp_path / "other.parquet"
    counts = ingest_ratings([f2, f1], other)
    assert [c["kept"] for c in counts] == [4, 0] and [c["duplicate"] for c in counts] == [0, 2]
    assert same(stored(other), expected(batch))


def test_nothing_kept_still_creates_an_empty_store(tmp_path):
    f, store = tmp_path / "r.csv", tmp_path / "ratings.parquet"
    write_mturk(f, [_assignment(0, 0, "W1", "Rejected", {1})])
    (c,) = ingest_ratings(f, store)
    assert (c["kept"], c["rejected"]) == (0, 1)
    df = read_store(store)
    assert len(df) == 0 and list(df.columns) == list(RATINGS_COLUMNS)


def test_conflicting_answer_in_the_store_is_an_error_and_store_is_untouched(tmp_path):
    batch = small_batch()
    f1, f2, store = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "ratings.parquet"
    write_mturk(f1, batch[:1])
    ingest_ratings([f1], store)
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    changed = dict(batch[0], asg="ASG999999", selected={2})  # same worker, task, images; other answers
    write_mturk(f2, [batch[1], changed])
    with pytest.raises(RatingsImportError) as e:
        ingest_ratings([f2], store)
    msg = str(e.value)
    assert str(f2) in msg and "line 3" in msg and "column 'Input.image_1'" in msg and "a.csv (mturk)" in msg
    assert hashlib.sha256(store.read_bytes()).hexdigest() == digest


def _edit(path, line: int, column: str, value: str) -> None:
    rows = list(csv.reader(open(path, newline="", encoding="utf-8")))
    rows[line - 1][rows[0].index(column)] = value
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)


MALFORMED = [
    ("checkbox", 3, "AssignmentStatus", "Pending", "AssignmentStatus"),
    ("checkbox", 2, "WorkerId", " ", "WorkerId"),
    ("checkbox", 2, "AssignmentId", "", "AssignmentId"),
    ("checkbox", 5, "Input.concept", "", "Input.concept"),
    ("checkbox", 2, "Input.task_id", "", "Input.task_id"),
    ("checkbox", 3, "Answer.taskAnswers", '[{"img_1": {"on": tru', "Answer.taskAnswers"),
    ("checkbox", 3, "Answer.taskAnswers", '{"img_1": {"on": true}}', "Answer.taskAnswers"),
    ("checkbox", 3, "Answer.taskAnswers", '[{"img_1": {"on": "yes"}}]', "Answer.taskAnswers"),
    ("checkbox", 3, "Answer.taskAnswers", '[{"img_x": {"on": true}}]', "Answer.taskAnswers"),
    ("checkbox", 5, "Answer.taskAnswers", '[{"img_12": {"on": true}}]', "Answer.taskAnswers"),  # empty slot
    ("checkbox", 2, "Answer.taskAnswers", "", "Answer.taskAnswers"),
    ("checkbox", 2, "SubmitTime", "Sun Nov 22 10:31:05 XYZ 2026", "SubmitTime"),
    ("checkbox", 3, "SubmitTime", "yesterday", "SubmitTime"),
    ("checkbox", 3, "AssignmentId", "ASG000000", "AssignmentId"),  # same id, different answers
    ("checkbox", 5, "Input.image_1", "https://x/y/", "Input.image_1"),
    ("flat", 2, "Answer.img_4", "maybe", "Answer.img_4"),
    ("flat", 5, "Answer.img_9", "on", "Answer.img_9"),  # slot 9 has no image in this task
]


@pytest.mark.parametrize("encoding,line,column,value,named", MALFORMED)
def test_malformed_row_names_file_line_column(tmp_path, encoding, line, column, value, named):
    f, store = tmp_path / "results.csv", tmp_path / "ratings.parquet"
    write_mturk(f, small_batch(), encoding)
    _edit(f, line, column, value)
    with pytest.raises(RatingsImportError) as e:
        ingest_ratings([f], store)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert msg.startswith(f"{f}: line {line}") and f"column '{named}'" in msg, msg
    assert (e.value.line, e.value.column) == (line, named)
    assert not store.exists()


def test_broken_csv_structure_names_file_line(tmp_path):
    f = tmp_path / "results.csv"
    write_mturk(f, small_batch())
    text = f.read_bytes().split(b"\r\n")
    text[3] = text[3] + b',"extra'  # an unterminated quote on line 4
    f.write_bytes(b"\r\n".join(text))
    with pytest.raises(RatingsImportError) as e:
        ingest_ratings([f], tmp_path / "s.parquet")
    assert str(e.value).startswith(f"{f}: line 4") and e.value.column is not None


def test_missing_columns_and_unknown_files(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("HITId,AssignmentId,WorkerId,AssignmentStatus\nH,A,W,Approved\n")
    with pytest.raises(RatingsImportError, match=r"x\.csv: line 1: missing column\(s\) \['Input\.concept'\]"):
        ingest_ratings([f], tmp_path / "s.parquet")
    f.write_text("a,b\n1,2\n")
    with pytest.raises(RatingsImportError, match="unknown ratings file"):
        ingest_ratings([f], tmp_path / "s.parquet")
    f.write_text("")
    with pytest.raises(RatingsImportError, match="empty"):
        ingest_ratings([f], tmp_path / "s.parquet")


def test_long_csv_and_parquet_export(tmp_path):
    f, store = tmp_path / "lab.csv", tmp_path / "ratings.parquet"
    f.write_text("image_id,concept,rater_id,rating\nim1,dog,r1,yes\nim2,dog,r1,0\nim1,dog,r2,1\nim1,dog,r1,1\n")
    (c,) = ingest_ratings([f], store)
    assert (c["format"], c["rows_read"], c["kept"], c["duplicate"], c["ratings_added"]) == ("csv", 4, 3, 1, 3)
    df = read_store(store)
    assert (df["source"] == "lab.csv (csv)").all() and (df["task"] == "").all() and df["submitted_at"].isna().all()
    assert df.sort_values(["image_id", "rater"])["rating"].tolist() == [1, 1, 0]
    (c,) = ingest_ratings([f], store)
    assert (c["kept"], c["duplicate"]) == (0, 4)
    # the app's export (the same schema) imports too, and is idempotent
    app = tmp_path / "app.parquet"
    app_df = df.assign(task="t1", source="app")
    app_df.to_parquet(app)
    (c,) = ingest_ratings([app], store)
    assert (c["format"], c["kept"]) == ("parquet", 3)
    (c,) = ingest_ratings([app], store)
    assert (c["kept"], c["duplicate"]) == (0, 3)
    assert len(read_store(store)) == 6


def test_long_csv_malformed(tmp_path):
    f = tmp_path / "lab.csv"
    f.write_text("image_id,concept,rater_id,rating\nim1,dog,r1,yes\nim2,dog,r1,perhaps\n")
    with pytest.raises(RatingsImportError) as e:
        ingest_ratings([f], tmp_path / "s.parquet")
    assert str(e.value).startswith(f"{f}: line 3") and e.value.column == "rating"
    f.write_text("image_id,concept,rater_id,rating\nim1,dog,r1,1\nim1,dog,r1,0\n")
    with pytest.raises(RatingsImportError, match="different ratings"):
        ingest_ratings([f], tmp_path / "s.parquet")


# -- fuzzing --------------------------------------------------------------------------------------

FUZZ_BATCH = small_batch()
NASTY = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", '"', '""', ",", "\n", "\r\n", "\x00", "on", "Rejected", "Approved", "[]", "[{}]",
                     '[{"img_1": {"on": true}}]', '[{"img_99": {"on": true}}]', '[{"selected": ["img_2"]}]',
                     "ASG000001", "https://x/", "Sun Nov 22 10:31:05 PST 2026", "2026-11-22T10:00:00Z", "é"]),
)


def _check_outcome(f, store, call):
    """Either a RatingsImportError naming the file (and its line/column where it gives one), or a clean
    import whose reconciliation adds up."""
    try:
        counts = call()
    except RatingsImportError as e:
        msg = str(e)
        assert msg.startswith(f"{f}: "), msg
        if e.line is not None:
            assert f"line {e.line}" in msg
        if e.column is not None:
            assert f"column '{e.column}'" in msg
        return None
    for c in counts:
        assert c["rows_read"] == c["kept"] + c["rejected"] + c["duplicate"]
    return counts


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(row=st.integers(0, len(FUZZ_BATCH) - 1), column=st.sampled_from(HEAD + INPUTS + ["Answer.taskAnswers"]),
       value=NASTY)
def test_fuzz_cell(tmp_path_factory, row, column, value):
    d = tmp_path_factory.mktemp("fuzz")
    f, store = d / "r.csv", d / "s.parquet"
    write_mturk(f, FUZZ_BATCH)
    _edit(f, row + 2, column, value)
    counts = _check_outcome(f, store, lambda: ingest_ratings([f], store))
    if counts is None:
        assert not store.exists()
        return
    # imported exactly: every assignment other than the edited one is stored as written
    got = stored(store)
    others = [a for i, a in enumerate(FUZZ_BATCH) if i != row]
    exp = expected(others)
    merged = exp.merge(got, on=["task", "image_id", "concept", "rater"], how="left", suffixes=("", "_got"))
    if column not in ("Input.task_id", "Input.concept", "WorkerId", "AssignmentId", "AssignmentStatus"):
        assert (merged["rating"] == merged["rating_got"]).all()
    assert counts[0]["rows_read"] == len(FUZZ_BATCH)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_bytes(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("fuzzb")
    f, store = d / "r.csv", d / "s.parquet"
    write_mturk(f, FUZZ_BATCH[:3])
    raw = bytearray(f.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        b = data.draw(st.sampled_from([b'"', b",", b"\n", b"\r", b"x", b"\xff", b"\x00", b"{", b"]", b" "]))
        if op == "insert":
            raw[pos:pos] = b
        elif pos < len(raw):
            raw[pos:pos + 1] = b"" if op == "delete" else b
    f.write_bytes(bytes(raw))
    counts = _check_outcome(f, store, lambda: ingest_ratings([f], store))
    if counts is not None:
        n_rows = sum(1 for r in csv.reader(open(f, newline="", encoding="utf-8-sig")) if r) - 1
        assert counts[0]["rows_read"] == n_rows
        assert len(read_store(store)) == counts[0]["ratings_added"]
        # a re-import changes nothing
        (c,) = ingest_ratings([f], store)
        assert c["ratings_added"] == 0 and c["kept"] == 0


# -- timing ---------------------------------------------------------------------------------------

@pytest.mark.timing
def test_import_100k_mturk_rows_under_10s(tmp_path):
    rng = np.random.default_rng(0)
    f, store = tmp_path / "big.csv", tmp_path / "ratings.parquet"
    n = 100_000
    sel = rng.random((n, N_SLOTS)) < 0.3
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(HEAD + INPUTS + ["Answer.taskAnswers"] + TAIL)
        meta_tail = ["Wed Nov 25 10:31:05 PST 2026", "", "", "", "60", "0% (0/0)", "0% (0/0)", "0% (0/0)"]
        for i in range(n):
            hit = i // 3
            ans = json.dumps([{f"img_{k}": {"on": bool(sel[i, k - 1])} for k in range(1, N_SLOTS + 1)}])
            w.writerow([f"HIT{hit}", "T", "t", "d", "k", "$0.05", "Sun Nov 22 09:00:00 PST 2026", "3", "", "600",
                        "259200", "", "", "259200", f"A{i}", f"W{i % 997}", "Rejected" if i % 50 == 0 else "Approved",
                        "Sun Nov 22 10:30:05 PST 2026", f"Sun Nov 22 10:{i % 60:02d}:05 PST 2026", *meta_tail,
                        f"task{hit}", "dog", *[f"https://b.s3.amazonaws.com/s/{hit}_{k}.jpg" for k in range(1, 16)],
                        ans, "", ""])
    t = time.perf_counter()
    (c,) = ingest_ratings([f], store)
    elapsed = time.perf_counter() - t
    print(f"100k-row MTurk import: {elapsed:.2f} s")
    assert (c["rows_read"], c["rejected"], c["kept"]) == (n, 2000, 98_000)
    assert c["ratings_added"] == 98_000 * N_SLOTS
    assert elapsed < 10, f"import of {n} MTurk rows took {elapsed:.1f} s (bound 10 s)"
