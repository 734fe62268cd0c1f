"""Imported explanations on imperfect files (issue 7, item 5): regression tests on real files, hypothesis
fuzz tests of the four formats, and a time bound on a 100,000-row import."""

import csv
import io
import json
import logging
import math
import os
import runpy
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from neuronaudit.explainers.importers import (
    ImportFormatError,
    read_clip_dissect_csv,
    read_clustered_csv,
    read_compositional_csv,
    read_explanations,
    read_linear_csv,
)
from neuronaudit.explanations import And, Concept, Explanation, Not, Or, formula_to_text, parse_formula

REPO = Path(__file__).resolve().parents[1]
READERS = {"clip_dissect": read_clip_dissect_csv, "linear": read_linear_csv,
           "compositional": read_compositional_csv, "clustered": read_clustered_csv}


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _error(reader, path, **kwargs) -> ImportFormatError:
    with pytest.raises(ImportFormatError) as err:
        reader(path, **kwargs)
    e = err.value
    assert isinstance(e, ValueError) and str(e).startswith(str(path))
    return e


# ------------------------------------------------------------------------------------------ multi-layer files
def _peer_file(tmp_path) -> Path:
    """Like the peer's resnet50_imagenet.csv: layers conv1..layer4, each numbering its units from 0."""
    rows = ["layer,unit,description,similarity"]
    sizes = {"conv1": 4, "layer1": 6, "layer2": 5, "layer3": 3, "layer4": 8}
    for layer, n in sizes.items():
        rows += [f"{layer},{u},{layer} concept {u},{0.1 * u:.2f}" for u in range(n)]
    return _write(tmp_path / "resnet50_imagenet.csv", "\n".join(rows) + "\n")


def test_multi_layer_file_filters_by_layer_before_the_duplicate_check(tmp_path, caplog):
    path = _peer_file(tmp_path)
    caplog.set_level(logging.INFO, logger="neuronaudit")
    t = read_explanations(path, "clip_dissect", method="cd", layers=["layer4", "model.layer4"])
    assert t["neuron"].tolist() == list(range(8))
    assert t["explanation"].tolist() == [f"layer4 concept {u}" for u in range(8)]
    assert {json.loads(p)["layer"] for p in t["params"]} == {"layer4"}
    # rows of the other layers are counted, reported and logged, not dropped silently
    report = t.attrs["import_report"]
    assert report["rows"] == 26 and report["imported"] == 8
    assert report["other_layers"] == {"conv1": 4, "layer1": 6, "layer2": 5, "layer3": 3}
    assert "left out 18 rows of other layers: conv1 (4), layer1 (6), layer2 (5), layer3 (3)" in caplog.text
    assert "resnet50_imagenet.csv" in caplog.text
    # read without a layer: every row, units unique per layer
    assert len(read_clip_dissect_csv(path)) == 26


def test_multi_layer_file_errors(tmp_path):
    path = _peer_file(tmp_path)
    e = _error(read_explanations, path, fmt="clip_dissect", layers=["fc"])
    assert e.column == "layer" and "no row for layer 'fc'" in str(e) and "'layer4'" in str(e)
    dup = _write(tmp_path / "dup.csv", "layer,unit,description\nconv1,0,a\nlayer4,0,b\nlayer4,0,c\n")
    e = _error(read_clip_dissect_csv, dup, layers=["layer4"])
    assert (e.line, e.row, e.column) == (4, 3, "unit") and "unit 0 of layer 'layer4' already explained" in str(e)
    mixed = _write(tmp_path / "mixed.csv", "layer,unit,description\nlayer4,0,a\n,1,b\n")
    e = _error(read_clip_dissect_csv, mixed)
    assert (e.line, e.column) == (3, "layer") and "other rows name a layer" in str(e)


