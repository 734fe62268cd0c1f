"""Simulated raters for Setting 2 (SPEC sec. 4-5; seed 001 Sec. 4, B.4).

A task asks "Select all the images that contain: <concept>"; each rating r in {0, 1} says whether
the rater saw the concept. All simulations take a numpy Generator (or a seed) and are reproducible.

- ``uniform_error_ratings``: every rating is wrong with probability eta (the uniform error model).
- ``per_input_error_ratings``: each input i has its own error rate eta_i ~ Beta(0.75, 2.5) (the
  per-input error model of seed 001 B.4, fitted there to MTurk ratings; mean error 0.23).
- ``make_rater_pool`` / ``pool_ratings``: a pool of raters, each with its own error rate, some of
  them spammers (answering at random, or always "yes").

Ratings are (inputs x raters) int8 arrays of 0/1, with -1 where a rater did not rate an input;
``ratings_to_long`` gives the long form (image_id, concept, rater_id, rating) and
``rating_counts`` the (yes, total) counts used by the aggregators. Real ratings: ``read_ratings``
(CSV, text cells, index = file line) -> ``check_ratings`` / ``long_to_counts`` (errors name the file,
lines and column).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from neuronaudit.explainers.importers import CsvTable, ImportFormatError

__all__ = [
    "BETA_ERROR_PRIOR",
    "uniform_error_ratings",
    "per_input_error_ratings",
    "make_rater_pool",
    "pool_ratings",
    "rating_counts",
    "ratings_to_long",
    "long_to_counts",
    "check_ratings",
    "normalise_ratings",
    "read_ratings",
    "RATING_WORDS",
]

log = logging.getLogger(__name__)

BETA_ERROR_PRIOR = (0.75, 2.5)  # seed 001 B.4
MISSING = -1


def _rng(rng) -> np.random.Generator:
    return np.random.default_rng(rng)  # a Generator is returned unaltered


def _truth(c_true) -> np.ndarray:
    c = np.asarray(c_true)
    if not np.all((c == 0) | (c == 1)):
        bad = np.flatnonzero(~((c == 0) | (c == 1)).ravel())[0]
        raise ValueError(f"c_true must be binary 0/1 ground truth; entry {bad} is {c.ravel().tolist()[bad]!r}")
    return c.astype(np.int8)


def uniform_error_ratings(c_true, n_raters: int, eta: float, rng=None) -> np.ndarray:
    """(inputs, n_raters) 0/1 ratings; each rating flips the truth with probability eta."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    rng = _rng(rng)
    c = _truth(c_true)
    flips = rng.random((*c.shape, n_raters)) < eta
    return (c[..., None] ^ flips).astype(np.int8)


def per_input_error_ratings(
    c_true, n_raters: int, rng=None, a: float = BETA_ERROR_PRIOR[0], b: float = BETA_ERROR_PRIOR[1]
) -> tuple[np.ndarray, np.ndarray]:
    """Ratings with a per-input error rate eta_i ~ Beta(a, b) shared by all raters of input i.

    Returns (ratings (inputs, n_raters), eta (inputs,)).
    """
    rng = _rng(rng)
    c = _truth(c_true)
    eta = rng.beta(a, b, size=c.shape)
    flips = rng.random((*c.shape, n_raters)) < eta[..., None]
    return (c[..., None] ^ flips).astype(np.int8), eta


def make_rater_pool(
    n_raters: int,
    rng=None,
    error_beta: tuple[float, float] = (2.0, 8.0),
    spammer_fraction: float = 0.1,
    spammer_kind: str = "random",
) -> pd.DataFrame:
    """A pool of raters: rater_id, kind ("honest", "random" spammer, or "yes" spammer), error_rate.

    Honest raters' error rates are drawn from Beta(*error_beta) (default mean 0.2). Spammers answer
    at random (error 0.5) or always "yes" (error_rate NaN: it depends on the truth).
    """
    if spammer_kind not in ("random", "yes"):
        raise ValueError(f"spammer_kind must be 'random' or 'yes', got {spammer_kind!r}")
    rng = _rng(rng)
    n_spam = int(round(spammer_fraction * n_raters))
    kind = np.array(["honest"] * (n_raters - n_spam) + [spammer_kind] * n_spam, dtype=object)
    rng.shuffle(kind)
    err = rng.beta(*error_beta, size=n_raters)
    err = np.where(kind == "random", 0.5, np.where(kind == "yes", np.nan, err))
    return pd.DataFrame({"rater_id": np.arange(n_raters), "kind": kind, "error_rate": err})


