import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronaudit.explainers.importers import (
    explanation_table,
    read_clip_dissect_csv,
    read_clustered_csv,
    read_compositional_csv,
    read_linear_csv,
    write_clip_dissect_csv,
    write_clustered_csv,
    write_compositional_csv,
    write_linear_csv,
)

names = st.text(alphabet="abcdefghij xyz-'", min_size=1, max_size=12).map(lambda s: " ".join(s.split())).filter(
    lambda s: s and s not in {"0"} and not set(s.split()) & {"AND", "OR", "NOT"})
weights = st.floats(-5, 5, allow_nan=False).filter(lambda w: w != 0)


def _formula(draw_names):
    a, b, c = draw_names
    return f"({a} OR {b}) AND NOT {c}"


def _roundtrip(tmp_path, table, write, read):
    path = tmp_path / "x.csv"
    write(table, path)
    back = read(path, method=table["method"].iat[0])
    assert list(back["neuron"]) == list(table["neuron"])
    assert [json.loads(s) for s in back["structured"]] == [json.loads(s) for s in table["structured"]]
    assert list(back["explanation"]) == list(table["explanation"])


settings_ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(st.lists(names, min_size=1, max_size=5))
def test_clip_dissect_roundtrip(tmp_path, concepts):
    t = explanation_table(range(len(concepts)), "cd", [{"kind": "simple", "concept": c} for c in concepts],
                          source_score=np.linspace(0, 1, len(concepts)))
    _roundtrip(tmp_path, t, write_clip_dissect_csv, read_clip_dissect_csv)


@settings_
@given(st.lists(st.tuples(st.lists(st.tuples(weights, names), min_size=1, max_size=4), weights), min_size=1, max_size=4))
def test_linear_roundtrip(tmp_path, rows):
    dicts = [{"kind": "linear", "terms": [[w, c] for w, c in terms], "bias": b} for terms, b in rows]
    t = explanation_table(range(len(dicts)), "le", dicts)
    _roundtrip(tmp_path, t, write_linear_csv, read_linear_csv)


@settings_
@given(st.lists(st.lists(names, min_size=3, max_size=3), min_size=1, max_size=4))
def test_compositional_and_clustered_roundtrip(tmp_path, triples):
    t = explanation_table(range(len(triples)), "comp", [{"kind": "compositional", "formula": _formula(x)} for x in triples])
    _roundtrip(tmp_path, t, write_compositional_csv, read_compositional_csv)
    cl = [{"kind": "clustered", "clusters": [{"lower": 0.0, "upper": 1.5, "formula": _formula(x)},
                                             {"lower": 1.5, "upper": 3.0, "formula": x[0]}]} for x in triples]
    t = explanation_table(range(len(triples)), "cce", cl)
    _roundtrip(tmp_path, t, write_clustered_csv, read_clustered_csv)


def test_reads_peer_linear_padding(tmp_path):
    p = tmp_path / "le.csv"
    p.write_text("layer,unit,val correlation,weight0,concept0,weight1,concept1,bias\n"
                 "layer4,0,0.5,1.2,dog,0,0,0.1\nlayer4,1,0.4,0.7,cat,0.2,sofa,-0.3\n")
    df = read_linear_csv(p, method="le_label")
    assert list(df["length"]) == [1, 2] and list(df["source_score"]) == [0.5, 0.4]
    assert json.loads(df["params"].iat[0])["layer"] == "layer4"


@pytest.mark.parametrize("reader,text,row,col,what", [
    (read_clip_dissect_csv, "layer,unit,description,similarity\nl,0,dog,0.3\nl,x,cat,0.2\n", 2, "unit", "not a valid int"),
    (read_clip_dissect_csv, "layer,unit,description,similarity\nl,0,dog,0.3\nl,1,,0.2\n", 2, "description", "empty"),
    (read_clip_dissect_csv, "layer,unit,description,similarity\nl,0,dog,abc\n", 1, "similarity", "not a valid float"),
    (read_clip_dissect_csv, "layer,unit,description,similarity\nl,0,dog,1\nl,0,cat,1\n", 2, "unit", "already"),
    (read_linear_csv, "unit,weight0,concept0,weight1,concept1,bias\n0,1,dog,,,0\n1,,cat,,,0\n", 2, "weight0", "empty"),
    (read_linear_csv, "unit,weight0,concept0,weight1,concept1,bias\n0,1,dog,0.5,,0\n", 1, "concept1", "weight1"),
    (read_linear_csv, "unit,weight0,concept0,bias\n0,1,dog,\n", 1, "bias", "empty"),
    (read_compositional_csv, "unit,formula\n0,dog AND\n", 1, "formula", "cannot parse"),
    (read_clustered_csv, "unit,cluster,lower,upper,formula\n0,0,2,1,dog\n", 1, "upper", "below"),
    (read_clustered_csv, "unit,cluster,lower,upper,formula\n0,0,0,1,dog\n0,0,1,2,cat\n", 2, "cluster", "already"),
])
def test_error_names_file_row_column(tmp_path, reader, text, row, col, what):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError) as err:
        reader(p)
    msg = str(err.value)
    assert "bad.csv" in msg and f"row {row}," in msg and f"column '{col}'" in msg and what in msg


def test_missing_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("unit,desc\n0,dog\n")
    with pytest.raises(ValueError, match="bad.csv: missing column"):
        read_clip_dissect_csv(p)