@pytest.mark.parametrize("fmt,header,row", [
    ("linear", "layer,unit,weight0,concept0,bias", "{layer},{u},1.5,dog,0"),
    ("compositional", "layer,unit,formula", "{layer},{u},dog and not cat"),
    ("clustered", "layer,unit,cluster,lower,upper,formula", "{layer},{u},0,0,1,dog"),
])
def test_every_format_filters_layers(tmp_path, fmt, header, row):
    lines = [header] + [row.format(layer=layer, u=u) for layer in ("conv1", "layer4") for u in range(3)]
    path = _write(tmp_path / f"{fmt}.csv", "\n".join(lines) + "\n")
    t = read_explanations(path, fmt, layers=["layer4"])
    assert t["neuron"].tolist() == [0, 1, 2] and t.attrs["import_report"]["other_layers"] == {"conv1": 3}


def test_stage_import_keeps_the_layer_of_a_multi_layer_file(tmp_path):
    from neuronaudit.explainers.registry import ExplainInputs, get_explainer
    from neuronaudit.explainers.stage import check_method  # noqa: F401 (registers the built-in explainers)

    path = _peer_file(tmp_path)
    entry = {"method": "import", "format": "clip_dissect", "path": str(path)}
    importer = get_explainer("import")

    def run(layer, module, n_neurons):
        return importer.explain(ExplainInputs("peer", entry, layer=layer, module=module, imported=path,
                                              n_layer_neurons=n_neurons))

    t = run("layer4", "model.layer4", 8)
    assert t["neuron"].tolist() == list(range(8)) and (t["method"] == "peer").all()
    t = run("l3", "layer3", 3)  # matched by module path
    assert t["explanation"].tolist() == [f"layer3 concept {u}" for u in range(3)]
    with pytest.raises(ValueError, match="outside the layer's 4 neurons"):
        run("layer4", None, 4)


# --------------------------------------------------------------------------------------- import paths (DAG)
def _dry_run(tmp_path, import_path) -> subprocess.CompletedProcess:
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    cfg["explain"]["methods"]["imported"]["path"] = import_path
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", "-n",
                           "--configfile", str(tmp_path / "cfg.yaml")], cwd=tmp_path, env=env, capture_output=True,
                          text=True)


def test_import_path_matching_no_file_is_an_error_naming_it(tmp_path):
    typo = str(tmp_path / "tiny_{model}_{layer}_clip_disect.csv")
    proc = _dry_run(tmp_path, typo)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "explain.methods.imported.path" in text and typo in text
    assert "matches no file for any model and layer" in text
    proc = _dry_run(tmp_path, str(tmp_path / "x_{model}_{layr}.csv"))
    assert proc.returncode != 0 and "only {model} and {layer}" in proc.stdout + proc.stderr


def test_layers_without_an_import_file_are_listed(tmp_path):
    src = REPO / "config" / "examples" / "tiny_lite0_head_clip_dissect.csv"
    (tmp_path / "cd_lite0_head.csv").write_bytes(src.read_bytes())
    proc = _dry_run(tmp_path, str(tmp_path / "cd_{model}_{layer}.csv"))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    note = next(line for line in text.splitlines() if "explain.methods.imported" in line)
    assert "3 of 4 layers" in note and "lite0/block5" in note and "cnn/fc1" in note and "lite0/head" not in note


# ------------------------------------------------------------------------------------------ header-only files
@pytest.mark.parametrize("fmt,header", [
    ("clip_dissect", "layer,unit,description,similarity"), ("linear", "unit,weight0,concept0,bias"),
    ("compositional", "unit,formula"), ("clustered", "unit,cluster,lower,upper,formula"),
])
def test_header_only_file_gives_an_empty_table_and_a_warning(tmp_path, caplog, fmt, header):
    path = _write(tmp_path / "only_header.csv", header + "\n")
    t = read_explanations(path, fmt, method="m", layers=["layer4"])
    assert len(t) == 0 and list(t.columns)[:3] == ["neuron", "method", "explanation"]
    assert "only_header.csv" in caplog.text and "m gets 0 explanations" in caplog.text