def pool_ratings(c_true, pool: pd.DataFrame, raters_per_input: int | None = None, rng=None) -> np.ndarray:
    """(inputs, len(pool)) ratings from a rater pool; with ``raters_per_input`` = m each input is rated
    by m raters drawn without replacement from the pool and the other entries are -1 (missing)."""
    rng = _rng(rng)
    c = _truth(c_true).ravel()
    n_in, n_r = len(c), len(pool)
    kind = pool["kind"].to_numpy()
    err = np.nan_to_num(pool["error_rate"].to_numpy(dtype=float), nan=0.0)
    flips = rng.random((n_in, n_r)) < err[None, :]
    ratings = (c[:, None] ^ flips).astype(np.int8)
    ratings[:, kind == "yes"] = 1
    random_cols = kind == "random"
    ratings[:, random_cols] = rng.integers(0, 2, size=(n_in, int(random_cols.sum())), dtype=np.int8)
    if raters_per_input is not None:
        if not 1 <= raters_per_input <= n_r:
            raise ValueError(f"raters_per_input must lie in [1, {n_r}], got {raters_per_input}")
        # m raters per input: the m smallest of i.i.d. uniform keys are a uniform random subset
        keys = rng.random((n_in, n_r))
        chosen = np.argsort(keys, axis=1)[:, :raters_per_input]
        mask = np.zeros((n_in, n_r), dtype=bool)
        np.put_along_axis(mask, chosen, True, axis=1)
        ratings[~mask] = MISSING
    return ratings


