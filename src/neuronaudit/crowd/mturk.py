"""Read Amazon Mechanical Turk batch results CSVs (issue 9, item 3) into rating rows.

MTurk's "Download CSV" of a batch has one row per assignment (one worker doing one HIT):

* ``HITId``, ``AssignmentId``, ``WorkerId``, ``AssignmentStatus`` (``Submitted``, ``Approved`` or
  ``Rejected``), ``AcceptTime``, ``SubmitTime`` (MTurk writes e.g. ``Sun Nov 22 10:31:05 PST 2026``;
  ISO 8601 is also accepted; a blank cell gives a null ``submitted_at``), and many other columns that
  are ignored;
* ``Input.<name>``: the batch input CSV's columns, i.e. the task HTML's ``${name}`` variables. The
  input variables of a neuronaudit task are

  - ``Input.task_id``: the task's id (the ``task`` column of the ratings; if the column is absent, the
    HITId is used);
  - ``Input.concept``: the concept shown ("Select all the images that contain: <concept>");
  - ``Input.image_1`` .. ``Input.image_15`` (any number of slots ``image_<k>``, k >= 1): the images.
    A cell holds an image id or the URL/path of the uploaded image; **image_id mapping**: a value
    containing ``/`` is a URL or path, and its image id is the last path segment (query and fragment
    removed, %-escapes decoded) without an image extension (``.jpg .jpeg .png .webp .gif .bmp``), so
    ``https://bucket/s3/ab12.jpg?x=1`` -> ``ab12``; any other value is the image id itself. A blank
    slot is an unused slot (a last task with fewer than 15 images).

* answers, in one of two encodings:

  - **``Answer.taskAnswers``** (crowd-html-elements' ``<crowd-form>``; the encoding of the task HTML
    neuronaudit exports): a JSON list holding one object, with one ``<crowd-checkbox name="img_<k>">``
    per slot: ``[{"img_1": {"on": true}, "img_2": {"on": false}, ...}]``. ``img_<k>`` selected means
    rating 1 for ``Input.image_<k>``; not selected (``false``) or absent means 0. Also accepted: the
    list form ``[{"selected": ["img_3", "img_7"]}]`` (the selected slots; all others 0). Other keys
    (e.g. a free-text ``comments`` field) are ignored; a key ``img_<not a number>`` is an error. MTurk quotes the JSON as a CSV field (inner
    quotes doubled), which the CSV reader undoes.
  - **flat ``Answer.img_<k>``** fields (a classic HTML form with ``<input type="checkbox"
    name="img_<k>">``): ``on``/``true``/``1``/``yes`` (any case) is 1; blank, ``off``/``false``/``0``/
    ``no`` is 0.

  A row uses ``Answer.taskAnswers`` if that column exists and the cell is not blank, else the flat
  fields. An answer for a slot with no image (selected) is an error.

Rejected assignments are counted and left out (their answers are not parsed). A repeated row of the
same ``AssignmentId`` counts once (a repeat with different answers, worker or task is an error).
Every malformed row raises :class:`RatingsImportError` naming the file, the 1-based line and the
column, and saying what to do.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from neuronaudit.explainers.importers import CsvTable, ImportFormatError

__all__ = ["RatingsImportError", "MturkBatch", "CsvCells", "read_mturk_results", "image_id_from_cell",
           "parse_mturk_time", "MTURK_COLUMNS"]

MTURK_COLUMNS = ("HITId", "AssignmentId", "WorkerId", "AssignmentStatus")
STATUSES = {"Submitted", "Approved", "Rejected"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
_EXTENSIONS = frozenset(IMAGE_EXTENSIONS)
_SLOT_RE = re.compile(r"img_(\d+)")
_INPUT_IMAGE_RE = re.compile(r"Input\.image_(\d+)")
_ANSWER_IMAGE_RE = re.compile(r"Answer\.img_(\d+)")
FLAT_WORDS = {"": 0, "on": 1, "true": 1, "1": 1, "yes": 1, "off": 0, "false": 0, "0": 0, "no": 0}
# time zones MTurk writes (it uses US Pacific time) and a few more, as offsets from UTC in hours
TZ_OFFSETS = {"PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5, "EDT": -4,
              "UTC": 0, "GMT": 0, "Z": 0}
# the exported crowd-checkbox form, [{"img_1": {"on": true}, ...}], matched without a JSON parser
_ITEM = r'"img_[0-9]+"\s*:\s*\{\s*"on"\s*:\s*(?:true|false)\s*\}'
_CANON = re.compile(r"\[\s*\{\s*" + _ITEM + r"(?:\s*,\s*" + _ITEM + r")*\s*\}\s*\]")
_KEY = re.compile(r'"img_([0-9]+)"')
_TRUE = re.compile(r'"img_([0-9]+)"\s*:\s*\{\s*"on"\s*:\s*true')
_MTURK_TIME_RE = re.compile(r"\s*(\w{3}) (\w{3}) +(\d{1,2}) (\d{2}:\d{2}:\d{2}) ([A-Za-z]{1,5}) (\d{4})\s*")


class RatingsImportError(ImportFormatError):
    """A malformed ratings file: the message names the file, the 1-based line and the column (where
    there are ones) and says what to do. A ``ValueError``."""


def image_id_from_cell(value: str) -> str:
    """The image id of an ``Input.image_<k>`` cell: a URL's/path's basename without an image extension,
    else the value itself (stripped)."""
    value = value.strip()
    slash = value.rfind("/")
    if slash < 0:
        return value
    if "?" in value or "#" in value:
        value = value.split("#", 1)[0].split("?", 1)[0]
        slash = value.rfind("/")
    name = value[slash + 1:]
    if "%" in name:
        name = unquote(name)
    dot = name.rfind(".")
    if dot >= 0 and name[dot:].lower() in _EXTENSIONS:
        name = name[:dot]
    return name


def parse_mturk_time(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(UTC timestamps, mask of unparseable non-blank cells) from MTurk times ("Sun Nov 22 10:31:05 PST
    2026") or ISO 8601; blank cells give NaT (not an error). Vectorised, each distinct cell parsed once."""
    values = pd.Series(values, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    if len(uniques) < len(values):
        out, bad = _parse_times(pd.Series(np.asarray(uniques, dtype=object), dtype=object))
        return (pd.Series(out.to_numpy()[codes], index=values.index, dtype="datetime64[ns, UTC]"), bad[codes])
    return _parse_times(values)


def _parse_times(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    s = values.fillna("").astype(str).str.strip()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    blank = (s == "").to_numpy()
    parts = s.str.fullmatch(_MTURK_TIME_RE.pattern)
    m = parts.to_numpy(dtype=bool)
    if m.any():
        ex = s[m].str.extract(_MTURK_TIME_RE.pattern)
        tz = ex[4].str.upper().map(TZ_OFFSETS)
        local = pd.to_datetime(ex[1] + " " + ex[2] + " " + ex[5] + " " + ex[3], format="%b %d %Y %H:%M:%S",
                               errors="coerce")
        utc = (local - pd.to_timedelta(tz, unit="h")).dt.tz_localize("UTC")
        out[m] = utc
    rest = ~m & ~blank
    if rest.any():
        iso = pd.to_datetime(s[rest], errors="coerce", utc=True, format="ISO8601")
        out[rest] = iso
    bad = ~blank & out.isna().to_numpy()
    return out, bad


@dataclass
class MturkBatch:
    """The assignments of one results file that are kept, as flat rating rows plus per-file counts.

    ``assignment`` gives, per rating row, the 0-based index of its kept assignment; ``lines`` the file
    line of each kept assignment."""

    path: str
    task: list[str] = field(default_factory=list)
    concept: list[str] = field(default_factory=list)
    rater: list[str] = field(default_factory=list)
    assignment_id: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    submitted_at: pd.Series | None = None
    image_id: list[str] = field(default_factory=list)
    rating: list[int] = field(default_factory=list)
    slot: list[str] = field(default_factory=list)
    n_ratings: list[int] = field(default_factory=list)
    rows_read: int = 0
    rejected: int = 0
    duplicate: int = 0
    # the column-wise reader's rating rows as arrays (image_id, rating, slot, row: the kept assignment)
    _arrays: dict | None = field(default=None, repr=False)

    @property
    def kept(self) -> int:
        return len(self.lines)

    def frame(self, source: str) -> pd.DataFrame:
        """Rating rows in the ratings schema plus ``_line``/``_assignment``/``_slot`` (not stored)."""
        n = np.asarray(self.n_ratings, dtype=np.int64)
        times = self.submitted_at if self.submitted_at is not None else pd.Series([], dtype="datetime64[ns, UTC]")
        naive = times.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
        if self._arrays is not None:  # built from arrays: strings stay in Arrow memory
            a = self._arrays
            row = pa.array(a["row"], pa.int64())
            per_row = lambda xs: pd.Series(pc.take(pa.array(xs, pa.string()), row), dtype="str")  # noqa: E731
            return pd.DataFrame({
                "task": per_row(self.task), "image_id": pd.Series(a["image_id"], dtype="str"),
                "concept": per_row(self.concept), "rater": per_row(self.rater),
                "rating": a["rating"], "source": source,
                "submitted_at": pd.Series(naive[a["row"]]).dt.tz_localize("UTC"),
                "_line": np.asarray(self.lines, dtype=np.int64)[a["row"]],
                "_assignment": a["row"],
                "_slot": pd.Series(a["slot"], dtype="str"),
            })
        rep = lambda xs: np.repeat(np.asarray(xs, dtype=object), n)  # noqa: E731
        return pd.DataFrame({
            "task": rep(self.task), "image_id": np.asarray(self.image_id, dtype=object),
            "concept": rep(self.concept), "rater": rep(self.rater),
            "rating": np.asarray(self.rating, dtype=np.int8), "source": source,
            "submitted_at": pd.Series(np.repeat(naive, n)).dt.tz_localize("UTC"),
            "_line": np.repeat(np.asarray(self.lines, dtype=np.int64), n),
            "_assignment": np.repeat(np.arange(len(n)), n),
            "_slot": np.asarray(self.slot, dtype=object),  # the column of an error: Input.image_<slot>
        })


def _err(path, line, column, what) -> RatingsImportError:
    return RatingsImportError(path, what, line=line, column=column)


def _checked_slots(value) -> dict[int, int]:
    """{slot: 0/1} from the taskAnswers object; raises ValueError(what) on a bad encoding."""
    if not isinstance(value, dict):
        raise ValueError("the JSON list must hold one object (crowd-form's answers)")
    out: dict[int, int] = {}
    for key, v in value.items():
        if key == "selected":
            if not isinstance(v, list) or not all(isinstance(x, str) and _SLOT_RE.fullmatch(x) for x in v):
                raise ValueError('"selected" must be a list of slot names like ["img_3", "img_7"]')
            for x in v:
                out[int(x[4:])] = 1
            continue
        if key[:4] != "img_":
            continue  # other form fields (comments, ...) are not ratings
        n = key[4:]
        if not (n.isascii() and n.isdigit()):
            raise ValueError(f'"{key}" is not a slot name; slots are img_1, img_2, ...')
        if v.__class__ is dict and len(v) == 1 and v.get("on").__class__ is bool:
            on = v["on"]
        elif v.__class__ is bool:
            on = v
        else:
            raise ValueError(f'"{key}" must be a crowd-checkbox value like {{"on": true}}, got {json.dumps(v)[:60]}')
        k = int(n)
        if on or k not in out:
            out[k] = 1 if on else 0
    return out


def _unique(keys: list[str]) -> bool:
    return len(set(keys)) == len(keys)


class CsvCells:
    """The cells of a CSV file, by column: what :class:`CsvTable` reads row by row, read in C++ by pyarrow.

    The fast reading is used only where it provably gives what ``CsvTable`` gives: UTF-8 without NUL bytes,
    a one-line header first, one record per line (CRLF or LF; blank lines are skipped and counted in the
    line numbers), and every data line exactly as the ``csv`` module would write its cells back, either
    every cell quoted (MTurk's download) or quoted only where needed (pandas' ``to_csv``). Anything else (a
    quoted line break, a stray quote, a space before a quote, a short row, ...) is read by ``CsvTable``,
    so every error names the same file, line and column as before.

    ``columns`` / ``index`` / ``header_line`` as in ``CsvTable``; ``lines``: the line of each data row;
    ``column(j)``: the cells of column j (a pyarrow string array); ``rows``: the rows as lists (the
    row-wise reader's input)."""

    def __init__(self, path, table: CsvTable | None = None):
        self.path = str(path)
        self._table = table
        self._cols: list | None = None
        if table is None:
            self._cols = self._fast()
            if self._cols is None:
                self._table = CsvTable(path)
        if self._table is not None:
            t = self._table
            self.path, self.columns, self.index, self.header_line = t.path, t.columns, t.index, t.header_line
            self.lines = np.asarray(t.lines, dtype=np.int64)
        self.n_rows = len(self.lines)

    # -- the fast reading ----------------------------------------------------------------------------
    def _fast(self) -> list | None:
        raw = open(self.path, "rb").read()  # noqa: SIM115 - FileNotFoundError names the path
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\0" in raw or raw.count(b"\r") != raw.count(b"\r\n"):
            return None
        body = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
        nl = body.find(b"\n")
        head = (body if nl < 0 else body[:nl]).removesuffix(b"\r")
        try:
            header = list(csv.reader(io.StringIO(head.decode("utf-8"), newline=""), strict=True, skipinitialspace=True))
        except (UnicodeDecodeError, csv.Error):
            return None
        if len(header) != 1 or not header[0]:
            return None
        columns = [c.strip() for c in header[0]]
        named = [c for c in columns if c]
        if len(set(named)) != len(named):
            return None  # CsvTable names the repeated column
        # the data lines as one Arrow array over the file's bytes (line ends included), blank lines dropped
        buf = np.frombuffer(body, dtype=np.uint8)
        starts = np.flatnonzero(buf == 10) + 1  # the lines after the header start after a line feed
        stops = np.r_[starts[1:], len(body)].astype(np.int64)
        if starts.size and stops[-1] == starts[-1]:  # nothing after the last line feed
            starts, stops = starts[:-1], stops[:-1]
        width = stops - starts
        has_nl = buf[stops - 1] == 10 if starts.size else np.zeros(0, dtype=bool)
        crlf = has_nl & (width >= 2) & (buf[np.maximum(stops - 2, 0)] == 13)
        ending = has_nl.astype(np.int64) + crlf
        keep = width > ending
        lines = np.flatnonzero(keep) + 2
        n = len(columns)
        names = [f"f{j}" for j in range(n)]
        try:
            tab = pacsv.read_csv(
                pa.BufferReader(body),
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(ignore_empty_lines=True),
                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False))
            cols = [tab.column(j).combine_chunks() for j in range(n)]
            offsets = np.r_[starts[:1], stops].astype(np.int32) if len(body) < 2**31 else None
            if offsets is None:
                return None
            every = pa.Array.from_buffers(pa.binary(), len(stops), [None, pa.py_buffer(offsets), pa.py_buffer(body)])
            written = pc.filter(every, pa.array(keep)).cast(pa.string())
            line_end = pa.array(np.array(["", "\n", "\r\n"], dtype=object)[ending[keep]], pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
            return None
        if tab.num_rows != len(written):
            return None
        if tab.num_rows:  # every line as csv writes its cells: all quoted, else quoted where needed
            escaped = [pc.replace_substring(c, '"', '""') if pc.any(pc.match_substring(c, '"')).as_py() else c
                       for c in cols]
            quoted = pc.binary_join_element_wise('"', pc.binary_join_element_wise(*escaped, '","'), '"', line_end, "")
            other = pc.invert(pc.equal(written, quoted))
            if pc.any(other).as_py():
                sub = [pc.filter(c, other) for c in cols]
                minimal = [pc.if_else(pc.match_substring_regex(c, r'[",\r\n]|^[ ]'),
                                      pc.binary_join_element_wise('"', pc.filter(e, other), '"', ""), c)
                           for c, e in zip(sub, escaped, strict=True)]
                again = pc.binary_join_element_wise(pc.binary_join_element_wise(*minimal, ","),
                                                    pc.filter(line_end, other), "")
                if not pc.all(pc.equal(pc.filter(written, other), again)).as_py():
                    return None
        self.columns, self.header_line, self.lines = columns, 1, lines
        self.index = {c: j for j, c in enumerate(columns) if c}
        return cols

    # -- cells ---------------------------------------------------------------------------------------
    def column(self, j: int) -> pa.Array:
        if self._cols is None:
            self._cols = [pa.array([r[i] for r in self._table.rows], pa.string()) for i in range(len(self.columns))]
        return self._cols[j]

    @property
    def rows(self) -> list[list[str]]:
        if self._table is not None:
            return self._table.rows
        cols = [c.to_pylist() for c in self._cols]
        return [list(r) for r in zip(*cols, strict=True)]


def _codes(arr: pa.Array) -> tuple[np.ndarray, list[str]]:
    """(code of each cell, the distinct cells): Python-level work is then done once per distinct value."""
    enc = pc.dictionary_encode(arr)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False), enc.dictionary.to_pylist()


def _stripped(arr: pa.Array) -> np.ndarray:
    codes, uniq = _codes(arr)
    return np.asarray([u.strip() for u in uniq] or [""], dtype=object)[codes]


def _vectorised(t: CsvCells, slots: list[tuple[str, int]], flat: dict[str, int], j_json: int | None) -> MturkBatch | None:
    """The batch of a file whose every row is well formed, computed column-wise (C loops over the
    distinct cells); None if any row would raise (or repeats an AssignmentId): the row-wise reader then
    reports the first problem exactly as it always has."""
    n = t.n_rows
    if len({k for k, _ in slots}) != len(slots):
        return None  # two columns for one slot number (image_1 and image_01): the row reader's rule
    j_hit, j_asg, j_worker, j_status = (t.index[c] for c in MTURK_COLUMNS)
    j_task = t.index.get("Input.task_id")
    s_codes, s_uniq = _codes(t.column(j_status))
    statuses = [u.strip() for u in s_uniq]
    if any(s not in STATUSES for s in statuses):
        return None
    rejected = np.asarray([s == "Rejected" for s in statuses] or [False], dtype=bool)[s_codes]
    asg = _stripped(t.column(j_asg))
    worker = _stripped(t.column(j_worker))
    task = _stripped(t.column(j_task if j_task is not None else j_hit))
    if (asg == "").any() or (task == "").any() or ((worker == "") & ~rejected).any():
        return None
    if n and len(pd.unique(asg)) != n:
        return None  # a repeated assignment: compared row by row
    keep = np.flatnonzero(~rejected)
    nk, ns = len(keep), len(slots)
    take = pa.array(keep, pa.int64())
    concept = _stripped(pc.take(t.column(t.index["Input.concept"]), take))
    if (concept == "").any():
        return None
    # images: one mapping per distinct cell of all slots
    cells = pa.chunked_array([pc.take(t.column(j), take) for _, j in slots], pa.string()).combine_chunks()
    codes, uniq = _codes(cells)
    codes = codes.reshape(ns, nk).T
    iids = [image_id_from_cell(v) if v else "" for v in uniq]
    if any(v and not iid and v.strip() for v, iid in zip(uniq, iids, strict=True)):
        return None
    iid_arr = pa.array(iids or [""], pa.string())
    present = np.asarray([bool(i) for i in iids] or [False], dtype=bool)[codes]
    if nk and not present.any(axis=1).all():
        return None
    # answers
    slot_pos = {int(k): p for p, (k, _) in enumerate(slots)}
    sel = np.zeros((nk, ns), dtype=bool)
    if j_json is not None:
        answers = pc.take(t.column(j_json), take)
        canon = pc.match_substring_regex(answers, r"^\s*" + _CANON.pattern + r"\s*$")
        canon = canon.to_numpy(zero_copy_only=False) & ~pc.match_substring(answers, '"img_0').to_numpy(zero_copy_only=False)
    else:
        answers, canon = None, np.zeros(nk, dtype=bool)
    rows_c = np.flatnonzero(canon)
    other = ~canon
    if rows_c.size:
        parts = pc.split_pattern(pc.take(answers, pa.array(rows_c, pa.int64())), '"img_')
        counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False) - 1
        flat_parts = pc.list_flatten(parts)
        offsets = parts.offsets.to_numpy(zero_copy_only=False)[:-1]
        items = np.ones(len(flat_parts), dtype=bool)
        items[offsets] = False  # the "[{" before the first key
        ex = pc.extract_regex(pc.filter(flat_parts, pa.array(items)),
                              r'^(?P<k>[0-9]{1,9})"\s*:\s*\{\s*"on"\s*:\s*(?P<v>t|f)')
        row = np.repeat(rows_c, counts)
        if ex.null_count:  # a key too long to be a slot number
            long_rows = np.unique(row[ex.is_null().to_numpy(zero_copy_only=False)])
            other[long_rows] = True
            ok = ~np.isin(row, long_rows)
            ex, row = ex.filter(pa.array(ok)), row[ok]
        key = pc.cast(ex.field("k"), pa.int64()).to_numpy(zero_copy_only=False)
        on = pc.equal(ex.field("v"), "t").to_numpy(zero_copy_only=False)
        order = np.lexsort((key, row))
        twice = (row[order][1:] == row[order][:-1]) & (key[order][1:] == key[order][:-1])
        if twice.any():  # a key twice in one object: JSON's rules, row by row
            again = np.unique(row[order][1:][twice])
            other[again] = True
            ok = ~np.isin(row, again)
            key, on, row = key[ok], on[ok], row[ok]
        pos = np.asarray([slot_pos.get(int(k), -1) for k in range(int(key.max(initial=0)) + 1)], dtype=np.intp)
        p = pos[key]
        if (on & (p < 0)).any():
            return None  # a selected slot without its Input.image column
        sel[row[on], p[on]] = True
    rows_o = np.flatnonzero(other)
    if rows_o.size:
        texts = pc.take(answers, pa.array(rows_o, pa.int64())).to_pylist() if answers is not None else [""] * rows_o.size
        use_flat = np.zeros(nk, dtype=bool)
        for i, cell in zip(rows_o, texts, strict=True):
            cell = cell.strip()
            if not cell:
                if not flat:
                    return None
                use_flat[i] = True
                continue
            if _CANON.fullmatch(cell) and '"img_0' not in cell and _unique(_KEY.findall(cell)):
                chosen = set(_TRUE.findall(cell))
            else:
                try:
                    obj = json.loads(cell)
                    if not isinstance(obj, list) or len(obj) != 1:
                        return None
                    chosen = {str(k) for k, v in _checked_slots(obj[0]).items() if v}
                except (ValueError, RecursionError):
                    return None
            for k in chosen:
                if int(k) not in slot_pos:
                    return None
                sel[i, slot_pos[int(k)]] = True
        rows_f = np.flatnonzero(use_flat)
        if rows_f.size:
            take_f = pa.array(keep[rows_f], pa.int64())
            for k, j in flat.items():
                w_codes, w_uniq = _codes(pc.take(t.column(j), take_f))
                words = [FLAT_WORDS.get(u.strip().lower()) for u in w_uniq]
                if any(w is None for w in words):
                    return None
                on = np.asarray(words or [0], dtype=bool)[w_codes]
                if on.any():
                    if int(k) not in slot_pos:
                        return None
                    sel[rows_f[on], slot_pos[int(k)]] = True
    if (sel & ~present).any():
        return None
    # the kept rows, as rating rows (slots in column order within a row)
    b = MturkBatch(path=t.path)
    b.rows_read, b.rejected = n, int(rejected.sum())
    n_ratings = present.sum(axis=1)
    r_idx = np.repeat(np.arange(nk), n_ratings)
    slot_names = np.asarray([k for k, _ in slots], dtype=object)
    b.task, b.concept, b.rater = task[keep].tolist(), concept.tolist(), worker[keep].tolist()
    b.assignment_id, b.lines = asg[keep].tolist(), t.lines[keep].tolist()
    b.n_ratings = n_ratings.tolist()
    flat_codes = codes[present]
    b._arrays = {"image_id": pc.take(iid_arr, pa.array(flat_codes, pa.int64())),
                 "rating": sel[present].astype(np.int8),
                 "slot": slot_names[np.broadcast_to(np.arange(ns), (nk, ns))[present]],
                 "row": r_idx}
    b.image_id, b.rating, b.slot = (b._arrays["image_id"].to_pylist(), b._arrays["rating"].tolist(),
                                    b._arrays["slot"].tolist())
    if (j_submit := t.index.get("SubmitTime")) is not None:
        submit = pc.take(t.column(j_submit), take).to_numpy(zero_copy_only=False).astype(object)
    else:
        submit = np.full(nk, "", dtype=object)
    times, bad = parse_mturk_time(pd.Series(submit, dtype=object))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(t.path, b.lines[i], "SubmitTime", f"{submit[i].strip()!r} is not a time; expected MTurk's "
                   "format (e.g. 'Sun Nov 22 10:31:05 PST 2026'), ISO 8601, or blank")
    b.submitted_at = times.reset_index(drop=True)
    return b