def test_method_without_explanations_stays_in_table_1(tmp_path, monkeypatch):
    """A header-only import leads to an empty score file; table_automated keeps the method (n_neurons 0)."""
    def scores(method, n):
        return pd.DataFrame({"model": ["m"] * n, "layer": ["l"] * n, "neuron": np.arange(n, dtype=np.int64),
                             "method": [method] * n, "concept_model": ["probe"] * n,
                             "rho": np.linspace(0.1, 0.5, n), "reason": [""] * n, "length": np.ones(n, np.int64)})
    paths = []
    for method, n in (("cd", 5), ("imported", 0)):
        p = tmp_path / "scores" / "m" / "l" / f"{method}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        scores(method, n).to_parquet(p)
        paths.append(str(p))
    snake = types.SimpleNamespace(input=paths, log=[str(tmp_path / "t.log")],
                                  output=types.SimpleNamespace(simple=str(tmp_path / "t1.csv"),
                                                               complex=str(tmp_path / "t2.csv")))
    stderr, handlers = sys.stderr, logging.getLogger().handlers[:]
    monkeypatch.setenv("NEURONAUDIT_PROGRESS", "0")  # no console-echo thread left running in the test session
    try:
        runpy.run_path(str(REPO / "workflow" / "scripts" / "table_automated.py"), init_globals={"snakemake": snake})
    finally:
        sys.stderr = stderr  # setup_job_log redirects stderr to the log and replaces the root handlers
        logging.getLogger().handlers[:] = handlers
    t1 = pd.read_csv(tmp_path / "t1.csv")
    row = t1[t1["method"] == "imported"].iloc[0]
    assert row["n_neurons"] == 0 and row["concept_model"] == "probe" and math.isnan(row["mean"])
    assert t1.loc[t1["method"] == "cd", "n_neurons"].iloc[0] == 5
    assert "m/l imported" in (tmp_path / "t.log").read_text()


# --------------------------------------------------------------------------------- parsing without guessing
def test_no_index_column_guessing(tmp_path):
    # pandas read 'unit,description' + '3,7,dog' as unit 7 (first field taken as the index)
    e = _error(read_clip_dissect_csv, _write(tmp_path / "shift.csv", "unit,description\n3,7,dog\n"))
    assert (e.line, e.row, e.column) == (2, 1, "description")
    assert "3 fields but the header names 2" in str(e) and "quotes" in str(e)
    # a pandas index column with an empty header cell is an ignored column, not the unit
    t = read_clip_dissect_csv(_write(tmp_path / "index.csv", ",unit,description\n0,5,dog\n1,6,cat\n"))
    assert t["neuron"].tolist() == [5, 6] and t["explanation"].tolist() == ["dog", "cat"]


def test_ragged_rows_and_unquoted_commas_name_file_line_column(tmp_path):
    text = "layer,unit,description,similarity\nl,0,dog,0.5\n\nl,1,cat\n"
    e = _error(read_clip_dissect_csv, _write(tmp_path / "short.csv", text))
    assert (e.line, e.row, e.column) == (4, 2, "similarity") and "header names 4" in str(e)
    text = "layer,unit,description,similarity\nl,0,dog,0.5\nl,1,salt, pepper,0.2\n"
    e = _error(read_clip_dissect_csv, _write(tmp_path / "comma.csv", text))
    assert (e.line, e.row, e.column) == (3, 2, "description") and "unquoted comma" in str(e)
    assert "short.csv: line 4, data row 2, column 'similarity'" in str(_error(read_clip_dissect_csv,
                                                                             tmp_path / "short.csv"))
    # quoted, the comma is part of the description
    text = 'layer,unit,description,similarity\nl,0,dog,0.5\nl,1,"salt, pepper",0.2\n'
    t = read_clip_dissect_csv(_write(tmp_path / "quoted.csv", text))
    assert t["explanation"].tolist() == ["dog", "salt, pepper"]


def test_malformed_quoting_names_line_and_column(tmp_path):
    e = _error(read_clip_dissect_csv, _write(tmp_path / "q.csv", 'unit,description,similarity\n0,a,1\n1,"dog" x,1\n'))
    assert (e.line, e.row, e.column) == (3, 2, "description") and "double quotes" in str(e)
    e = _error(read_clip_dissect_csv, _write(tmp_path / "u.csv", 'unit,description,similarity\n0,a,1\n1,"dog,1\n2,b,1\n'))
    assert (e.line, e.row, e.column) == (3, 2, "description")


