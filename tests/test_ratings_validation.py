"""Ratings files and their validation (issue 7, item 6): regression tests on real files and a hypothesis
fuzz test. Errors name the file, the line and the column; no rating is dropped or merged silently."""

import csv
import io
import logging

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from neuronaudit.explainers.importers import ImportFormatError
from neuronaudit.raters import RATING_WORDS, check_ratings, long_to_counts, read_ratings

HEADER = "image_id,concept,rater_id,rating\n"


def _file(tmp_path, body, name="ratings.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes((HEADER + body).encode(encoding))
    return path


def _counts(counts: pd.DataFrame) -> dict:
    return {(i, c): (int(y), int(t)) for i, c, y, t in counts[["image_id", "concept", "yes", "total"]].itertuples(
        index=False)}


def _error(path, **kwargs) -> ImportFormatError:
    with pytest.raises(ImportFormatError) as err:
        long_to_counts(read_ratings(path), **kwargs)
    assert str(err.value).startswith(str(path)) and isinstance(err.value, ValueError)
    return err.value


def test_blank_rater_id_is_an_error_naming_the_lines(tmp_path):
    # 'a,cat,,1' and 'a,cat,,0' used to give yes=1, total=1: one answer silently lost
    e = _error(_file(tmp_path, "a,cat,r1,1\na,cat,,1\na,cat,,0\n"))
    assert (e.line, e.column) == (3, "rater_id") and "lines [3, 4]" in str(e) and "2 of 3 lines" in str(e)
    assert "rater's id" in str(e)
    # the same for a DataFrame (rows are index labels) with a missing rater id
    df = pd.DataFrame({"image_id": ["a", "a"], "concept": ["cat", "cat"], "rater_id": [None, None], "rating": [1, 0]})
    with pytest.raises(ValueError, match=r"column 'rater_id'.*rows \[0, 1\]"):
        long_to_counts(df, source="batch.csv")


def test_blank_image_or_concept_is_an_error(tmp_path):
    e = _error(_file(tmp_path, "a,cat,r1,1\n,cat,r2,1\n"))
    assert (e.line, e.column) == (3, "image_id")
    e = _error(_file(tmp_path, "a, ,r1,1\n", name="c.csv"))
    assert (e.line, e.column) == (2, "concept")


def test_repeated_rows_with_a_rater_id_count_once_and_are_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="neuronaudit")
    body = "a,cat,r1,1\nb,cat,r1,0\na,cat,r2,1\n"
    once = long_to_counts(read_ratings(_file(tmp_path, body, "once.csv")))
    twice = long_to_counts(read_ratings(_file(tmp_path, body + body, "twice.csv")))
    pd.testing.assert_frame_equal(once, twice)
    assert _counts(once) == {("a", "cat"): (2, 2), ("b", "cat"): (0, 1)}
    assert "twice.csv: 3 repeated ratings" in caplog.text


def test_text_ratings_are_accepted(tmp_path):
    body = "a,cat,r1,yes\na,cat,r2,No\na,cat,r3,TRUE\na,cat,r4,false\na,cat,r5, y \na,cat,r6,N\nb,cat,r1,1\nb,cat,r2,0.0\n"
    counts = long_to_counts(read_ratings(_file(tmp_path, body)))
    assert _counts(counts) == {("a", "cat"): (3, 6), ("b", "cat"): (1, 2)}
    # the same answer spelled twice by one rater counts once; different answers are a conflict
    counts = long_to_counts(read_ratings(_file(tmp_path, "a,cat,r1,yes\na,cat,r1,1\n", "same.csv")))
    assert _counts(counts) == {("a", "cat"): (1, 1)}
    e = _error(_file(tmp_path, "a,cat,r1,yes\nb,cat,r1,1\na,cat,r1,0\n", "conflict.csv"))
    assert (e.line, e.column) == (2, "rating") and "lines [2, 4]" in str(e) and "different ratings" in str(e)
    # booleans and 0/1 floats in a DataFrame too
    df = pd.DataFrame({"image_id": ["a", "a"], "concept": ["c", "c"], "rater_id": [1, 2], "rating": [True, False]})
    assert _counts(long_to_counts(df)) == {("a", "c"): (1, 2)}
    assert check_ratings(df)["rating"].tolist() == [1, 0]


def test_bad_ratings_give_one_concise_error(tmp_path):
    body = "".join(f"img{i},cat,r1,maybe\n" for i in range(200))
    e = _error(_file(tmp_path, body))
    msg = str(e)
    assert (e.line, e.column) == (2, "rating") and "200 of 200 lines" in msg and "lines [2, 3, 4, 5, 6]" in msg
    assert "'maybe'" in msg and "yes/no" in msg and len(msg) < 600
    e = _error(_file(tmp_path, "a,cat,r1,1\nb,cat,r1,\n", "blank.csv"))
    assert (e.line, e.column) == (3, "rating")