def read_mturk_results(path, table: CsvTable | CsvCells | None = None) -> MturkBatch:
    """Parse an MTurk batch results CSV (format in the module docstring) into an :class:`MturkBatch`.

    Raises :class:`RatingsImportError` (file, line, column, what to do) on any malformed row; rejected
    assignments and repeated AssignmentIds are counted, never silently dropped.

    A file whose rows are all well formed (and whose AssignmentIds are distinct) is parsed column-wise
    (:func:`_vectorised`: the crowd-form JSON of the exported task by one pass over the column, the odd
    cell by ``json``); otherwise row by row, which names the first malformed row."""
    t = table if isinstance(table, CsvCells) else CsvCells(path, table)
    if table is None and any(c not in t.index for c in MTURK_COLUMNS):
        CsvTable(path, MTURK_COLUMNS)  # raises the reader's missing-column error, as when called directly
    path = t.path
    missing = [c for c in (*MTURK_COLUMNS, "Input.concept") if c not in t.index]
    if missing:
        raise RatingsImportError(path, f"missing column(s) {missing}; an MTurk batch results CSV has HITId, "
                                 "AssignmentId, WorkerId, AssignmentStatus and the task's Input.concept, "
                                 "Input.image_<k> columns; download the results from the batch's page",
                                 line=t.header_line)
    # slots are keyed by their number as text ("1".."15"), as found in the answers
    numbered = sorted((int(m.group(1)), j) for c, j in t.index.items() if (m := _INPUT_IMAGE_RE.fullmatch(c)))
    slots = [(str(k), j) for k, j in numbered]
    if not slots:
        raise RatingsImportError(path, "no Input.image_<k> columns: the task's images are not in the file; "
                                 "use the batch input CSV neuronaudit exports", line=t.header_line)
    flat = {str(int(m.group(1))): j for c, j in t.index.items() if (m := _ANSWER_IMAGE_RE.fullmatch(c))}
    j_json = t.index.get("Answer.taskAnswers")
    if j_json is None and not flat:
        raise RatingsImportError(path, "no answer columns: expected Answer.taskAnswers (crowd-form JSON) or "
                                 "Answer.img_<k> fields", line=t.header_line)
    slot_numbers = {k for k, _ in slots}
    unknown_flat = sorted(set(flat) - slot_numbers, key=int)
    j_hit, j_asg, j_worker, j_status = (t.index[c] for c in MTURK_COLUMNS)
    j_task = t.index.get("Input.task_id")
    j_concept = t.index["Input.concept"]
    j_submit = t.index.get("SubmitTime")
    fast = _vectorised(t, slots, flat, j_json)
    if fast is not None:
        return fast
    b = MturkBatch(path=path)
    b.rows_read = t.n_rows
    seen: dict[str, tuple] = {}
    ids: dict[str, str] = {}  # cell -> image id (each image is in several assignments)
    submit_cells: list[str] = []
    for row, line in zip(t.rows, t.lines.tolist(), strict=True):
        status = row[j_status].strip()
        if status not in STATUSES:
            raise _err(path, line, "AssignmentStatus", f"{status!r} is not an assignment status; expected one of "
                       f"{sorted(STATUSES)} (as MTurk writes them)")
        asg = row[j_asg].strip()
        if not asg:
            raise _err(path, line, "AssignmentId", "is empty; every MTurk assignment has an id: use the file "
                       "as MTurk wrote it")
        worker = row[j_worker].strip()
        if not worker and status != "Rejected":
            raise _err(path, line, "WorkerId", "is empty; the rater's WorkerId is needed to count each rater "
                       "once: use the file as MTurk wrote it")
        hit = row[j_hit].strip()
        task = row[j_task].strip() if j_task is not None else hit
        if not task:
            col = "Input.task_id" if j_task is not None else "HITId"
            raise _err(path, line, col, "is empty; every task needs its id (the batch input CSV's task_id)")
        if status == "Rejected":
            sig = (task, worker, "Rejected")
            if asg in seen:
                if seen[asg][0] != sig:
                    raise _err(path, line, "AssignmentId", f"assignment {asg!r} appears again (line {seen[asg][1]}) "
                               "with a different status, worker or task; keep one row per assignment")
                b.duplicate += 1
            else:
                seen[asg] = (sig, line)
                b.rejected += 1
            continue
        concept = row[j_concept].strip()
        if not concept:
            raise _err(path, line, "Input.concept", "is empty; every task shows a concept")
        present: dict[str, str] = {}
        for k, j in slots:
            v = row[j]
            if v:
                iid = ids.get(v)
                if iid is None:
                    iid = ids[v] = image_id_from_cell(v)
                    if not iid and v.strip():
                        raise _err(path, line, f"Input.image_{k}", f"{v.strip()!r} gives no image id (a URL ending "
                                   "in '/'?); give the image's id or its URL ending in <image_id>.<ext>")
                if iid:
                    present[k] = iid
        if not present:
            raise _err(path, line, "Input.image_1", "the task has no images (all Input.image_<k> are blank)")
        cell = row[j_json].strip() if j_json is not None else ""
        if cell and _CANON.fullmatch(cell) and '"img_0' not in cell and _unique(_KEY.findall(cell)):
            answers = set(_TRUE.findall(cell))  # the exported form, parsed in C
        elif cell:
            try:
                obj = json.loads(cell)
                if not isinstance(obj, list) or len(obj) != 1:
                    raise ValueError("expected a JSON list holding one object, as crowd-form writes it")
                answers = {str(k) for k, v in _checked_slots(obj[0]).items() if v}
            except (ValueError, RecursionError) as e:
                what = f"not valid JSON ({e.msg})" if isinstance(e, json.JSONDecodeError) else str(e)
                raise _err(path, line, "Answer.taskAnswers",
                           f"{what}; expected crowd-form answers like "
                           '[{"img_1": {"on": true}, "img_2": {"on": false}}]: use the file as MTurk wrote it') from None
        elif flat:
            answers = set()
            for k, j in flat.items():
                word = row[j].strip().lower()
                r = FLAT_WORDS.get(word)
                if r is None:
                    raise _err(path, line, f"Answer.img_{k}", f"{row[j].strip()!r} is not a checkbox answer; "
                               "expected 'on' (selected) or blank (also true/false, 1/0, yes/no)")
                if r:
                    answers.add(k)
            if unknown_flat and any(k in answers for k in unknown_flat):
                k = next(k for k in unknown_flat if k in answers)
                raise _err(path, line, f"Answer.img_{k}", f"slot {k} is selected but there is no Input.image_{k} "
                           "column; check that the results belong to this task design")
        else:
            raise _err(path, line, "Answer.taskAnswers", "is empty: the assignment has no answers; remove the "
                       "row or reject the assignment on MTurk (rejected assignments are left out)")
        for k in answers:
            if k not in present:
                column = f"Answer.img_{k}" if not cell else "Answer.taskAnswers"
                raise _err(path, line, column, f"image slot img_{k} is selected but Input.image_{k} is blank or "
                           "absent; check that the answers belong to this task")
        images_of = list(present.values())
        ratings_of = [1 if k in answers else 0 for k in present]
        sig = (task, worker, concept, images_of, ratings_of)
        if asg in seen:
            if seen[asg][0] != sig:
                raise _err(path, line, "AssignmentId", f"assignment {asg!r} appears again (first on line "
                           f"{seen[asg][1]}) with different answers, worker, task or concept; keep one row per "
                           "assignment")
            b.duplicate += 1
            continue
        seen[asg] = (sig, line)
        b.task.append(task)
        b.concept.append(concept)
        b.rater.append(worker)
        b.assignment_id.append(asg)
        b.lines.append(line)
        submit_cells.append(row[j_submit] if j_submit is not None else "")
        b.n_ratings.append(len(images_of))
        b.slot.extend(present)
        b.image_id.extend(images_of)
        b.rating.extend(ratings_of)
    times, bad = parse_mturk_time(pd.Series(submit_cells, dtype=object))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _err(path, b.lines[i], "SubmitTime", f"{submit_cells[i].strip()!r} is not a time; expected MTurk's "
                   "format (e.g. 'Sun Nov 22 10:31:05 PST 2026'), ISO 8601, or blank")
    b.submitted_at = times.reset_index(drop=True)
    return b