def test_overflowing_numbers_are_errors_naming_the_cell(tmp_path):
    cases = [
        (read_clip_dissect_csv, "unit,description,similarity\n0,dog,1e400\n", "similarity"),
        (read_clip_dissect_csv, "unit,description,similarity\n1e400,dog,1\n", "unit"),
        (read_clip_dissect_csv, "unit,description,similarity\n99999999999999999999,dog,1\n", "unit"),
        (read_linear_csv, "unit,weight0,concept0,bias\n0,1e400,dog,0\n", "weight0"),
        (read_linear_csv, "unit,weight0,concept0,bias\n0,1,dog,-1e999\n", "bias"),
        (read_clustered_csv, "unit,cluster,lower,upper,formula\n0,0,0,1e400,dog\n", "upper"),
        (read_compositional_csv, "unit,formula,source_score\n0,dog,inf\n", "source_score"),
    ]
    for k, (reader, text, column) in enumerate(cases):
        e = _error(reader, _write(tmp_path / f"big{k}.csv", text))
        assert (e.line, e.row, e.column) == (2, 1, column), str(e)


def test_latin1_file_names_line_column_and_says_save_as_utf8(tmp_path):
    path = _write(tmp_path / "latin1.csv", "unit,description\n0,dog\n1,café\n", encoding="latin-1")
    e = _error(read_clip_dissect_csv, path)
    assert (e.line, e.row, e.column) == (3, 2, "description") and "save the file as UTF-8" in str(e)
    e = _error(read_clip_dissect_csv, _write(tmp_path / "utf16.csv", "unit,description\n0,dog\n", "utf-16"))
    assert "UTF-16" in str(e)
    # UTF-8 with a byte-order mark (Excel's "CSV UTF-8") is fine
    t = read_clip_dissect_csv(_write(tmp_path / "bom.csv", "\ufeffunit,description\n0,café\n"))
    assert t["explanation"].tolist() == ["café"]


def test_empty_and_bad_headers(tmp_path):
    e = _error(read_clip_dissect_csv, _write(tmp_path / "empty.csv", ""))
    assert "file is empty" in str(e)
    e = _error(read_clip_dissect_csv, _write(tmp_path / "twice.csv", "unit,description,unit\n0,a,1\n"))
    assert (e.line, e.column) == (1, "unit") and "twice" in str(e)
    e = _error(read_clip_dissect_csv, _write(tmp_path / "miss.csv", "unit,descripton\n0,a\n"))
    assert "missing column(s) ['description']" in str(e)


def test_line_numbers_count_blank_lines_and_multi_line_cells(tmp_path):
    text = 'unit,description\n\n0,"two\nlines"\n\n1,\n'
    e = _error(read_clip_dissect_csv, _write(tmp_path / "lines.csv", text))
    assert (e.line, e.row, e.column) == (6, 2, "description") and "is empty" in str(e)


# -------------------------------------------------------------------------------------- lower-case operators
def test_lower_case_operators_and_quoted_concepts():
    assert parse_formula("dark and not bright") == And(Concept("dark"), Not(Concept("bright")))
    assert parse_formula("a Or b AND c") == Or(Concept("a"), And(Concept("b"), Concept("c")))
    # a concept that contains an operator word is written in double quotes
    assert parse_formula('"salt and pepper" or "not me"') == Or(Concept("salt and pepper"), Concept("not me"))
    node = Or(Concept("salt and pepper"), Not(Concept("black or white")))
    text = formula_to_text(node)
    assert text == '"salt and pepper" OR NOT "black or white"' and parse_formula(text) == node
    assert Explanation("compositional", {"formula": "dark and not bright"}).concepts() == ["dark", "bright"]


def test_lower_case_operators_in_an_imported_file(tmp_path):
    text = 'unit,formula\n0,dark and not bright\n1,"""salt and pepper"" or sky"\n'
    t = read_compositional_csv(_write(tmp_path / "f.csv", text))
    assert t["explanation"].tolist() == ["dark AND NOT bright", '"salt and pepper" OR sky']
    assert t["length"].tolist() == [2, 2]
    e = _error(read_compositional_csv, _write(tmp_path / "g.csv", "unit,formula\n0,dark and\n"))
    assert (e.line, e.column) == (2, "formula") and "cannot parse formula" in str(e)


