"""What a stage left out, how many and why: never silently, never by emptying the study.

Every stage that drops an image, neuron, concept, class or pair records it in an :class:`Exclusions`
(one row per excluded thing), which

* logs one line per (item, reason) with the count and the first names (the job log), and
* is written beside the stage's output as ``<output stem>.excluded.parquet`` (:func:`sidecar_path`;
  columns ``stage, item, name, reason``; an empty table when nothing was left out) and summarised as
  ``excluded`` = {item: {reason: count}} in the output's provenance metadata.

Summary tables (CSV) carry counts as columns instead (docs/schemas.md).

:func:`finite_columns` is the NaN policy of every stage that reads a matrix (images x neurons or
images x concepts): bad **columns** are excluded and the rows kept. A column that is all NaN, or NaN on
more than ``max_nan_fraction`` of the images that have data, is left out; only rows NaN in every
column (an image the extraction or the concept model skipped) and rows NaN in a kept column are
dropped. A row-wise filter alone would let one all-NaN column remove every image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neuronaudit.io import write_table

log = logging.getLogger(__name__)

__all__ = ["EXCLUDED_COLUMNS", "MAX_NAN_FRACTION", "Exclusions", "sidecar_path", "finite_columns"]

EXCLUDED_COLUMNS = ["stage", "item", "name", "reason"]
#: a neuron / concept column NaN on more than this fraction of the images is excluded (not the images)
MAX_NAN_FRACTION = 0.05
#: how many names a log line lists
LOG_NAMES = 10


def sidecar_path(out: str | os.PathLike) -> Path:
    """``results/.../le.parquet`` -> ``results/.../le.excluded.parquet`` (also for .csv outputs)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.excluded.parquet")


class Exclusions:
    """Records of what one stage left out (module docstring)."""

    def __init__(self, stage: str, logger: logging.Logger | None = None, level: int = logging.WARNING) -> None:
        self.stage = stage
        self.log = logger or log
        self.level = level
        self._frames: list[pd.DataFrame] = []

    def add(self, item: str, names: Sequence, reason: str, level: int | None = None) -> int:
        """Record ``names`` (of kind ``item``: image, neuron, concept, class, pair) left out for ``reason``;
        logs the count and the first names. Returns the count."""
        names = [str(n) for n in np.asarray(names, dtype=object).ravel()]
        if not names:
            return 0
        self._frames.append(pd.DataFrame({"stage": self.stage, "item": item, "name": names, "reason": reason}))
        more = f" (+{len(names) - LOG_NAMES} more)" if len(names) > LOG_NAMES else ""
        self.log.log(self.level if level is None else level, "%s: %d %s(s) left out: %s; e.g. %s%s", self.stage, len(names), item, reason,
                     names[:LOG_NAMES], more)
        return len(names)

    def extend(self, other: Exclusions) -> None:
        self._frames.extend(other._frames)

    def table(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in EXCLUDED_COLUMNS})
        return pd.concat(self._frames, ignore_index=True)[EXCLUDED_COLUMNS]

    def reasons(self, item: str) -> dict[str, str]:
        """{name: reason} of the excluded things of kind ``item`` (the first reason of each)."""
        t = self.table()
        t = t[t["item"] == item].drop_duplicates("name")
        return dict(zip(t["name"], t["reason"], strict=True))

    def count(self, item: str | None = None, reason: str | None = None) -> int:
        t = self.table()
        if item is not None:
            t = t[t["item"] == item]
        if reason is not None:
            t = t[t["reason"] == reason]
        return int(len(t))

    def summary(self) -> dict[str, dict[str, int]]:
        """{item: {reason: count}} for provenance metadata."""
        out: dict[str, dict[str, int]] = {}
        for (item, reason), g in self.table().groupby(["item", "reason"], sort=True):
            out.setdefault(str(item), {})[str(reason)] = int(len(g))
        return out

    def write(self, out: str | os.PathLike) -> Path:
        """Write the sidecar of the stage output ``out`` (always, so a stale one never survives a rerun)."""
        path = sidecar_path(out)
        write_table(self.table(), path, meta={"stage": self.stage, "output": str(out), "excluded": self.summary()})
        return path

    def __len__(self) -> int:
        return sum(len(f) for f in self._frames)


def finite_columns(
    x: np.ndarray,
    col_names: Sequence,
    row_names: Sequence,
    excl: Exclusions,
    *,
    col_item: str = "neuron",
    what: str = "",
    max_nan_fraction: float = MAX_NAN_FRACTION,
    drop_constant: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(row mask, column mask) of ``x`` (rows x columns) after the NaN policy of the module docstring.

    In order: columns with no finite value; rows with no finite value in the remaining columns
    (reason "no <what> values"); columns NaN on more than ``max_nan_fraction`` of the remaining rows;
    rows NaN in a kept column; with ``drop_constant``, columns constant on the kept rows. Each is
    recorded in ``excl``. Vectorised over columns.
    """
    x = np.asarray(x)
    n, k = x.shape
    what = what or col_item
    finite = np.isfinite(x)
    cols = finite.any(axis=0)
    excl.add(col_item, np.asarray(col_names, dtype=object)[~cols], f"{what}: all NaN")
    rows = np.ones(n, dtype=bool)
    if cols.any():
        rows = finite[:, cols].any(axis=1)
        excl.add("image", np.asarray(row_names, dtype=object)[~rows], f"no finite {what} value (image skipped)")
    if rows.any():
        nan_frac = 1.0 - finite[rows].mean(axis=0)
        mostly = cols & (nan_frac > max_nan_fraction)
        excl.add(col_item, np.asarray(col_names, dtype=object)[mostly],
                 f"{what}: NaN on more than {max_nan_fraction:g} of the images")
        cols &= ~mostly
        partial = rows & ~finite[:, cols].all(axis=1)
        excl.add("image", np.asarray(row_names, dtype=object)[partial], f"NaN in a kept {what} column")
        rows &= ~partial
    if drop_constant and rows.any():
        sub = x[rows][:, cols]
        const = np.zeros(k, dtype=bool)
        const[np.flatnonzero(cols)] = (sub.max(axis=0) == sub.min(axis=0)) if len(sub) else True
        excl.add(col_item, np.asarray(col_names, dtype=object)[const], f"{what}: constant on the images")
        cols &= ~const
    return rows, cols
