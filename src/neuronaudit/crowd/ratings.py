"""The ratings store: every real rating in one Parquet file, and its idempotent ingestion (issue 9, item 3).

**Schema** (one row per answer of one rater about one image in one task; also in docs/schemas.md):

| column | type | meaning |
|---|---|---|
| ``task`` | string | the task's id (MTurk: ``Input.task_id``, else the HITId; long CSV: its ``task`` column, else ``""``) |
| ``image_id`` | string | the image (the manifest's ``image_id``) |
| ``concept`` | string | the concept the rater was asked about |
| ``rater`` | string | the rater (MTurk: ``WorkerId``; long CSV: ``rater_id``) |
| ``rating`` | int8 | 1 = the rater selected the image (saw the concept), 0 = not selected |
| ``source`` | string | where the row came from: ``"<file name> (mturk)"``, ``"<file name> (csv)"``, ``"<file name> (parquet)"`` |
| ``submitted_at`` | timestamp[ns, UTC], nullable | when the answer was submitted (MTurk ``SubmitTime``) |

The key is (task, image_id, concept, rater): a rater answers an image once per task. A row whose key is
already in the store (or earlier in the same ingestion) with the same rating is a duplicate and is not
stored again (so importing a file twice changes nothing); with a different rating it is an error.

Inputs (:func:`read_ratings_file`, chosen by the header / suffix):

* MTurk batch results CSVs (:mod:`neuronaudit.crowd.mturk`), one row per assignment;
* the long CSV ``image_id,concept,rater_id,rating`` read by :func:`neuronaudit.raters.read_ratings`
  (validated by :func:`neuronaudit.raters.check_ratings`; optional ``task`` and ``submitted_at``
  columns), one row per rating;
* a ratings Parquet in this schema (e.g. the rating app's export).

:func:`ingest_ratings` returns (and logs) one reconciliation per file: ``rows read = kept + rejected +
duplicate`` (rows: assignments for MTurk, ratings otherwise), plus the rating rows added.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from neuronaudit import io as nio
from neuronaudit.crowd.mturk import MTURK_COLUMNS, CsvCells, RatingsImportError, read_mturk_results
from neuronaudit.explainers.importers import ImportFormatError
from neuronaudit.raters import RATING_COLUMNS, check_ratings, read_ratings

__all__ = ["RATINGS_COLUMNS", "RATINGS_KEY", "RatingsImportError", "empty_ratings", "read_ratings_file",
           "ingest_ratings", "read_store"]

log = logging.getLogger(__name__)

RATINGS_COLUMNS = ("task", "image_id", "concept", "rater", "rating", "source", "submitted_at")
RATINGS_KEY = ["task", "image_id", "concept", "rater"]
_STR = ("task", "image_id", "concept", "rater", "source")


def empty_ratings() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series([], dtype=object) for c in _STR})
    df["rating"] = pd.Series([], dtype=np.int8)
    df["submitted_at"] = pd.Series([], dtype="datetime64[ns, UTC]")
    return df[list(RATINGS_COLUMNS)]


def _typed(df: pd.DataFrame, strings="object") -> pd.DataFrame:
    """The schema's columns and types; ``strings="str"`` keeps text in Arrow memory (the ingestion's
    working frames), the default gives Python strings (:func:`read_store`)."""
    out = df[list(RATINGS_COLUMNS)].copy()
    for c in _STR:
        out[c] = out[c].astype(object if strings == "object" else "str")
    out["rating"] = out["rating"].astype(np.int8)
    if str(out["submitted_at"].dtype) != "datetime64[ns, UTC]":
        out["submitted_at"] = pd.to_datetime(out["submitted_at"], utc=True).astype("datetime64[ns, UTC]")
    return out.reset_index(drop=True)


def read_store(path, strings="object") -> pd.DataFrame:
    """The ratings store (an empty frame in the schema if the file does not exist)."""
    if not Path(path).exists():
        return _typed(empty_ratings(), strings)
    return _typed(nio.read_table(path), strings)


def _key_codes(df: pd.DataFrame) -> np.ndarray:
    """One integer per distinct (task, image_id, concept, rater), numbered in order of first appearance:
    each column hashed once (in Arrow for text), then the pairs of codes, so no row is compared with
    another row by row."""
    code = None
    for c in RATINGS_KEY:
        k, uniques = pd.factorize(df[c], use_na_sentinel=False)
        code = k.astype(np.int64) if code is None else pd.factorize(code * len(uniques) + k)[0].astype(np.int64)
    return code if code is not None else np.zeros(0, dtype=np.int64)


def _first_of_key(code: np.ndarray) -> np.ndarray:
    """Per row, the row where its key first appears (codes are numbered in order of first appearance)."""
    if not code.size:
        return np.zeros(0, dtype=np.int64)
    new = np.r_[True, code[1:] > np.maximum.accumulate(code)[:-1]]
    return np.flatnonzero(new)[code]


def _read_long_csv(path, table: CsvCells) -> pd.DataFrame:
    df = read_ratings(path)
    df = check_ratings(df, source=str(path))
    name = Path(path).name
    times = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    if "submitted_at" in df.columns:
        raw = df["submitted_at"].astype(str).str.strip()
        parsed = pd.to_datetime(raw.where(raw != ""), errors="coerce", utc=True, format="ISO8601")
        bad = (raw != "").to_numpy() & parsed.isna().to_numpy()
        if bad.any():
            line = int(df.index[bad][0])
            raise RatingsImportError(path, f"{raw[bad].iloc[0]!r} is not an ISO 8601 time; write e.g. "
                                     "2026-11-22T18:31:05Z or leave it blank", line=line, column="submitted_at")
        times = parsed.astype("datetime64[ns, UTC]")
    out = pd.DataFrame({
        "task": df["task"].astype(str).str.strip() if "task" in df.columns else "",
        "image_id": df["image_id"].astype(str).str.strip(), "concept": df["concept"].astype(str).str.strip(),
        "rater": df["rater_id"].astype(str).str.strip(), "rating": df["rating"].astype(np.int8),
        "source": f"{name} (csv)", "submitted_at": times,
    })
    out["_line"] = df.index.to_numpy(dtype=np.int64)
    out["_assignment"] = np.arange(len(out))
    out["_slot"] = ""
    return out.reset_index(drop=True)


def _read_parquet(path) -> pd.DataFrame:
    try:
        df = nio.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported with its name
        raise RatingsImportError(path, f"cannot be read as Parquet ({e}); export it again") from None
    missing = [c for c in RATINGS_COLUMNS if c not in df.columns]
    if missing:
        raise RatingsImportError(path, f"missing column(s) {missing}; a ratings Parquet has {list(RATINGS_COLUMNS)}")
    for c in ("task", "image_id", "concept", "rater"):
        bad = df[c].isna().to_numpy() | (df[c].astype(str).str.strip() == "").to_numpy()
        if c != "task" and bad.any():
            raise RatingsImportError(path, f"is empty in {int(bad.sum())} rows (first: row {int(np.flatnonzero(bad)[0]) + 1}); "
                                     f"every rating needs its {c}", row=int(np.flatnonzero(bad)[0]) + 1, column=c)
    r = pd.to_numeric(df["rating"], errors="coerce")
    bad = ~r.isin([0, 1]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RatingsImportError(path, f"{df['rating'].iloc[i]!r} is not a rating; ratings are 0 or 1",
                                 row=i + 1, column="rating")
    df = df.assign(rating=r.astype(np.int8), task=df["task"].fillna(""))
    out = _typed(df)
    out["_line"] = np.arange(1, len(out) + 1)
    out["_assignment"] = np.arange(len(out))
    out["_slot"] = ""
    return out


def read_ratings_file(path) -> tuple[pd.DataFrame, dict]:
    """(rating rows in the schema plus ``_line``, ``_assignment``, ``_slot`` (MTurk's Input.image_<slot>, else ""); counts) of one file.

    The format is chosen from the suffix (``.parquet``) or the CSV header (MTurk's ``AssignmentId`` and
    ``WorkerId``, or the long form's ``image_id,concept,rater_id,rating``)."""
    path = str(path)
    name = Path(path).name
    if path.endswith(".parquet"):
        df = _read_parquet(path)
        return df, {"file": path, "format": "parquet", "rows_read": len(df), "kept": len(df), "rejected": 0,
                    "duplicate": 0}
    try:
        table = CsvCells(path)
    except ImportFormatError as e:
        if isinstance(e, RatingsImportError):
            raise
        raise RatingsImportError(e.path, e.what, line=e.line, row=e.row, column=e.column) from None
    if all(c in table.index for c in MTURK_COLUMNS):
        batch = read_mturk_results(path, table)
        counts = {"file": path, "format": "mturk", "rows_read": batch.rows_read, "kept": batch.kept,
                  "rejected": batch.rejected, "duplicate": batch.duplicate}
        return batch.frame(f"{name} (mturk)"), counts
    if all(c in table.index for c in RATING_COLUMNS):
        try:
            df = _read_long_csv(path, table)
        except RatingsImportError:
            raise
        except ImportFormatError as e:
            raise RatingsImportError(e.path, e.what, line=e.line, row=e.row, column=e.column) from None
        except ValueError as e:  # check_ratings' own messages name the file
            raise RatingsImportError(path, str(e).removeprefix(f"{path}: ")) from None
        return df, {"file": path, "format": "csv", "rows_read": len(df), "kept": len(df), "rejected": 0,
                    "duplicate": 0}
    raise RatingsImportError(path, f"unknown ratings file: the header (line {table.header_line}) names "
                             f"{list(table.index)[:12]}; expected an MTurk batch results CSV ({', '.join(MTURK_COLUMNS)}, "
                             f"Input.*, Answer.*) or the long CSV {','.join(RATING_COLUMNS)}", line=table.header_line)


def _reconciliation_line(c: dict) -> str:
    return (f"{c['file']} ({c['format']}): rows read {c['rows_read']} = kept {c['kept']} + rejected "
            f"{c['rejected']} + duplicate {c['duplicate']}; {c['ratings_added']} rating rows added")


def ingest_ratings(paths: Iterable[str | os.PathLike] | str | os.PathLike, store_path) -> list[dict]:
    """Add the ratings of ``paths`` to the ratings Parquet ``store_path``; return one reconciliation per
    file: {file, format, rows_read, kept, rejected, duplicate, ratings_added, line}.

    All files are read and checked before anything is written, and the store is replaced atomically,
    so an error leaves it as it was. A row all of whose ratings are already stored (or came earlier in
    this call) with the same answers is a duplicate; a differing answer for a stored key is an error.
    If nothing is added the store is not rewritten (created empty if it did not exist)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    store = read_store(store_path, strings="str")
    frames, counts = [store.assign(_file=-1, _line=0, _assignment=-1, _slot="")], []
    for f, path in enumerate(paths):
        df, c = read_ratings_file(path)
        frames.append(df.astype(dict.fromkeys([*_STR, "_slot"], "str")).assign(_file=f))
        counts.append(c)
    allr = pd.concat(frames, ignore_index=True)
    code = _key_codes(allr)
    first = _first_of_key(code)
    key_dup = first != np.arange(len(code))
    rating = allr["rating"].to_numpy()
    # a repeated key must repeat the rating too; the first row that does not is the one reported
    conflict = key_dup & (rating != rating[first])
    if conflict.any():
        i = int(np.flatnonzero(conflict)[0])
        row = allr.iloc[i]
        first = allr.iloc[int(first[i])]
        where = "the store" if first["_file"] < 0 else f"line {first['_line']}"
        raise RatingsImportError(
            counts[int(row["_file"])]["file"],
            f"rater {row['rater']!r} rated image {row['image_id']!r} ({row['concept']!r}, task {row['task']!r}) "
            f"{row['rating']} here but {first['rating']} in {where} ({first['source']}); a rater answers an image "
            "once per task: remove the wrong answer from one file (or the store)",
            line=int(row["_line"]), column=f"Input.image_{row['_slot']}" if row["_slot"] else "rating")
    new = allr["_file"].to_numpy() >= 0
    added = new & ~key_dup
    for f, c in enumerate(counts):
        mine = allr["_file"].to_numpy() == f
        a = allr["_assignment"].to_numpy()[mine]
        n_rows = c["kept"]
        total = np.bincount(a, minlength=n_rows)
        fresh = np.bincount(a, weights=added[mine], minlength=n_rows)
        dup_rows = int(((fresh == 0) & (total > 0)).sum())
        c["kept"] -= dup_rows
        c["duplicate"] += dup_rows
        c["ratings_added"] = int(added[mine].sum())
        assert c["rows_read"] == c["kept"] + c["rejected"] + c["duplicate"], c
        c["line"] = _reconciliation_line(c)
        log.info("%s", c["line"])
    if added.any() or not Path(store_path).exists():
        out = _typed(allr[~key_dup])
        nio.write_table(out, store_path, meta={"table": "ratings", "columns": list(RATINGS_COLUMNS)})
        log.info("%s: %d ratings (%d added)", store_path, len(out), int(added.sum()))
    return counts
