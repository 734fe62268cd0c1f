"""Tests that pin down raters.py line by line (written against the survivors of ``make mutate``;
docs/testing.md lists what is left). The simulators are checked against their definitions replayed
on the same random stream (so a changed distribution, default or shape fails), and the readers'
errors against the file, lines and column they must name."""

import logging
import re

import numpy as np
import pandas as pd
import pytest

from neuronaudit.explainers.importers import ImportFormatError
from neuronaudit.raters import (
    BETA_ERROR_PRIOR,
    RATING_WORDS,
    check_ratings,
    long_to_counts,
    make_rater_pool,
    normalise_ratings,
    per_input_error_ratings,
    pool_ratings,
    rating_counts,
    ratings_to_long,
    read_ratings,
    uniform_error_ratings,
)


def _raises(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------ simulators
def test_uniform_error_ratings_is_the_flip_model_on_the_same_stream():
    c = np.array([[0, 1, 1], [1, 0, 0]])
    r = uniform_error_ratings(c, 4, 0.3, rng=np.random.default_rng(8))
    ref_rng = np.random.default_rng(8)
    flips = ref_rng.random((2, 3, 4)) < 0.3
    np.testing.assert_array_equal(r, np.where(flips, 1 - c[..., None], c[..., None]))
    assert r.dtype == np.int8 and r.shape == (2, 3, 4)
    # a seed and a Generator with that seed give the same ratings
    np.testing.assert_array_equal(uniform_error_ratings(c, 4, 0.3, rng=8), r)
    # eta = 0 copies the truth, eta = 1 inverts it; booleans are ground truth too
    np.testing.assert_array_equal(uniform_error_ratings([True, False], 2, 0.0, rng=0), [[1, 1], [0, 0]])
    np.testing.assert_array_equal(uniform_error_ratings([1, 0], 2, 1.0, rng=0), [[0, 0], [1, 1]])
    _raises(ValueError, "eta must lie in [0, 1], got 1.5", uniform_error_ratings, [0, 1], 1, 1.5)
    _raises(ValueError, "eta must lie in [0, 1], got -0.1", uniform_error_ratings, [0, 1], 1, -0.1)
    _raises(ValueError, "c_true must be binary 0/1 ground truth; entry 2 is 2", uniform_error_ratings, [0, 1, 2, 3], 1,
            0.1)


def test_per_input_error_ratings_is_beta_then_flips_on_the_same_stream():
    c = np.array([1, 0, 1, 1, 0])
    r, eta = per_input_error_ratings(c, 3, rng=np.random.default_rng(4))
    ref_rng = np.random.default_rng(4)
    ref_eta = ref_rng.beta(0.75, 2.5, size=5)
    flips = ref_rng.random((5, 3)) < ref_eta[:, None]
    np.testing.assert_array_equal(eta, ref_eta)
    np.testing.assert_array_equal(r, np.where(flips, 1 - c[:, None], c[:, None]))
    assert r.dtype == np.int8 and BETA_ERROR_PRIOR == (0.75, 2.5)
    r2, eta2 = per_input_error_ratings(c, 3, rng=4, a=5.0, b=1.0)
    ref_rng = np.random.default_rng(4)
    np.testing.assert_array_equal(eta2, ref_rng.beta(5.0, 1.0, size=5))
    with pytest.raises(ValueError, match="entry 1 is 0.5"):
        per_input_error_ratings([1, 0.5], 2)


def test_make_rater_pool_replayed():
    pool = make_rater_pool(10, rng=np.random.default_rng(6))
    ref_rng = np.random.default_rng(6)
    kind = np.array(["honest"] * 9 + ["random"], dtype=object)  # default: 10% random spammers
    ref_rng.shuffle(kind)
    err = ref_rng.beta(2.0, 8.0, size=10)
    assert list(pool.columns) == ["rater_id", "kind", "error_rate"]
    assert pool["rater_id"].tolist() == list(range(10)) and pool["kind"].tolist() == kind.tolist()
    np.testing.assert_array_equal(pool["error_rate"], np.where(kind == "random", 0.5, err))
    pool = make_rater_pool(8, rng=1, error_beta=(1.0, 3.0), spammer_fraction=0.25, spammer_kind="yes")
    ref_rng = np.random.default_rng(1)
    kind = np.array(["honest"] * 6 + ["yes"] * 2, dtype=object)
    ref_rng.shuffle(kind)
    err = ref_rng.beta(1.0, 3.0, size=8)
    assert pool["kind"].tolist() == kind.tolist()
    np.testing.assert_array_equal(pool["error_rate"], np.where(kind == "yes", np.nan, err))
    # round(0.5 * 3) = 2 spammers
    assert (make_rater_pool(3, rng=0, spammer_fraction=0.5)["kind"] == "random").sum() == 2
    _raises(ValueError, "spammer_kind must be 'random' or 'yes', got 'no'", make_rater_pool, 3, spammer_kind="no")


def _pool(kinds, errs):
    return pd.DataFrame({"rater_id": np.arange(len(kinds)), "kind": kinds, "error_rate": errs})


def test_pool_ratings_replayed_with_spammers_and_subsets():
    pool = _pool(["honest", "yes", "random", "honest"], [0.1, np.nan, 0.5, 0.3])
    c = np.array([1, 0, 0, 1, 1, 0])
    r = pool_ratings(c, pool, rng=np.random.default_rng(2))
    ref_rng = np.random.default_rng(2)
    flips = ref_rng.random((6, 4)) < np.array([0.1, 0.0, 0.5, 0.3])
    ref = np.where(flips, 1 - c[:, None], c[:, None]).astype(np.int8)
    ref[:, 1] = 1
    ref[:, 2] = ref_rng.integers(0, 2, size=(6, 1), dtype=np.int8)[:, 0]
    np.testing.assert_array_equal(r, ref)
    assert r.dtype == np.int8
    # m raters per input: the m smallest of uniform keys
    r3 = pool_ratings(c, pool, raters_per_input=2, rng=np.random.default_rng(2))
    keys = ref_rng.random((6, 4))
    keep = np.zeros((6, 4), dtype=bool)
    np.put_along_axis(keep, np.argsort(keys, axis=1)[:, :2], True, axis=1)
    np.testing.assert_array_equal(r3, np.where(keep, ref, -1))
    assert (rating_counts(r3)[1] == 2).all()
    np.testing.assert_array_equal(pool_ratings(c, pool, raters_per_input=4, rng=2), ref)  # all raters
    _raises(ValueError, "raters_per_input must lie in [1, 4], got 5", pool_ratings, c, pool, raters_per_input=5)
    _raises(ValueError, "raters_per_input must lie in [1, 4], got 0", pool_ratings, c, pool, raters_per_input=0)


# -------------------------------------------------------------------------------------- counts, long form
def test_rating_counts_missing_and_errors():
    r = np.array([[1, 0, -1], [np.nan, 1, 1], [-1, -1, -1]])
    yes, total = rating_counts(r)
    np.testing.assert_array_equal(yes, [1, 2, 0])
    np.testing.assert_array_equal(total, [2, 2, 0])
    assert yes.dtype == np.int64 and total.dtype == np.int64
    _raises(ValueError, "ratings must be 0/1 (or -1 for missing); input 1, rater 0 has 2.0", rating_counts,
            np.array([[1, 0], [2, 1]]))
    _raises(ValueError, "ratings must be 0/1 (or -1 for missing); input 0, rater 1 has 0.5", rating_counts,
            np.array([[1, 0.5], [2, 1]]))


def test_ratings_to_long_defaults_and_ids():
    r = np.array([[1, -1], [0, 1]], dtype=np.int8)
    long = ratings_to_long(r)
    assert long.to_dict("list") == {"image_id": [0, 1, 1], "concept": ["", "", ""], "rater_id": [0, 0, 1],
                                    "rating": [1, 0, 1]}
    assert long["rating"].dtype == np.int8
    long = ratings_to_long(r, image_ids=["a", "b"], concept=["dog", "cat"], rater_ids=["r1", "r2"])
    assert long.to_dict("list") == {"image_id": ["a", "b", "b"], "concept": ["dog", "cat", "cat"],
                                    "rater_id": ["r1", "r1", "r2"], "rating": [1, 0, 1]}


# ---------------------------------------------------------------------------------- files and validation
def _file(tmp_path, body, name="ratings.csv"):
    path = tmp_path / name
    path.write_text("image_id,concept,rater_id,rating\n" + body)
    return path


def test_normalise_ratings_spellings_and_types():
    assert RATING_WORDS["yes"] == 1 and RATING_WORDS["false"] == 0
    vals, bad = normalise_ratings(pd.Series(["Yes", " n ", "TRUE", "0.0", "maybe", None, "1"], dtype=object))
    assert vals.tolist() == [1, 0, 1, 0, 0, 0, 1] and bad.tolist() == [False, False, False, False, True, True, False]
    assert vals.dtype == np.int8
    vals, bad = normalise_ratings(pd.Series([1.0, 0.0, 0.5, np.nan, -0.0]))
    assert vals.tolist() == [1, 0, 0, 0, 0] and bad.tolist() == [False, False, True, True, False]
    vals, bad = normalise_ratings(pd.Series([True, False]))
    assert vals.tolist() == [1, 0] and not bad.any() and vals.dtype == np.int8
    # Python booleans mixed into a text column
    vals, bad = normalise_ratings(pd.Series([True, "no", False], dtype=object))
    assert vals.tolist() == [1, 0, 0] and not bad.any()
    vals, bad = normalise_ratings([1, 0, 2])
    assert vals.tolist() == [1, 0, 0] and bad.tolist() == [False, False, True]


def test_read_ratings_index_source_and_stripping(tmp_path, caplog):
    path = _file(tmp_path, " a , dog ,r1, yes\n\nb,dog,r2,0\n", "x.csv")
    df = read_ratings(path)
    assert df.index.name == "line" and df.index.tolist() == [2, 4]
    assert df.attrs["source"] == str(path)
    assert df.loc[2].tolist() == ["a", "dog", "r1", "yes"]
    caplog.set_level(logging.WARNING, logger="neuronaudit")
    assert len(read_ratings(_file(tmp_path, "", "h.csv"))) == 0
    assert f"{tmp_path / 'h.csv'}: the file has a header but no ratings" in caplog.text


def test_check_ratings_errors_name_source_lines_and_column(tmp_path):
    df = pd.DataFrame({"image_id": ["a", "b", "c", "d", "e", "f", "g"], "concept": ["dog"] * 7,
                       "rater_id": ["r"] * 7, "rating": ["1", "x", "2", "0", "3", "4", "5"]})
    with pytest.raises(ImportFormatError) as err:
        check_ratings(df, source="batch.csv")
    e = err.value
    assert (e.path, e.line, e.column) == ("batch.csv", None, "rating")
    assert str(e) == ("batch.csv: column 'rating': not a rating ('x', '2', '3', '4', '5'...); write 1 or 0 (also "
                      "accepted, any case: yes/no, y/n, true/false) (5 of 7 rows; first: rows [1, 2, 4, 5, 6])")
    # a frame read from a file names the file and its lines
    path = _file(tmp_path, "a,dog,r1,1\nb,,r1,1\n")
    with pytest.raises(ImportFormatError) as err:
        check_ratings(read_ratings(path))
    assert str(err.value) == (f"{path}: line 3, column 'concept': is empty; give every rating its concept "
                              "(1 of 2 lines; first: lines [3])")
    assert err.value.line == 3
    # default source name for a frame
    with pytest.raises(ValueError, match=r"^ratings: missing column\(s\) \['rating'\]; found \['image_id', 'concept', "
                       r"'rater_id'\]; expected \['image_id', 'concept', 'rater_id', 'rating'\]$"):
        check_ratings(df.drop(columns="rating"))
    df2 = df.assign(rating="1")
    df2.attrs["source"] = "from_attrs.csv"
    with pytest.raises(ImportFormatError, match=r"^from_attrs\.csv: column 'concept': 1 unknown concepts \['dog'\]: "
                       r"they are not in the study's concepts; check the concept column or the study \(7 of 7 rows; "
                       r"first: rows \[0, 1, 2, 3, 4\]\)$"):
        check_ratings(df2, concepts=["cat"])
    # known ids are compared as text
    out = check_ratings(pd.DataFrame({"image_id": [1, 2], "concept": ["dog", "dog"], "rater_id": [7, 7],
                                      "rating": [1, 0]}), image_ids=["1", 2], concepts=["dog"])
    assert out["rating"].tolist() == [1, 0] and out["rating"].dtype == np.int8


def test_long_to_counts_sums_and_logs_repeats(caplog):
    caplog.set_level(logging.INFO, logger="neuronaudit")
    df = pd.DataFrame({"image_id": ["b", "a", "b", "a", "a"], "concept": ["dog"] * 5,
                       "rater_id": ["r1", "r1", "r2", "r2", "r1"], "rating": ["yes", 0, "1", "y", "no"]})
    out = long_to_counts(df, source="s.csv")
    assert out.to_dict("list") == {"image_id": ["b", "a"], "concept": ["dog", "dog"], "yes": [2, 1],
                                   "total": [2, 2]}
    assert out["yes"].dtype == np.int64
    assert "s.csv: 1 repeated ratings (same rater, image, concept and answer) counted once" in caplog.text
    caplog.clear()
    df.attrs["source"] = "attrs.csv"
    long_to_counts(df)
    assert "attrs.csv: 1 repeated ratings" in caplog.text
    caplog.clear()
    long_to_counts(pd.DataFrame(df))
    assert "ratings: 1 repeated ratings" in caplog.text or "attrs.csv" in caplog.text


def test_messages_in_full_and_their_caps():
    # a frame with its own (text) index: rows are named by their labels
    df = pd.DataFrame({"image_id": ["a", "a"], "concept": ["dog", "dog"], "rater_id": ["r1", " "], "rating": [1, 0]},
                      index=["first", "second"])
    with pytest.raises(ImportFormatError) as err:
        check_ratings(df, source="b.csv")
    assert str(err.value) == (
        "b.csv: column 'rater_id': is empty; give every rating its rater's id (any label that is the same for all "
        "ratings of one rater and differs between raters); a blank id could hide two different answers (1 of 2 rows; "
        "first: rows ['second'])")
    conflict = pd.DataFrame({"image_id": ["a", "b", "a"], "concept": ["dog"] * 3, "rater_id": ["r1"] * 3,
                             "rating": ["1", "1", "0"]})
    with pytest.raises(ImportFormatError) as err:
        long_to_counts(conflict, source="c.csv")
    assert str(err.value) == (
        "c.csv: column 'rating': the same rater gave different ratings to the same image and concept; keep one answer "
        "per rater, image and concept (2 of 3 rows; first: rows [0, 2])")
    # at most 5 offending values are quoted, at most 10 unknown ids listed
    bad = pd.DataFrame({"image_id": [f"i{k:02d}" for k in range(12)], "concept": ["dog"] * 12, "rater_id": ["r"] * 12,
                        "rating": [str(k) for k in range(2, 14)]})
    with pytest.raises(ImportFormatError, match=re.escape("not a rating ('2', '3', '4', '5', '6'...)")):
        check_ratings(bad)
    with pytest.raises(ImportFormatError) as err:
        check_ratings(bad.assign(rating="1"), image_ids=["x"])
    listed = [f"i{k:02d}" for k in range(10)]
    assert f"12 unknown images {listed}: they are not in the study's images" in str(err.value)


def test_long_to_counts_names_the_given_source_and_merges_repeats_with_extra_columns(tmp_path, caplog):
    df = pd.DataFrame({"image_id": ["a"], "concept": ["dog"], "rater_id": [""], "rating": [1]})
    with pytest.raises(ImportFormatError, match=r"^given\.csv: column 'rater_id'"):
        long_to_counts(df, source="given.csv")
    # a repeated rating counts once even when an extra column (e.g. a timestamp) differs
    caplog.set_level(logging.INFO, logger="neuronaudit")
    rep = pd.DataFrame({"image_id": ["a", "a", "a"], "concept": ["dog"] * 3, "rater_id": ["r1", "r1", "r2"],
                        "rating": [1, 1, 0], "time": ["09:00", "09:05", "09:01"]})
    out = long_to_counts(rep, source="t.csv")
    assert out[["yes", "total"]].to_numpy().tolist() == [[1, 2]]
    assert caplog.messages == ["t.csv: 1 repeated ratings (same rater, image, concept and answer) counted once"]
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="neuronaudit")
    read_ratings(_file(tmp_path, "", "empty.csv"))
    assert caplog.messages == [f"{tmp_path / 'empty.csv'}: the file has a header but no ratings"]


def test_one_rater_per_input():
    pool = _pool(["honest", "honest", "honest"], [0.0, 0.0, 0.0])
    c = np.array([1, 0, 1, 1])
    r = pool_ratings(c, pool, raters_per_input=1, rng=3)
    assert ((r != -1).sum(axis=1) == 1).all()
    np.testing.assert_array_equal(r.max(axis=1), c)  # error-free raters: the one rating is the truth


def test_nullable_boolean_with_missing_is_not_a_rating():
    vals, bad = normalise_ratings(pd.Series([True, None, False], dtype="boolean"))
    assert vals.tolist() == [1, 0, 0] and bad.tolist() == [False, True, False]
