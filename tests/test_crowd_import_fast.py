"""The column-wise MTurk import (crowd.mturk.CsvCells + _vectorised; issue 9 import speed) against the
row-wise reader it stands in for: on the same file both give the same rating rows and counts, or the same
error (file, line, column, text). Fuzzed with hypothesis over cells and bytes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronaudit.crowd import mturk
from neuronaudit.crowd.mturk import CsvCells, RatingsImportError, read_mturk_results
from neuronaudit.crowd.ratings import ingest_ratings, read_store
from neuronaudit.explainers.importers import CsvTable, ImportFormatError
from tests.test_crowd_import import HEAD, INPUTS, NASTY, _assignment, _edit, small_batch, write_mturk

BATCH = small_batch()


def _outcome(path, slow: bool, monkeypatch):
    """(frame, counts) or (error class, text, line, column) of read_mturk_results, fast or row-wise."""
    with monkeypatch.context() as m:
        if slow:
            m.setattr(mturk.CsvCells, "_fast", lambda self: None)
            m.setattr(mturk, "_vectorised", lambda *a, **k: None)
        try:
            b = read_mturk_results(path)
        except (RatingsImportError, ImportFormatError) as e:
            return type(e).__name__, str(e), e.line, e.column
    frame = b.frame("s").astype({c: object for c in ("task", "image_id", "concept", "rater", "source", "_slot")})
    lists = (b.task, b.concept, b.rater, b.assignment_id, b.lines, b.image_id, b.rating, b.slot, b.n_ratings)
    return frame, (b.rows_read, b.kept, b.rejected, b.duplicate), [list(x) for x in lists]


def _same(path, monkeypatch):
    fast, slow = _outcome(path, False, monkeypatch), _outcome(path, True, monkeypatch)
    if isinstance(slow[0], str):
        assert fast == slow
        return None
    assert not isinstance(fast[0], str), fast
    pd.testing.assert_frame_equal(fast[0], slow[0])
    assert fast[1:] == slow[1:]
    return fast


def test_the_exported_form_is_read_column_wise_and_equals_the_row_reader(tmp_path, monkeypatch):
    f = tmp_path / "r.csv"
    write_mturk(f, BATCH, extra_answer=False)
    t = CsvCells(f)
    assert t._table is None  # the fast reading was used
    ref = CsvTable(f)
    assert t.columns == ref.columns and t.lines.tolist() == ref.lines and t.rows == ref.rows
    calls = []
    real = mturk._vectorised
    monkeypatch.setattr(mturk, "_vectorised", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert read_mturk_results(f) is not None and calls
    monkeypatch.undo()
    out = _same(f, monkeypatch)
    assert out[1] == (5, 4, 1, 0)


@pytest.mark.parametrize("encoding", ["checkbox", "flat", "selected"])
def test_encodings_blank_lines_and_pandas_quoting(tmp_path, monkeypatch, encoding):
    f = tmp_path / "r.csv"
    batch = [*BATCH, _assignment(7, 3, "W4", "Approved", {1, 15}, url=False)]
    write_mturk(f, batch, encoding)
    _same(f, monkeypatch)
    raw = f.read_bytes().split(b"\r\n")
    f.write_bytes(b"\r\n".join([raw[0], b"", *raw[1:3], b"", b"", *raw[3:]]))  # blank lines keep line numbers
    out = _same(f, monkeypatch)
    assert out[2][4] == [3, 4, 8, 9, 10]  # header 1, blank 2, rows 3-4, blank 5-6, rejected 7
    pd.read_csv(f, dtype=str, keep_default_na=False).to_csv(f, index=False)  # minimal quoting, LF
    assert CsvCells(f)._table is None
    _same(f, monkeypatch)


def test_repeated_assignment_and_odd_cells_fall_back_to_rows(tmp_path, monkeypatch):
    f = tmp_path / "r.csv"
    write_mturk(f, [*BATCH, dict(BATCH[1])])
    out = _same(f, monkeypatch)
    assert out[1] == (6, 4, 1, 1)
    for cell in ('[{"img_01": {"on": true}, "img_1": {"on": false}}]', '[{"img_2": {"on": true}, "img_2": {"on": false}}]',
                 '[{"img_3":{"on":true}}]', '[{"img_99999999999": {"on": false}, "img_2": {"on": true}}]',
                 '\u00a0[{"img_3": {"on": true}}]', '[{"img_3": {"on": true}}]\u2003', '[{"img_3":\u00a0{"on": true}}]'):
        _edit(f, 2, "Answer.taskAnswers", cell)
        _same(f, monkeypatch)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(row=st.integers(0, len(BATCH) - 1), column=st.sampled_from(HEAD + INPUTS + ["Answer.taskAnswers"]),
       value=NASTY)
def test_fuzz_cell_fast_equals_rows(tmp_path_factory, row, column, value):
    mp = pytest.MonkeyPatch()
    try:
        f = tmp_path_factory.mktemp("fz") / "r.csv"
        write_mturk(f, BATCH)
        _edit(f, row + 2, column, value)
        _same(f, mp)
    finally:
        mp.undo()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_bytes_fast_equals_rows(tmp_path_factory, data):
    mp = pytest.MonkeyPatch()
    try:
        f = tmp_path_factory.mktemp("fb") / "r.csv"
        write_mturk(f, BATCH[:3], encoding=data.draw(st.sampled_from(["checkbox", "flat"])))
        raw = bytearray(f.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(raw)))
            op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
            b = data.draw(st.sampled_from([b'"', b",", b"\n", b"\r", b"\r\n", b"x", b"\xff", b"\x00", b"{", b"]",
                                           b" ", b"\xef\xbb\xbf", b"on", b"1"]))
            if op == "insert":
                raw[pos:pos] = b
            elif pos < len(raw):
                raw[pos:pos + 1] = b"" if op == "delete" else b
        f.write_bytes(bytes(raw))
        _same(f, mp)
    finally:
        mp.undo()


def test_reimport_of_a_large_file_adds_nothing_and_keys_are_exact(tmp_path):
    """Hashed keys: a re-import finds every row a duplicate; a changed answer is a conflict on its line."""
    rng = np.random.default_rng(0)
    f, store = tmp_path / "big.csv", tmp_path / "s.parquet"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(["HITId", "AssignmentId", "WorkerId", "AssignmentStatus", "SubmitTime", "Input.task_id",
                    "Input.concept", "Input.image_1", "Input.image_2", "Answer.taskAnswers"])
        for i in range(3000):
            sel = rng.random(2) < 0.5
            w.writerow([f"H{i // 3}", f"A{i}", f"W{i % 7}", "Approved", f"Sun Nov 22 10:{i % 60:02d}:00 PST 2026",
                        f"t{i // 3}", f"dog {i % 5}", f"img{i // 3}a", f"img{i // 3}b",
                        json.dumps([{"img_1": {"on": bool(sel[0])}, "img_2": {"on": bool(sel[1])}}])])
    (c,) = ingest_ratings([f], store)
    assert (c["kept"], c["ratings_added"]) == (3000, 6000)
    before = read_store(store)
    (c,) = ingest_ratings([f], store)
    assert (c["kept"], c["duplicate"], c["ratings_added"]) == (0, 3000, 0)
    pd.testing.assert_frame_equal(read_store(store), before)
    # one changed answer: the error names this file's line and the slot's column
    rows = list(csv.reader(open(f, newline="", encoding="utf-8")))
    ans = json.loads(rows[1500][-1])
    ans[0]["img_2"]["on"] = not ans[0]["img_2"]["on"]
    rows[1500][-1] = json.dumps(ans)
    g = tmp_path / "changed.csv"
    with open(g, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    with pytest.raises(RatingsImportError) as e:
        ingest_ratings([g], store)
    assert (e.value.line, e.value.column) == (1501, "Input.image_2") and "in the store" in str(e.value)


def test_two_columns_for_one_slot_number(tmp_path, monkeypatch):
    f = tmp_path / "r.csv"
    write_mturk(f, BATCH)
    rows = list(csv.reader(open(f, newline="", encoding="utf-8")))
    rows[0][rows[0].index("Input.image_15")] = "Input.image_01"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    _same(f, monkeypatch)
