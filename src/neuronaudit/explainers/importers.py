"""Import explanations made elsewhere into the normalised explanation table, and export them back.

SPEC section 6 (Network Dissection, MILAN, DnD, MAIA, CCE, FALCON are ingested from files).

The normalised explanation table (one row per (neuron, method)):

============  =======  =====================================================================
column        dtype    meaning
============  =======  =====================================================================
neuron        int      unit index in the layer
method        str      explanation method, e.g. ``clip_dissect``, ``le_label``, ``invert_l3``
explanation   str      ``Explanation.to_text()`` of the structured explanation
structured    str      JSON of the explanation dict (``{"kind": "simple", "concept": ...}`` etc.)
length        int      number of distinct concepts (``Explanation.length``)
params        str      JSON of the parameters / provenance (source file, layer, defaults)
source_score  float    optional: the method's own score (SoftWPMI, val correlation, AUC, ...)
============  =======  =====================================================================

CSV formats read and written (header row required, extra columns ignored):

* CLIP-Dissect style (also ND / MILAN / DnD / MAIA): ``layer,unit,description,similarity``
* Linear-Explanations wide: ``unit,weight0,concept0,weight1,concept1,...,bias``; unused slots
  are empty or hold ``0`` in both the weight and the concept column (the peer pads with 0).
* Compositional: ``unit,formula`` (AND / OR / NOT, parentheses, as parsed by ``parse_formula``)
* Clustered compositional (CCE): ``unit,cluster,lower,upper,formula``, one row per cluster.

A malformed row raises ``ValueError`` naming the file, the 1-based data row and the column; no row is
dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "TABLE_COLUMNS",
    "explanation_table",
    "read_clip_dissect_csv",
    "read_linear_csv",
    "read_compositional_csv",
    "read_clustered_csv",
    "read_explanations",
    "write_clip_dissect_csv",
    "write_linear_csv",
    "write_compositional_csv",
    "write_clustered_csv",
]

TABLE_COLUMNS = ["neuron", "method", "explanation", "structured", "length", "params", "source_score"]


def _explanation_cls():
    from neuronaudit.explanations import Explanation

    return Explanation


def explanation_table(
    neurons: Iterable[int],
    method: str | Sequence[str],
    structured: Sequence[dict],
    params: str | dict | Sequence[str] = "{}",
    source_score=None,
) -> pd.DataFrame:
    """Build the normalised explanation table from explanation dicts (schema in the module docstring)."""
    Explanation = _explanation_cls()
    neurons = np.asarray(list(neurons), dtype=np.int64)
    if len(neurons) != len(structured):
        raise ValueError(f"{len(neurons)} neurons but {len(structured)} explanations")
    texts, lengths, blobs = [], [], []
    for d in structured:
        e = Explanation.from_dict(d)
        texts.append(e.to_text())
        lengths.append(int(e.length))
        blobs.append(json.dumps(e.to_dict(), sort_keys=True))
    if isinstance(params, dict):
        params = json.dumps(params, sort_keys=True)
    n = len(neurons)
    df = pd.DataFrame(
        {
            "neuron": neurons,
            "method": [method] * n if isinstance(method, str) else list(method),
            "explanation": texts,
            "structured": blobs,
            "length": np.asarray(lengths, dtype=np.int64),
            "params": [params] * n if isinstance(params, str) else list(params),
            "source_score": (
                np.full(n, np.nan) if source_score is None else np.asarray(source_score, dtype=float)
            ),
        }
    )
    return df[TABLE_COLUMNS]


# --------------------------------------------------------------------------------------------- reading


class _Reader:
    """Reads a CSV as strings and formats errors as ``<file>: row <i>, column '<col>': <what>``."""

    def __init__(self, path, required: Sequence[str]):
        self.path = str(path)
        try:
            self.df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except pd.errors.EmptyDataError as err:
            raise ValueError(f"{self.path}: file is empty (a header row is required)") from err
        self.df.columns = [c.strip() for c in self.df.columns]
        missing = [c for c in required if c not in self.df.columns]
        if missing:
            raise ValueError(f"{self.path}: missing column(s) {missing}; found {list(self.df.columns)}")

    def error(self, row: int, column: str, what: str) -> ValueError:
        return ValueError(f"{self.path}: row {row + 1}, column '{column}': {what}")

    def text(self, row: int, column: str, allow_empty: bool = False) -> str:
        value = self.df[column].iat[row].strip()
        if not value and not allow_empty:
            raise self.error(row, column, "is empty")
        return value

    def number(self, row: int, column: str, kind=float, allow_empty: bool = False):
        raw = self.df[column].iat[row].strip()
        if not raw:
            if allow_empty:
                return None
            raise self.error(row, column, "is empty, expected a number")
        try:
            value = kind(float(raw)) if kind is int else kind(raw)
        except ValueError:
            raise self.error(row, column, f"{raw!r} is not a valid {kind.__name__}") from None
        if kind is int and float(raw) != int(float(raw)):
            raise self.error(row, column, f"{raw!r} is not an integer")
        if kind is float and not math.isfinite(value):
            raise self.error(row, column, f"{raw!r} is not finite")
        return value

    def __len__(self):
        return len(self.df)


def _params(reader: _Reader, extra: dict | None = None) -> str:
    return json.dumps({"source": os.path.basename(reader.path), **(extra or {})}, sort_keys=True)


def _check_formula(reader: _Reader, row: int, column: str, text: str) -> str:
    from neuronaudit.explanations import parse_formula

    try:
        parse_formula(text)
    except Exception as err:  # the parser's own message says what is wrong
        raise reader.error(row, column, f"cannot parse formula {text!r}: {err}") from None
    return text


def read_clip_dissect_csv(path, method: str = "clip_dissect") -> pd.DataFrame:
    """``layer,unit,description,similarity`` -> simple explanations; ``similarity`` -> source_score.

    ``layer`` and ``similarity`` may be absent; ``similarity`` may be empty (source_score NaN).
    """
    r = _Reader(path, ["unit", "description"])
    has_sim = "similarity" in r.df.columns
    neurons, dicts, scores, params = [], [], [], []
    for i in range(len(r)):
        neurons.append(r.number(i, "unit", int))
        dicts.append({"kind": "simple", "concept": r.text(i, "description")})
        s = r.number(i, "similarity", float, allow_empty=True) if has_sim else None
        scores.append(np.nan if s is None else s)
        layer = r.df["layer"].iat[i].strip() if "layer" in r.df.columns else ""
        params.append(_params(r, {"layer": layer} if layer else None))
    _check_unique(r, neurons)
    return explanation_table(neurons, method, dicts, params, scores)


_WEIGHT_COL = re.compile(r"^weight(\d+)$")
_PAD = {"", "0", "0.0", "nan", "NaN", "None"}


def read_linear_csv(path, method: str = "linear") -> pd.DataFrame:
    """Linear-Explanations wide CSV ``unit,weight0,concept0,...,bias`` -> linear explanations.

    A slot whose concept is empty or ``0`` is padding and its weight must be empty or 0. A column
    ``val correlation`` (the peer's output) becomes source_score.
    """
    r = _Reader(path, ["unit", "bias"])
    slots = sorted(int(m.group(1)) for c in r.df.columns if (m := _WEIGHT_COL.match(c)))
    for j in slots:
        if f"concept{j}" not in r.df.columns:
            raise ValueError(f"{r.path}: column 'weight{j}' has no matching 'concept{j}' column")
    for c in r.df.columns:
        if c.startswith("concept") and c[7:].isdigit() and int(c[7:]) not in slots:
            raise ValueError(f"{r.path}: column '{c}' has no matching 'weight{c[7:]}' column")
    score_col = next((c for c in ("val correlation", "val_correlation", "source_score") if c in r.df), None)
    neurons, dicts, scores, params = [], [], [], []
    for i in range(len(r)):
        neurons.append(r.number(i, "unit", int))
        terms = []
        for j in slots:
            concept = r.text(i, f"concept{j}", allow_empty=True)
            if concept in _PAD:
                w = r.number(i, f"weight{j}", float, allow_empty=True)
                if w not in (None, 0.0):
                    raise r.error(i, f"concept{j}", f"is empty but weight{j} is {w}")
                continue
            w = r.number(i, f"weight{j}", float)
            terms.append([w, concept])
        if not terms:
            raise r.error(i, "concept0", "row has no concept (every concept column is empty or 0)")
        dicts.append({"kind": "linear", "terms": terms, "bias": r.number(i, "bias", float)})
        s = r.number(i, score_col, float, allow_empty=True) if score_col else None
        scores.append(np.nan if s is None else s)
        layer = r.df["layer"].iat[i].strip() if "layer" in r.df.columns else ""
        params.append(_params(r, {"layer": layer} if layer else None))
    _check_unique(r, neurons)
    return explanation_table(neurons, method, dicts, params, scores)


def read_compositional_csv(path, method: str = "compositional") -> pd.DataFrame:
    """``unit,formula`` -> compositional explanations (optional ``source_score`` column)."""
    r = _Reader(path, ["unit", "formula"])
    has_score = "source_score" in r.df.columns
    neurons, dicts, scores = [], [], []
    for i in range(len(r)):
        neurons.append(r.number(i, "unit", int))
        text = _check_formula(r, i, "formula", r.text(i, "formula"))
        dicts.append({"kind": "compositional", "formula": text})
        s = r.number(i, "source_score", float, allow_empty=True) if has_score else None
        scores.append(np.nan if s is None else s)
    _check_unique(r, neurons)
    return explanation_table(neurons, method, dicts, _params(r), scores)


def read_clustered_csv(path, method: str = "cce") -> pd.DataFrame:
    """``unit,cluster,lower,upper,formula`` -> clustered compositional explanations.

    Rows of one unit are gathered and ordered by ``cluster``; ``lower <= upper`` is required and a
    (unit, cluster) pair may appear once.
    """
    r = _Reader(path, ["unit", "cluster", "lower", "upper", "formula"])
    clusters: dict[int, list] = {}
    seen: dict[tuple[int, int], int] = {}
    for i in range(len(r)):
        unit = r.number(i, "unit", int)
        cluster = r.number(i, "cluster", int)
        if (unit, cluster) in seen:
            raise r.error(i, "cluster", f"cluster {cluster} of unit {unit} already given in row {seen[unit, cluster] + 1}")
        seen[unit, cluster] = i
        lower, upper = r.number(i, "lower", float), r.number(i, "upper", float)
        if lower > upper:
            raise r.error(i, "upper", f"upper bound {upper} is below lower bound {lower}")
        text = _check_formula(r, i, "formula", r.text(i, "formula"))
        clusters.setdefault(unit, []).append((cluster, {"lower": lower, "upper": upper, "formula": text}))
    neurons = list(clusters)
    dicts = [{"kind": "clustered", "clusters": [c for _, c in sorted(clusters[u], key=lambda t: t[0])]} for u in neurons]
    return explanation_table(neurons, method, dicts, _params(r))


def _check_unique(r: _Reader, neurons: list[int]) -> None:
    first: dict[int, int] = {}
    for i, u in enumerate(neurons):
        if u in first:
            raise r.error(i, "unit", f"unit {u} already explained in row {first[u] + 1}")
        first[u] = i


_READERS = {
    "clip_dissect": read_clip_dissect_csv,
    "linear": read_linear_csv,
    "compositional": read_compositional_csv,
    "clustered": read_clustered_csv,
}


def read_explanations(path, fmt: str, method: str | None = None) -> pd.DataFrame:
    """Read ``path`` in format ``fmt`` (clip_dissect | linear | compositional | clustered)."""
    if fmt not in _READERS:
        raise ValueError(f"unknown explanation CSV format {fmt!r}; expected one of {sorted(_READERS)}")
    return _READERS[fmt](path) if method is None else _READERS[fmt](path, method=method)


# --------------------------------------------------------------------------------------------- writing


def _dicts(table: pd.DataFrame, kind: str) -> list[tuple[int, dict, float]]:
    out = []
    for neuron, blob, score in zip(table["neuron"], table["structured"], _scores(table), strict=True):
        d = json.loads(blob)
        if d.get("kind") != kind:
            raise ValueError(f"neuron {neuron}: explanation kind {d.get('kind')!r} cannot be written as {kind!r}")
        out.append((int(neuron), d, score))
    return out


def _scores(table: pd.DataFrame):
    if "source_score" in table.columns:
        return table["source_score"].astype(float).tolist()
    return [math.nan] * len(table)


def _fmt(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def write_clip_dissect_csv(table: pd.DataFrame, path, layer: str = "") -> None:
    """Write simple explanations as ``layer,unit,description,similarity`` (similarity = source_score)."""
    rows = [[layer, n, d["concept"], _fmt(s)] for n, d, s in _dicts(table, "simple")]
    _write(path, ["layer", "unit", "description", "similarity"], rows)


def write_linear_csv(table: pd.DataFrame, path, max_length: int | None = None) -> None:
    """Write linear explanations as ``unit,weight0,concept0,...,bias`` padded with empty cells."""
    items = _dicts(table, "linear")
    width = max([len(d["terms"]) for _, d, _ in items] + [max_length or 0, 1])
    header = ["unit"] + [c for j in range(width) for c in (f"weight{j}", f"concept{j}")] + ["bias", "source_score"]
    rows = []
    for n, d, s in items:
        cells = [n]
        for j in range(width):
            cells += [_fmt(d["terms"][j][0]), d["terms"][j][1]] if j < len(d["terms"]) else ["", ""]
        rows.append(cells + [_fmt(d.get("bias", 0.0)), _fmt(s)])
    # the reader takes source_score from "val correlation" / "source_score"
    _write(path, header, rows)


def write_compositional_csv(table: pd.DataFrame, path) -> None:
    """Write compositional explanations as ``unit,formula,source_score``."""
    rows = [[n, d["formula"], _fmt(s)] for n, d, s in _dicts(table, "compositional")]
    _write(path, ["unit", "formula", "source_score"], rows)


def write_clustered_csv(table: pd.DataFrame, path) -> None:
    """Write clustered compositional explanations as ``unit,cluster,lower,upper,formula``."""
    rows = [
        [n, j, _fmt(c["lower"]), _fmt(c["upper"]), c["formula"]]
        for n, d, _ in _dicts(table, "clustered")
        for j, c in enumerate(d["clusters"])
    ]
    _write(path, ["unit", "cluster", "lower", "upper", "formula"], rows)


def _write(path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