# --------------------------------------------------------------------------------------------- fuzz tests
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_chars = st.sampled_from(list("abcdxyz ABC,;\"'()-_.\\\n0é中") + ["\u00a0x"])
texts = st.lists(_chars, min_size=1, max_size=10).map(lambda cs: "".join(cs).strip()).filter(bool)
_words = st.sampled_from(["dog", "sky", "and", "OR", "Not", "sea lion", "t-shirt", "a(b)", 'say "hi"', "x,y", "é"])
names = st.lists(_words, min_size=1, max_size=3).map(" ".join)
formulas = st.recursive(names.map(Concept), lambda ch: st.one_of(st.builds(And, ch, ch), st.builds(Or, ch, ch),
                                                                  st.builds(Not, ch)), max_leaves=5).map(formula_to_text)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
scores = st.one_of(st.just(math.nan), finite)
linear_names = texts.filter(lambda s: s not in {"0", "0.0", "nan", "NaN", "None"})


def _render(header, rows, *, crlf, quote_all, bom, blank):
    """CSV text and the 1-based line of each data row (blank lines inserted where ``blank`` says)."""
    def line_text(cells):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n" if crlf else "\n",
                   quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerow(cells)
        return buf.getvalue()

    parts, lines, line = [("\ufeff" if bom else "") + line_text(header)], [], 2
    for k, cells in enumerate(rows):
        if k in blank:
            parts.append("\r\n" if crlf else "\n")
            line += 1
        lines.append(line)
        text = line_text(cells)
        parts.append(text)
        line += text.count("\n")
    return "".join(parts), lines


def _fmt(x):
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


@st.composite
def clip_dissect_files(draw):
    n = draw(st.integers(1, 8))
    layers = draw(st.lists(st.sampled_from(["conv1", "layer4"]), min_size=n, max_size=n))
    units = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    assume(len(set(zip(layers, units, strict=True))) == n)
    descs = draw(st.lists(texts, min_size=n, max_size=n))
    sims = draw(st.lists(scores, min_size=n, max_size=n))
    rows = [[la, u, d, _fmt(s)] for la, u, d, s in zip(layers, units, descs, sims, strict=True)]
    expected = [(u, la, {"kind": "simple", "concept": d}, s) for la, u, d, s in zip(layers, units, descs, sims, strict=True)]
    return ["layer", "unit", "description", "similarity"], rows, expected


@st.composite
def linear_files(draw):
    n = draw(st.integers(1, 6))
    width = draw(st.integers(1, 3))
    header = ["unit", "val correlation"] + [c for j in range(width) for c in (f"weight{j}", f"concept{j}")] + ["bias"]
    rows, expected = [], []
    for u in draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True)):
        k = draw(st.integers(1, width))
        terms = [[draw(finite.filter(bool)), draw(linear_names)] for _ in range(k)]
        bias, score = draw(finite), draw(scores)
        cells = [u, _fmt(score)]
        for j in range(width):
            cells += [_fmt(terms[j][0]), terms[j][1]] if j < k else draw(st.sampled_from([["", ""], ["0", "0"]]))
        rows.append(cells + [_fmt(bias)])
        expected.append((u, "", {"kind": "linear", "terms": terms, "bias": bias}, score))
    return header, rows, expected


@st.composite
def compositional_files(draw):
    units = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=6, unique=True))
    rows, expected = [], []
    for u in units:
        f, s = draw(formulas), draw(scores)
        rows.append([u, f, _fmt(s)])
        expected.append((u, "", {"kind": "compositional", "formula": f}, s))
    return ["unit", "formula", "source_score"], rows, expected


@st.composite
def clustered_files(draw):
    units = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4, unique=True))
    rows, expected = [], []
    for u in units:
        k = draw(st.integers(1, 3))
        bounds = sorted(draw(st.lists(finite, min_size=k + 1, max_size=k + 1)))
        clusters = [{"lower": bounds[j], "upper": bounds[j + 1], "formula": draw(formulas)} for j in range(k)]
        order = draw(st.permutations(range(k)))
        rows += [[u, j, _fmt(clusters[j]["lower"]), _fmt(clusters[j]["upper"]), clusters[j]["formula"]] for j in order]
        expected.append((u, "", {"kind": "clustered", "clusters": clusters}, math.nan))
    return ["unit", "cluster", "lower", "upper", "formula"], rows, expected


