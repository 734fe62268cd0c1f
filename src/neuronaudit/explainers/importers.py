"""Import explanations made elsewhere into the normalised explanation table, and export them back.

SPEC section 6 (Network Dissection, MILAN, DnD, MAIA, CCE, FALCON are ingested from files).

The normalised explanation table (one row per (neuron, method); defined in
:mod:`neuronaudit.explanations` as ``TABLE_COLUMNS`` / ``explanation_table``, re-exported here):

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

Files are read with the ``csv`` module as UTF-8 text (no index-column or type guessing). A malformed file
raises :class:`ImportFormatError` (a ``ValueError``) naming the file, the 1-based line of the file, the
1-based data row and the column, and saying what to do; no row is dropped silently. A row needs exactly
as many fields as the header (quote a value that contains a comma). A file whose ``layer`` column
names several layers is read for the requested layer(s) and the other layers' rows are counted; a
header-only file gives an empty table and a warning.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Sequence

import pandas as pd

from neuronaudit.explanations import TABLE_COLUMNS, explanation_table, parse_formula
from neuronaudit.io import atomic_path

__all__ = [
    "TABLE_COLUMNS",
    "CsvTable",
    "ImportFormatError",
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

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- reading


class ImportFormatError(ValueError):
    """A malformed input file. The message (and the attributes) name the file and, where there is one,
    the 1-based ``line`` of the file, the 1-based data ``row`` (header and blank lines not counted) and
    the ``column``, then say what is wrong and what to do."""

    def __init__(self, path, what: str, *, line: int | None = None, row: int | None = None,
                 column: str | None = None):
        self.path, self.what, self.line, self.row, self.column = str(path), what, line, row, column
        where = []
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"data row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{self.path}: {', '.join(where) + ': ' if where else ''}{what}")


_QUOTE_ADVICE = ('enclose a value that contains a comma, a double quote or a line break in double quotes, '
                 'with each inner quote doubled (e.g. "dog, ""big"" one")')
_INT_RE = re.compile(r"[+-]?\d+")
_NUM_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NONFINITE = {"nan", "inf", "infinity"}
_INT64_MAX = 2**63 - 1


def _scan_field(text: str) -> int | None:
    """0-based field at which a CSV record (from the start of ``text``) breaks the quoting rules."""
    field, i, n, start = 0, 0, len(text), True
    while i < n:
        ch = text[i]
        if ch == "\0":
            return field
        if start and ch == " ":
            i += 1
            continue
        if start and ch == '"':
            i += 1
            while True:
                if i >= n:
                    return field  # unterminated quote
                if text[i] == "\0":
                    return field
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        i += 2
                        continue
                    break
                i += 1
            i += 1
            if i < n and text[i] not in ",\r\n":
                return field  # text after the closing quote
            continue
        start = False
        if ch == ",":
            field, start = field + 1, True
        elif ch in "\r\n":
            return None
        i += 1
    return None


class CsvTable:
    """A CSV file read as text: a header row, then data rows of strings, each with its line number.

    Parsed with the ``csv`` module (no type or index-column guessing): UTF-8 (a BOM is allowed), comma
    separated, double-quote quoting, blank lines skipped. Every data row must have exactly as many fields
    as the header; empty header cells name ignored columns (e.g. a pandas index column).
    """

    def __init__(self, path, required: Sequence[str] = (), *, text_columns: Sequence[str] = ()):
        self.path = str(path)
        raw = open(path, "rb").read()  # noqa: SIM115 - FileNotFoundError names the path
        text = self._decode(raw)
        header_line, self.columns = None, []
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        records = self._records(text)
        for line, fields in records:
            if fields:
                header_line, self.columns = line, [f.strip() for f in fields]
                break
        if header_line is None:
            raise ImportFormatError(self.path, "file is empty; a header row is required "
                                    f"(columns {', '.join(required)})")
        self.header_line = header_line
        self.index: dict[str, int] = {}
        for j, c in enumerate(self.columns):
            if not c:
                continue
            if c in self.index:
                raise ImportFormatError(self.path, f"the header names column '{c}' twice (fields "
                                        f"{self.index[c] + 1} and {j + 1}); rename or remove one",
                                        line=header_line, column=c)
            self.index[c] = j
        missing = [c for c in required if c not in self.index]
        if missing:
            raise ImportFormatError(self.path, f"missing column(s) {missing}; found {list(self.index)} in the "
                                    f"header (line {header_line}); the header must name {list(required)}")
        n = len(self.columns)
        named = ", ".join(c or "''" for c in self.columns)
        culprit = next((c for c in self.columns if c in text_columns), None)
        for line, fields in records:
            if not fields:
                continue
            if len(fields) != n:
                row = len(self.rows) + 1
                if len(fields) > n:
                    where = f"an unquoted comma in '{culprit}' or a later column?" if culprit else "extra fields?"
                    raise ImportFormatError(
                        self.path,
                        f"the row has {len(fields)} fields but the header names {n} ({named}): {where} "
                        f"{_QUOTE_ADVICE}, or remove the extra field(s) (an index column needs its own "
                        "header cell)", line=line, row=row,
                        column=culprit or self.columns[-1] or f"field {n}")
                raise ImportFormatError(
                    self.path, f"missing: the row has {len(fields)} fields but the header names {n} ({named}); "
                    "give every row all columns (an empty cell is written as nothing between two commas)",
                    line=line, row=row, column=self.columns[len(fields)] or f"field {len(fields) + 1}")
            self.rows.append(fields)
            self.lines.append(line)

    # -- reading -----------------------------------------------------------------------------------
    def _decode(self, raw: bytes) -> str:
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise ImportFormatError(self.path, "the file is UTF-16 encoded; save it as UTF-8 (e.g. `iconv -f utf-16 "
                                    "-t utf-8 in.csv > out.csv`)", line=1)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            byte = raw[err.start:err.start + 1].hex()
            line = raw.count(b"\n", 0, err.start) + 1
            row = column = None
            try:  # find the cell holding the byte (decoded to a lone surrogate)
                text = raw.decode("utf-8-sig", errors="surrogateescape")
                line, row, column = self._locate(text, lambda f: any("\udc80" <= ch <= "\udcff" for ch in f)) or (
                    line, row, column)
            except ImportFormatError:
                pass
            raise ImportFormatError(
                self.path, f"byte 0x{byte} is not valid UTF-8 (the file looks Latin-1 or Windows-1252 "
                "encoded); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)",
                line=line, row=row, column=column) from None
        if "\0" in text:
            line, row, column = self._locate(text, lambda f: "\0" in f) or (
                text.count("\n", 0, text.index("\0")) + 1, None, None)
            raise ImportFormatError(self.path, "contains a NUL byte: is this a CSV text file? save it as UTF-8 "
                                    "text", line=line, row=row, column=column)
        return text

    def _locate(self, text: str, bad) -> tuple[int, int | None, str] | None:
        """(line, data row or None for the header, column) of the first cell where ``bad(cell)``."""
        header, nrow = None, 0
        for line, fields in self._records(text):
            if not fields:
                continue
            if header is None:
                header = [f.strip() for f in fields]
            else:
                nrow += 1
            j = next((j for j, f in enumerate(fields) if bad(f)), None)
            if j is not None:
                return line, nrow or None, header[j] if j < len(header) and header[j] else f"field {j + 1}"
        return None

    def _records(self, text: str):
        """Yield (first line number, fields) per CSV record; quoting errors name the line and field."""
        reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
        last = nonempty = 0
        header = None
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                rest = "".join(io.StringIO(text, newline="").readlines()[last:])
                j = _scan_field(rest)
                column = None
                if j is not None:
                    column = header[j].strip() if header and j < len(header) and header[j].strip() else f"field {j + 1}"
                what = "contains a NUL byte; is this a CSV text file?" if "NUL" in str(err) else (
                    f"malformed quoting ({err}); {_QUOTE_ADVICE}")
                raise ImportFormatError(self.path, what, line=last + 1, row=nonempty or None, column=column) from None
            start, last = last + 1, reader.line_num
            if fields:
                nonempty += 1
                if header is None:
                    header = fields
            yield start, fields

    # -- cells -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def has(self, column: str | None) -> bool:
        return column is not None and column in self.index

    def error(self, i: int, column: str | None, what: str) -> ImportFormatError:
        return ImportFormatError(self.path, what, line=self.lines[i], row=i + 1, column=column)

    def text(self, i: int, column: str, allow_empty: bool = False) -> str:
        value = self.rows[i][self.index[column]].strip()
        if not value and not allow_empty:
            raise self.error(i, column, "is empty")
        return value

    def integer(self, i: int, column: str, minimum: int | None = None) -> int:
        raw = self.rows[i][self.index[column]].strip()
        if not raw:
            raise self.error(i, column, "is empty, expected an integer")
        if _INT_RE.fullmatch(raw):
            value = int(raw)
        elif _NUM_RE.fullmatch(raw):
            x = float(raw)
            if not math.isfinite(x):
                raise self.error(i, column, f"{raw!r} is too large (it overflows a 64-bit float)")
            if not x.is_integer():
                raise self.error(i, column, f"{raw!r} is not an integer")
            value = int(x)
        else:
            raise self.error(i, column, f"{raw!r} is not a valid int")
        if minimum is not None and value < minimum:
            raise self.error(i, column, f"{raw!r} is below {minimum} (units are 0-based indices)")
        if abs(value) > _INT64_MAX:
            raise self.error(i, column, f"{raw!r} is out of range (at most {_INT64_MAX})")
        return value

    def number(self, i: int, column: str, allow_empty: bool = False) -> float | None:
        raw = self.rows[i][self.index[column]].strip()
        if not raw:
            if allow_empty:
                return None
            raise self.error(i, column, "is empty, expected a number")
        if not _NUM_RE.fullmatch(raw):
            if raw.lower().lstrip("+-") in _NONFINITE:
                raise self.error(i, column, f"{raw!r} is not finite; give a finite number"
                                 + (" or leave the cell empty" if allow_empty else ""))
            raise self.error(i, column, f"{raw!r} is not a valid float")
        value = float(raw)
        if not math.isfinite(value):
            raise self.error(i, column, f"{raw!r} is not finite (it overflows a 64-bit float); "
                             "give a number of magnitude below 1.8e308")
        return value


def _layers(t: CsvTable) -> list[str]:
    """The ``layer`` cell of every row ("" where the file has no layer column); mixed empty and named
    layers are an error."""
    if not t.has("layer"):
        return [""] * len(t)
    layers = [t.text(i, "layer", allow_empty=True) for i in range(len(t))]
    named = next((x for x in layers if x), None)
    if named is not None:
        for i, x in enumerate(layers):
            if not x:
                raise t.error(i, "layer", f"is empty but other rows name a layer (e.g. {named!r}); give every "
                                          "row its layer, or leave the column empty in every row")
    return layers


def _check_unique(t: CsvTable, items: Sequence[tuple]) -> None:
    """A unit may be explained once per layer (items: (unit, layer, dict, score, data row index))."""
    first: dict = {}
    for u, layer, _, _, i in items:
        if (layer, u) in first:
            k = first[layer, u]
            where = f" of layer {layer!r}" if layer else ""
            raise t.error(i, "unit", f"unit {u}{where} already explained in data row {k + 1} (line {t.lines[k]}); "
                                     "give each unit one row")
        first[layer, u] = i


def _select(t: CsvTable, row_layers: list[str], layers, method: str) -> set[str] | None:
    """The layer names to import (None: every row) when the file names layers and ``layers`` is given.

    Rows of other layers are counted (``t.report``) and logged; a file with no row for ``layers`` is an
    error; a header-only file gives a warning (the method stays, with 0 explanations).
    """
    n = len(t)
    t.report = {"file": t.path, "rows": n, "imported": n, "other_layers": {}}
    if n == 0:
        log.warning("%s: the file has a header but no data rows; %s gets 0 explanations", t.path, method)
        return None
    if layers is None or not row_layers[0]:
        return None
    wanted = {str(x) for x in layers if x}
    other: dict[str, int] = {}
    for x in row_layers:
        if x not in wanted:
            other[x] = other.get(x, 0) + 1
    kept = n - sum(other.values())
    if not kept:
        raise ImportFormatError(
            t.path, f"no row for layer {' or '.join(repr(x) for x in sorted(wanted))}; the file names "
            f"layers {sorted(other)}; use those names as the model's layer keys or module paths, or "
            "give a file per layer ({layer} in the path)", column="layer")
    t.report.update(imported=kept, other_layers=dict(sorted(other.items())))
    log.info("%s: %s imports the %d rows of layer %s; left out %d rows of other layers: %s", t.path, method,
             kept, "/".join(sorted(wanted)), n - kept, ", ".join(f"{k} ({v})" for k, v in sorted(other.items())))
    return wanted


def _params(t: CsvTable, layer: str) -> str:
    return json.dumps({"source": os.path.basename(t.path), **({"layer": layer} if layer else {})}, sort_keys=True)


def _check_formula(t: CsvTable, i: int, column: str) -> str:
    text = t.text(i, column)
    try:
        parse_formula(text)
    except ValueError as err:  # the parser's own message says what is wrong and where
        raise t.error(i, column, f"cannot parse formula: {err}") from None
    return text


def _finish(t: CsvTable, items: list[tuple], row_layers: list[str], layers, method: str) -> pd.DataFrame:
    """items: (unit, layer, structured dict, source score, data row index) -> the table of the kept items."""
    _check_unique(t, items)
    wanted = _select(t, row_layers, layers, method)
    kept = items if wanted is None else [x for x in items if x[1] in wanted]
    table = explanation_table([x[0] for x in kept], method, [x[2] for x in kept],
                              [_params(t, x[1]) for x in kept], [x[3] for x in kept])
    table.attrs["import_report"] = t.report
    return table


def _score(t: CsvTable, i: int, column: str | None) -> float:
    s = t.number(i, column, allow_empty=True) if t.has(column) else None
    return math.nan if s is None else s


def read_clip_dissect_csv(path, method: str = "clip_dissect", layers=None) -> pd.DataFrame:
    """``layer,unit,description,similarity`` -> simple explanations; ``similarity`` -> source_score.

    ``layer`` and ``similarity`` may be absent; ``similarity`` may be empty (source_score NaN). With
    ``layers`` (names of one layer, e.g. its key and module path) a file whose ``layer`` column names
    layers keeps that layer's rows; the rest are counted (``table.attrs["import_report"]``) and logged.
    """
    t = CsvTable(path, ["unit", "description"], text_columns=["description"])
    file_layers = _layers(t)
    rows = []
    for i in range(len(t)):
        rows.append((t.integer(i, "unit", 0), file_layers[i], {"kind": "simple", "concept": t.text(i, "description")},
                     _score(t, i, "similarity"), i))
    return _finish(t, rows, file_layers, layers, method)


_WEIGHT_COL = re.compile(r"^weight(\d+)$")
_CONCEPT_COL = re.compile(r"^concept(\d+)$")
_PAD = {"", "0", "0.0", "nan", "NaN", "None"}


def read_linear_csv(path, method: str = "linear", layers=None) -> pd.DataFrame:
    """Linear-Explanations wide CSV ``unit,weight0,concept0,...,bias`` -> linear explanations.

    A slot whose concept is empty or ``0`` is padding and its weight must be empty or 0. A column
    ``val correlation`` (the peer's output) becomes source_score. ``layers`` as in
    :func:`read_clip_dissect_csv`.
    """
    t = CsvTable(path, ["unit", "bias"], text_columns=[])
    slots = sorted(int(m.group(1)) for c in t.index if (m := _WEIGHT_COL.match(c)))
    for j in slots:
        if f"concept{j}" not in t.index:
            raise ImportFormatError(t.path, f"column 'weight{j}' has no matching 'concept{j}' column",
                                    line=t.header_line, column=f"weight{j}")
    for c in t.index:
        if (m := _CONCEPT_COL.match(c)) and int(m.group(1)) not in slots:
            raise ImportFormatError(t.path, f"column '{c}' has no matching 'weight{m.group(1)}' column",
                                    line=t.header_line, column=c)
    if not slots:
        raise ImportFormatError(t.path, "no weight<j>/concept<j> columns (weight0, concept0, ...)",
                                line=t.header_line)
    score_col = next((c for c in ("val correlation", "val_correlation", "source_score") if c in t.index), None)
    file_layers = _layers(t)
    rows = []
    for i in range(len(t)):
        unit = t.integer(i, "unit", 0)
        terms = []
        for j in slots:
            concept = t.text(i, f"concept{j}", allow_empty=True)
            if concept in _PAD:
                w = t.number(i, f"weight{j}", allow_empty=True)
                if w not in (None, 0.0):
                    raise t.error(i, f"concept{j}", f"is empty but weight{j} is {w}; give the concept or "
                                                    "leave both cells empty")
                continue
            terms.append([t.number(i, f"weight{j}"), concept])
        if not terms:
            raise t.error(i, f"concept{slots[0]}", "row has no concept (every concept column is empty or 0)")
        rows.append((unit, file_layers[i], {"kind": "linear", "terms": terms, "bias": t.number(i, "bias")},
                     _score(t, i, score_col), i))
    return _finish(t, rows, file_layers, layers, method)


def read_compositional_csv(path, method: str = "compositional", layers=None) -> pd.DataFrame:
    """``unit,formula`` -> compositional explanations (optional ``source_score`` and ``layer`` columns)."""
    t = CsvTable(path, ["unit", "formula"], text_columns=["formula"])
    file_layers = _layers(t)
    rows = []
    for i in range(len(t)):
        rows.append((t.integer(i, "unit", 0), file_layers[i],
                     {"kind": "compositional", "formula": _check_formula(t, i, "formula")},
                     _score(t, i, "source_score"), i))
    return _finish(t, rows, file_layers, layers, method)


def read_clustered_csv(path, method: str = "cce", layers=None) -> pd.DataFrame:
    """``unit,cluster,lower,upper,formula`` -> clustered compositional explanations.

    Rows of one unit are gathered and ordered by ``cluster``; ``lower <= upper`` is required and a
    (unit, cluster) pair may appear once (per layer, with a ``layer`` column).
    """
    t = CsvTable(path, ["unit", "cluster", "lower", "upper", "formula"], text_columns=["formula"])
    file_layers = _layers(t)
    clusters: dict[tuple[str, int], list] = {}
    seen: dict[tuple[str, int, int], int] = {}
    first_row: dict[tuple[str, int], int] = {}
    for i in range(len(t)):
        unit, layer = t.integer(i, "unit", 0), file_layers[i]
        cluster = t.integer(i, "cluster")
        if (layer, unit, cluster) in seen:
            k = seen[layer, unit, cluster]
            raise t.error(i, "cluster", f"cluster {cluster} of unit {unit} already given in data row {k + 1} "
                                        f"(line {t.lines[k]})")
        seen[layer, unit, cluster] = i
        lower, upper = t.number(i, "lower"), t.number(i, "upper")
        if lower > upper:
            raise t.error(i, "upper", f"upper bound {upper} is below lower bound {lower}")
        text = _check_formula(t, i, "formula")
        first_row.setdefault((layer, unit), i)
        clusters.setdefault((layer, unit), []).append((cluster, {"lower": lower, "upper": upper, "formula": text}))
    items = [(unit, layer, {"kind": "clustered", "clusters": [c for _, c in sorted(cl, key=lambda x: x[0])]},
              math.nan, first_row[layer, unit]) for (layer, unit), cl in clusters.items()]
    return _finish(t, items, file_layers, layers, method)
_READERS = {
    "clip_dissect": read_clip_dissect_csv,
    "linear": read_linear_csv,
    "compositional": read_compositional_csv,
    "clustered": read_clustered_csv,
}


def read_explanations(path, fmt: str, method: str | None = None, layers=None) -> pd.DataFrame:
    """Read ``path`` in format ``fmt`` (clip_dissect | linear | compositional | clustered).

    ``layers``: the names one layer goes by (its key, its module path); when given and the file's
    ``layer`` column names layers, only that layer's rows are imported and the others are counted in
    ``table.attrs["import_report"]`` (and logged). Errors are :class:`ImportFormatError`.
    """
    if fmt not in _READERS:
        raise ValueError(f"unknown explanation CSV format {fmt!r}; expected one of {sorted(_READERS)}")
    kwargs = {"layers": layers} if method is None else {"layers": layers, "method": method}
    return _READERS[fmt](path, **kwargs)


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
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