def rating_counts(ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(yes, total) per input from an (inputs, raters) array of 0/1 with -1 (or NaN) for missing."""
    r = np.asarray(ratings, dtype=np.float64)
    present = np.isfinite(r) & (r != MISSING)
    bad = present & ~((r == 0) | (r == 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"ratings must be 0/1 (or -1 for missing); input {i}, rater {j} has {r[i, j].item()!r}")
    yes = np.where(present, r, 0).sum(axis=1).astype(np.int64)
    return yes, present.sum(axis=1).astype(np.int64)


def ratings_to_long(
    ratings: np.ndarray, image_ids: Sequence | None = None, concept: str | Sequence[str] = "", rater_ids: Sequence | None = None
) -> pd.DataFrame:
    """Long form: one row per given rating with columns image_id, concept, rater_id, rating."""
    r = np.asarray(ratings)
    n_in, n_r = r.shape
    image_ids = np.arange(n_in) if image_ids is None else np.asarray(image_ids)
    rater_ids = np.arange(n_r) if rater_ids is None else np.asarray(rater_ids)
    concepts = np.broadcast_to(np.asarray(concept, dtype=object), (n_in,))
    ii, jj = np.nonzero(r != MISSING)
    return pd.DataFrame(
        {"image_id": image_ids[ii], "concept": concepts[ii], "rater_id": rater_ids[jj], "rating": r[ii, jj].astype(np.int8)}
    )


RATING_COLUMNS = ("image_id", "concept", "rater_id", "rating")
# spellings of a rating accepted in files (compared after strip().lower())
RATING_WORDS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "yes": 1, "no": 0, "y": 1, "n": 0, "true": 1, "false": 0}


def _at(df: pd.DataFrame, mask) -> list:
    """The first few rows of ``mask``: file line numbers when ``df`` came from :func:`read_ratings`."""
    return [int(x) if isinstance(x, int | np.integer) else x for x in df.index[np.asarray(mask, dtype=bool)][:5]]


def _fail(df: pd.DataFrame, source: str, mask, column: str, what: str):
    """An ImportFormatError naming the source, the first offending line (for file frames), the column and
    ``what``, followed by the count and the first few offending rows/lines."""
    mask = np.asarray(mask, dtype=bool)
    at = _at(df, mask)
    from_file = df.index.name == "line"
    word = "lines" if from_file else "rows"
    return ImportFormatError(source, f"{what} "
                             f"({int(mask.sum())} of {len(df)} {word}; first: {word} {at})",
                             line=at[0] if from_file and at else None, column=column)


def _blank(values: pd.Series) -> np.ndarray:
    return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()


def normalise_ratings(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(ratings as int8 0/1, mask of values that are not a rating) from numbers, booleans or words.

    Accepted: 0/1 (ints, floats 0.0/1.0, booleans) and, case-insensitively, "1"/"0", "yes"/"no",
    "y"/"n", "true"/"false"."""
    values = pd.Series(values)
    if pd.api.types.is_numeric_dtype(values):  # numbers and booleans (a missing value is NaN: not a rating)
        x = values.to_numpy(dtype=np.float64)
        bad = ~((x == 0) | (x == 1))
        return np.where(bad, 0, x).astype(np.int8), bad
    # str(True) = "True" is a rating word; str(None), str(nan), str(pd.NA) are not
    words = values.map(lambda v: RATING_WORDS.get(str(v).strip().lower(), -1)).to_numpy(dtype=np.int64)
    bad = words < 0
    return np.where(bad, 0, words).astype(np.int8), bad


def read_ratings(path) -> pd.DataFrame:
    """Long-form ratings from a CSV ``image_id,concept,rater_id,rating`` (extra columns ignored).

    Cells are read as text (no type guessing); ratings are parsed by :func:`check_ratings`. The index
    is the 1-based line number in the file (index name ``line``), so later errors name lines. A file
    that is not UTF-8, has malformed quoting or rows of the wrong width raises ``ImportFormatError``
    naming the file, line and column; an empty file one naming the file.
    """
    t = CsvTable(path, RATING_COLUMNS, text_columns=["concept"])
    cols = {c: [row[t.index[c]].strip() for row in t.rows] for c in t.index}
    df = pd.DataFrame(cols, index=pd.Index(t.lines, name="line"), dtype=object)
    df.attrs["source"] = str(path)
    if not len(df):
        log.warning("%s: the file has a header but no ratings", path)
    return df


def check_ratings(
    df: pd.DataFrame,
    image_ids=None,
    concepts=None,
    source: str | None = None,
) -> pd.DataFrame:
    """Validate long-form ratings before aggregation; return them with ``rating`` as int8 0/1.

    Raises ValueError naming the source (file), the rows (file lines for :func:`read_ratings` frames),
    the column and what to do, for: missing columns; an empty image_id, concept or rater_id (a blank
    rater id would let two different answers collapse into one, so it is refused rather than guessed);
    ratings other than 0/1, yes/no, y/n, true/false (any case); ratings of images not in ``image_ids``
    (e.g. the manifest) or of concepts not in ``concepts``; one rater rating the same (image, concept)
    twice with different answers. Nothing is dropped silently: the caller fixes the input or the
    reference sets.
    """
    source = source or df.attrs.get("source") or "ratings"
    missing = [c for c in RATING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(df.columns)}; expected "
                         f"{list(RATING_COLUMNS)}")
    for column in ("image_id", "concept", "rater_id"):
        blank = _blank(df[column])
        if blank.any():
            advice = ("give every rating its rater's id (any label that is the same for all ratings of one "
                      "rater and differs between raters); a blank id could hide two different answers"
                      if column == "rater_id" else f"give every rating its {column}")
            raise _fail(df, source, blank, column, f"is empty; {advice}")
    rating, bad = normalise_ratings(df["rating"])
    if bad.any():
        values = ", ".join(repr(v) for v in df["rating"][bad].iloc[:5])
        raise _fail(df, source, bad, "rating",
                    f"not a rating ({values}...); write 1 or 0 (also accepted, any case: yes/no, y/n, true/false)")
    df = df.assign(rating=rating)
    for column, known, what in ((("image_id", image_ids, "images")), ("concept", concepts, "concepts")):
        if known is None:
            continue
        unknown = pd.Index(df[column].astype(str).unique()).difference(pd.Index([str(k) for k in known]))
        if len(unknown):
            raise _fail(df, source, df[column].astype(str).isin(unknown).to_numpy(), column,
                        f"{len(unknown)} unknown {what} {sorted(unknown)[:10]}: they are not in the study's "
                        f"{what}; check the {column} column or the study")
    key = ["image_id", "concept", "rater_id"]
    conflict = df.groupby(key)["rating"].transform("nunique").to_numpy() > 1  # keys are not blank (checked)
    if conflict.any():
        raise _fail(df, source, conflict, "rating", "the same rater gave different ratings to the same image and "
                    "concept; keep one answer per rater, image and concept")
    return df


def long_to_counts(df: pd.DataFrame, image_ids=None, concepts=None, source: str | None = None) -> pd.DataFrame:
    """(image_id, concept) -> yes, total from the long form (validated by :func:`check_ratings`).

    A rating repeated verbatim by the same rater (a re-imported file) counts once, so ingestion is
    idempotent; how many repeats were merged is logged."""
    df = check_ratings(df, image_ids, concepts, source)
    dup = df.duplicated(["image_id", "concept", "rater_id"]).to_numpy()
    if dup.any():
        log.info("%s: %d repeated ratings (same rater, image, concept and answer) counted once",
                 source or df.attrs.get("source") or "ratings", int(dup.sum()))
        df = df[~dup]
    g = df.groupby(["image_id", "concept"], sort=False)["rating"]
    out = g.agg(yes="sum", total="size").reset_index()
    out["yes"] = out["yes"].astype(np.int64)
    return out