FILES = {"clip_dissect": clip_dissect_files(), "linear": linear_files(), "compositional": compositional_files(),
         "clustered": clustered_files()}
TEXT_COLUMN = {"clip_dissect": "description", "linear": "concept0", "compositional": "formula", "clustered": "formula"}
NUMBER_COLUMN = {"clip_dissect": "similarity", "linear": "bias", "compositional": "source_score", "clustered": "lower"}

MUTATIONS = ["none", "short_row", "extra_field", "bad_number", "overflow", "non_finite", "bad_unit", "negative_unit",
             "empty_text", "latin1", "nul", "open_quote", "duplicate", "random_bytes"]


def _same(table, expected, layers=None):
    want = [e for e in expected if layers is None or not e[1] or e[1] in layers]
    assert table["neuron"].tolist() == [e[0] for e in want]
    assert [json.loads(s) for s in table["structured"]] == [json.loads(json.dumps(e[2])) for e in want]
    got = table["source_score"].to_numpy(float)
    exp = np.array([e[3] for e in want], dtype=float)
    assert np.array_equal(np.isnan(got), np.isnan(exp)) and np.array_equal(got[~np.isnan(got)], exp[~np.isnan(exp)])
    assert [json.loads(p).get("layer", "") for p in table["params"]] == [e[1] for e in want]


def _fuzz(tmp_path, fmt, data, file, mutation):
    header, rows, expected = file
    rows = [[str(c) for c in r] for r in rows]
    crlf, quote_all, bom = data.draw(st.booleans()), data.draw(st.booleans()), data.draw(st.booleans())
    blank = set(data.draw(st.lists(st.integers(0, len(rows)), max_size=2)))
    k = data.draw(st.integers(0, len(rows) - 1))  # the row to break
    col = {c: j for j, c in enumerate(header)}
    want_column = None
    encoding_bad = None
    if mutation == "short_row":
        cut = data.draw(st.integers(1, len(header) - 1))
        rows[k] = rows[k][:cut]
        want_column = header[cut]
    elif mutation == "extra_field":
        rows[k] = rows[k] + [data.draw(st.sampled_from(["", "x", "1"]))]
    elif mutation in ("bad_number", "overflow", "non_finite"):
        c = NUMBER_COLUMN[fmt]
        rows[k][col[c]] = {"bad_number": data.draw(st.sampled_from(["abc", "1,5", "0x10", "1..2", "--1"])),
                           "overflow": data.draw(st.sampled_from(["1e400", "-2e308", "1" + "0" * 400])),
                           "non_finite": data.draw(st.sampled_from(["nan", "inf", "-Infinity", "NaN"]))}[mutation]
        want_column = c
    elif mutation in ("bad_unit", "negative_unit"):
        rows[k][col["unit"]] = data.draw(st.sampled_from(["1.5", "x", "1e400", "", "99999999999999999999"])
                                         if mutation == "bad_unit" else st.sampled_from(["-1", "-7"]))
        want_column = "unit"
    elif mutation == "empty_text":
        rows[k][col[TEXT_COLUMN[fmt]]] = data.draw(st.sampled_from(["", "  "]))
        want_column = TEXT_COLUMN[fmt]
    elif mutation in ("latin1", "nul"):
        c = TEXT_COLUMN[fmt]
        rows[k][col[c]] = rows[k][col[c]] + ("\udce9" if mutation == "latin1" else "\0")
        want_column = c
    elif mutation == "duplicate":
        if fmt == "clustered":
            assume(len(rows) > 1)
            k = data.draw(st.integers(1, len(rows) - 1))
            rows[k][col["unit"]], rows[k][col["cluster"]] = rows[0][col["unit"]], rows[0][col["cluster"]]
            want_column = "cluster"
        else:
            assume(len(rows) > 1)
            k = data.draw(st.integers(1, len(rows) - 1))
            j = data.draw(st.integers(0, k - 1))
            rows[k][col["unit"]] = rows[j][col["unit"]]
            if "layer" in col:
                rows[k][col["layer"]] = rows[j][col["layer"]]
            want_column = "unit"
    text, lines = _render(header, rows, crlf=crlf, quote_all=quote_all, bom=bom, blank=blank)
    if mutation == "open_quote":
        # the last row opens a quote that is never closed
        k, want_column = len(rows) - 1, header[0]
        head = "\n".join(text.split("\n")[: lines[k] - 1])
        text = head + "\n" + '"' + text[len(head) + 1:].replace('"', "")
    if mutation == "random_bytes":
        raw = bytearray(text.encode("utf-8", "surrogateescape"))
        for _ in range(data.draw(st.integers(1, 3))):
            pos = data.draw(st.integers(0, len(raw)))
            raw[pos:pos] = bytes([data.draw(st.sampled_from([0, 10, 13, 34, 44, 0xE9, 0xFF, 65]))])
        encoding_bad = bytes(raw)
    path = tmp_path / f"fuzz_{fmt}.csv"
    path.write_bytes(encoding_bad if encoding_bad is not None else text.encode("utf-8", "surrogateescape"))
    layers = ["layer4"] if fmt == "clip_dissect" and data.draw(st.booleans()) else None
    if layers and mutation == "none":
        assume(any(e[1] == "layer4" for e in expected))
    try:
        table = READERS[fmt](path, layers=layers)
    except ImportFormatError as e:
        event(f"{mutation}: rejected")
        assert mutation != "none", str(e)
        msg = str(e)
        assert msg.startswith(str(path))
        if e.line is not None:
            assert f"line {e.line}" in msg
        if e.row is not None:
            assert f"data row {e.row}" in msg
        if e.column is not None:
            assert f"column '{e.column}'" in msg
        if mutation not in ("random_bytes", "extra_field"):
            assert e.line == lines[k], (msg, lines)
            assert e.column == want_column, msg
        elif mutation == "extra_field":
            assert e.line == lines[k] and e.column is not None
        return
    # no error: the file was imported exactly
    event(f"{mutation}: imported")
    assert mutation in ("none", "random_bytes"), f"{mutation} was accepted"
    if mutation == "none":
        _same(table, expected, layers)