def test_empty_header_only_and_broken_files(tmp_path, caplog):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    e = _error(empty)
    assert "file is empty" in str(e) and "image_id" in str(e)
    counts = long_to_counts(read_ratings(_file(tmp_path, "", "header.csv")))
    assert len(counts) == 0 and "header.csv: the file has a header but no ratings" in caplog.text
    e = _error(_file(tmp_path, "a,café,r1,1\n", "latin1.csv", encoding="latin-1"))
    assert (e.line, e.row, e.column) == (2, 1, "concept") and "UTF-8" in str(e)
    e = _error(_file(tmp_path, "a,cat,r1,1\nb,cat,r1\n", "short.csv"))
    assert (e.line, e.column) == (3, "rating")
    e = _error(_file(tmp_path, "a,black, white,r1,1\n", "comma.csv"))
    assert (e.line, e.column) == (2, "concept") and "unquoted comma" in str(e)
    path = tmp_path / "cols.csv"
    path.write_text("image,concept,rater_id,rating\na,cat,r1,1\n")
    e = _error(path)
    assert "missing column(s) ['image_id']" in str(e)


def test_unknown_images_name_lines(tmp_path):
    e = _error(_file(tmp_path, "a,cat,r1,1\nzz,cat,r1,1\n"), image_ids=["a"], concepts=["cat"])
    assert (e.line, e.column) == (3, "image_id") and "unknown images ['zz']" in str(e)


# --------------------------------------------------------------------------------------------- fuzz test
_spellings = {1: [k for k, v in RATING_WORDS.items() if v == 1], 0: [k for k, v in RATING_WORDS.items() if v == 0]}
ids = st.text(alphabet="abcxyz0123 ,\"é-", min_size=1, max_size=6).map(str.strip).filter(bool)


@st.composite
def ratings(draw):
    keys = draw(st.lists(st.tuples(ids, st.sampled_from(["cat", "dog, big", 'say "hi"']), ids), min_size=1,
                         max_size=12, unique=True))
    values = draw(st.lists(st.integers(0, 1), min_size=len(keys), max_size=len(keys)))
    rows = []
    for key, v in zip(keys, values, strict=True):
        for _ in range(draw(st.integers(1, 2))):  # a repeated (re-imported) rating counts once
            word = draw(st.sampled_from(_spellings[v]))
            rows.append([*key, draw(st.sampled_from([word, word.upper(), word.title(), f" {word} "]))])
    rows = draw(st.permutations(rows))
    expected: dict = {}
    for (image, concept, _), v in zip(keys, values, strict=True):
        y, t = expected.get((image, concept), (0, 0))
        expected[image, concept] = (y + v, t + 1)
    return rows, expected


MUTATIONS = ["none", "blank_rater", "blank_image", "bad_rating", "conflict", "latin1", "short_row", "extra_field"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), case=ratings(), mutation=st.sampled_from(MUTATIONS))
def test_fuzz_ratings_are_counted_exactly_or_rejected_naming_file_line_column(tmp_path, data, case, mutation):
    rows, expected = case
    rows = [list(r) for r in rows]
    k = data.draw(st.integers(0, len(rows) - 1))
    column = {"blank_rater": "rater_id", "blank_image": "image_id", "bad_rating": "rating", "conflict": "rating",
              "latin1": "concept", "short_row": "rating", "extra_field": "concept"}.get(mutation)
    if mutation == "blank_rater":
        rows[k][2] = ""
    elif mutation == "blank_image":
        rows[k][0] = " "
    elif mutation == "bad_rating":
        rows[k][3] = data.draw(st.sampled_from(["2", "maybe", "", "-1", "ja", "0.5"]))
    elif mutation == "conflict":
        key = rows[k][:3]
        v = 1 - RATING_WORDS[rows[k][3].strip().lower()]
        rows.insert(data.draw(st.integers(0, len(rows))), key + [_spellings[v][0]])
        k = min(i for i, r in enumerate(rows) if r[:3] == key)  # the first line of the key with two answers
    elif mutation == "latin1":
        rows[k][1] += "\udce9"
    elif mutation == "short_row":
        rows[k] = rows[k][:3]
    elif mutation == "extra_field":
        rows[k] = rows[k] + ["x"]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["image_id", "concept", "rater_id", "rating"], *rows])
    text = buf.getvalue()
    path = tmp_path / "fuzz_ratings.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    lines = [2 + i for i in range(len(rows))]  # ids and concepts hold no line breaks
    try:
        counts = long_to_counts(read_ratings(path))
    except ImportFormatError as e:
        event(f"{mutation}: rejected")
        msg = str(e)
        assert mutation != "none", msg
        assert msg.startswith(str(path)) and f"line {e.line}," in msg and f"column '{e.column}'" in msg
        assert (e.line, e.column) == (lines[k], column), msg
        return
    event(f"{mutation}: counted")
    assert mutation == "none", f"{mutation} was accepted"
    assert _counts(counts) == expected