@pytest.mark.parametrize("fmt", list(FILES))
@FUZZ
@given(data=st.data(), mutation=st.sampled_from(MUTATIONS))
def test_fuzz_import_is_exact_or_an_error_naming_file_line_column(tmp_path, fmt, data, mutation):
    _fuzz(tmp_path, fmt, data, data.draw(FILES[fmt]), mutation)


@pytest.mark.parametrize("fmt", list(FILES))
@FUZZ
@given(data=st.data())
def test_fuzz_valid_files_round_trip_exactly(tmp_path, fmt, data):
    _fuzz(tmp_path, fmt, data, data.draw(FILES[fmt]), "none")


# ------------------------------------------------------------------------------------------------ time bound
@pytest.mark.timing
@pytest.mark.parametrize("fmt", ["clip_dissect", "linear", "compositional"])
def test_100k_row_import_under_15_seconds(tmp_path, fmt):
    n = 100_000
    path = tmp_path / f"big_{fmt}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if fmt == "clip_dissect":
            w.writerow(["layer", "unit", "description", "similarity"])
            w.writerows(["layer4", i, f"concept {i}", repr(i / n)] for i in range(n))
        elif fmt == "linear":
            w.writerow(["layer", "unit", "val correlation", "weight0", "concept0", "weight1", "concept1", "weight2",
                        "concept2", "bias"])
            w.writerows(["layer4", i, 0.5, 1.5, f"c{i}", 0.25, f"d{i % 13}", 0, 0, 0.1] for i in range(n))
        else:
            w.writerow(["unit", "formula"])
            w.writerows([i, f"(c{i} or d{i % 13}) AND NOT e{i % 7}"] for i in range(n))
    t0 = time.perf_counter()
    table = read_explanations(path, fmt, layers=["layer4"])
    seconds = time.perf_counter() - t0
    print(f"{fmt}: {n} rows imported in {seconds:.2f} s")
    assert len(table) == n and table["neuron"].iat[-1] == n - 1
    assert seconds < 15, f"{n}-row {fmt} import took {seconds:.1f} s"
