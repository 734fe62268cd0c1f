"""Tests that pin down explanations.py line by line (written against the survivors of ``make mutate``;
docs/testing.md lists what is left): the formula grammar and its error positions, the quoting of
names, probabilistic logic (SPEC sec. 2: AND = a*b, OR = 1-(1-a)(1-b), NOT = 1-a), the linear and
clustered predicted activations (cluster midpoints (l+u)/2) and the texts and errors users read."""

import json
import re

import numpy as np
import pytest

from neuronaudit.explanations import (
    KINDS,
    And,
    Concept,
    Explanation,
    Not,
    Or,
    _parse_cached,
    evaluate_formula,
    formula_concepts,
    formula_to_text,
    parse_formula,
    predicted_activation,
    predicted_matrix,
)


@pytest.fixture(autouse=True)
def _fresh_parse_cache():
    """Parse every formula afresh: a tree cached by an earlier test (or process) would hide the tokenizer."""
    _parse_cached.cache_clear()
    yield


def _raises(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------- grammar
def test_tokens_words_quotes_and_keywords_in_any_case():
    assert parse_formula("dark and not bright") == And(Concept("dark"), Not(Concept("bright")))
    assert parse_formula("a Or b") == Or(Concept("a"), Concept("b"))
    assert parse_formula("  ground \t beetle  ") == Concept("ground beetle")
    assert parse_formula("(a)OR(b)") == Or(Concept("a"), Concept("b"))
    _raises(ValueError, "malformed formula 'x\"y\"': unexpected token at position 1 ('y')", parse_formula,
            'x"y"')  # a quote ends a word: the quoted name is a second concept
    assert parse_formula('"y z"') == Concept("y z")
    assert parse_formula(r'"say \"hi\" \\ ok"') == Concept('say "hi" \\ ok')
    assert parse_formula('"a(b)" AND "NOT"') == And(Concept("a(b)"), Concept("NOT"))
    assert parse_formula('""') == Concept("")
    assert parse_formula("NOT NOT a") == Not(Not(Concept("a")))
    assert parse_formula("a OR b OR c") == Or(Or(Concept("a"), Concept("b")), Concept("c"))
    assert parse_formula("a AND (b OR c)") == And(Concept("a"), Or(Concept("b"), Concept("c")))
    assert parse_formula("((a))") == Concept("a")
    assert parse_formula("andes ornament notary") == Concept("andes ornament notary")


def test_parse_errors_name_what_and_where():
    _raises(ValueError, "malformed formula '': empty formula at position 0", parse_formula, "")
    _raises(ValueError, "malformed formula '   ': empty formula at position 0", parse_formula, "   ")
    _raises(ValueError, "malformed formula 'dog AND': expected a concept, NOT or '(' at end of input (position 7)",
            parse_formula, "dog AND")
    _raises(ValueError, "malformed formula 'AND dog': expected a concept, NOT or '(' at position 0 ('AND')",
            parse_formula, "AND dog")
    _raises(ValueError, "malformed formula 'a ) b': unexpected token at position 2 (')')", parse_formula, "a ) b")
    _raises(ValueError, "malformed formula '(a OR b': expected ')' to close '(' at position 0 at end of input "
            "(position 7)", parse_formula, "(a OR b")
    _raises(ValueError, "malformed formula 'NOT ((a b': expected ')' to close '(' at position 5 at end of input "
            "(position 9)", parse_formula, "NOT ((a b")
    _raises(ValueError, "malformed formula '(a b c': expected ')' to close '(' at position 0 at end of input "
            "(position 6)", parse_formula, "(a b c")
    _raises(ValueError, "malformed formula 'a (b)': unexpected token at position 2 ('(')", parse_formula, "a (b)")
    _raises(ValueError, "malformed formula '(a OR b c': expected ')' to close '(' at position 0 at end of input "
            "(position 9)", parse_formula, "(a OR b c")
    _raises(ValueError, "malformed formula 'a OR )': expected a concept, NOT or '(' at position 5 (')')",
            parse_formula, "a OR )")
    _raises(ValueError, "malformed formula '(a \"b\"': expected ')' to close '(' at position 0 at position 3 ('b')",
            parse_formula, '(a "b"')
    _raises(ValueError, "unterminated quoted concept name starting at position 4 in 'dog \"cat'", parse_formula,
            'dog "cat')
    _raises(ValueError, "dangling backslash at position 3 in '\"ab\\\\'", parse_formula, '"ab\\')
    _raises(TypeError, "formula must be a string, got int", parse_formula, 3)


def test_formula_to_text_fewest_parentheses_and_quotes():
    a, b, c = Concept("a"), Concept("b"), Concept("c")
    assert formula_to_text(Or(And(a, b), c)) == "a AND b OR c"
    assert formula_to_text(And(Or(a, b), c)) == "(a OR b) AND c"
    assert formula_to_text(And(a, Or(b, c))) == "a AND (b OR c)"
    assert formula_to_text(Or(a, Or(b, c))) == "a OR (b OR c)"
    assert formula_to_text(Or(Or(a, b), c)) == "a OR b OR c"
    assert formula_to_text(And(a, And(b, c))) == "a AND (b AND c)"
    assert formula_to_text(Or(a, And(b, c))) == "a OR b AND c"
    assert formula_to_text(Not(And(a, b))) == "NOT (a AND b)"
    assert formula_to_text(Not(Not(a))) == "NOT NOT a"
    assert formula_to_text(And(Not(a), Not(b))) == "NOT a AND NOT b"
    # names that need quotes: operator words (any case), brackets, quotes, backslashes, odd spacing, empty
    assert formula_to_text(Concept("salt and pepper")) == '"salt and pepper"'
    assert formula_to_text(Concept("Not")) == '"Not"'
    assert formula_to_text(Concept("a(b")) == '"a(b"'
    assert formula_to_text(Concept("b)")) == '"b)"'
    assert formula_to_text(Concept('say "hi"')) == '"say \\"hi\\""'
    assert formula_to_text(Concept("a\\b")) == '"a\\\\b"'
    assert formula_to_text(Concept(" a")) == '" a"'
    assert formula_to_text(Concept("a  b")) == '"a  b"'
    assert formula_to_text(Concept("")) == '""'
    assert formula_to_text(Concept("ground beetle")) == "ground beetle"
    assert formula_to_text(Concept("android")) == "android"
    with pytest.raises(TypeError, match="^not a formula node: 'a'$"):
        formula_to_text("a")


def test_formula_concepts_first_appearance_unique():
    node = parse_formula("(b OR a) AND NOT b OR c AND NOT (a OR d)")
    assert formula_concepts(node) == ["b", "a", "c", "d"]
    assert formula_concepts(Not(Concept("x"))) == ["x"]


def test_probabilistic_logic_on_values():
    a = np.array([0.0, 0.2, 1.0, 0.5])
    b = np.array([1.0, 0.5, 0.3, 0.5])
    look = {"a": a, "b": b}.__getitem__
    np.testing.assert_allclose(evaluate_formula(parse_formula("a AND b"), look), [0.0, 0.1, 0.3, 0.25])
    np.testing.assert_allclose(evaluate_formula(parse_formula("a OR b"), look), [1.0, 0.6, 1.0, 0.75])
    np.testing.assert_allclose(evaluate_formula(parse_formula("NOT a"), look), [1.0, 0.8, 0.0, 0.5])
    np.testing.assert_allclose(evaluate_formula(parse_formula("a AND NOT b OR NOT a"), look),
                               1 - (1 - a * (1 - b)) * a)
    # 0/1 presence: the usual Boolean logic
    x = np.array([0, 0, 1, 1])
    y = np.array([0, 1, 0, 1])
    bl = {"x": x, "y": y}.__getitem__
    np.testing.assert_array_equal(evaluate_formula(parse_formula("x OR y"), bl), [0, 1, 1, 1])
    np.testing.assert_array_equal(evaluate_formula(parse_formula("x AND NOT y"), bl), [0, 0, 1, 0])
    out = evaluate_formula(Concept("x"), bl)
    assert out.dtype == np.float64


# ------------------------------------------------------------------------------------------ explanations
def test_linear_text_signs_bias_and_quotes():
    lin = Explanation("linear", {"terms": [[-0.5, "dog"], [0.25, "cat"], [-1.0, "a OR b"]], "bias": -0.3})
    assert lin.to_text() == '-0.50*dog + 0.25*cat - 1.00*"a OR b" - 0.30'
    assert Explanation("linear", {"terms": [[0.5, "dog"]], "bias": 0.7}).to_text() == "0.50*dog + 0.70"
    assert Explanation("linear", {"terms": [], "bias": 0.7}).to_text() == "0.70"
    assert Explanation("linear", {"terms": [], "bias": -0.7}).to_text() == "-0.70"
    assert Explanation("linear", {"terms": []}).to_text() == "0"
    assert Explanation("linear", {"terms": [[1, "x"]]}).payload == {"terms": [[1.0, "x"]], "bias": 0.0}
    assert Explanation("simple", {"concept": "sea lion"}).to_text() == "sea lion"
    assert Explanation("compositional", {"formula": "(a or b) and c"}).to_text() == "(a OR b) AND c"
    cl = Explanation("clustered", {"clusters": [{"lower": 0.5, "upper": 1.25, "formula": "x and (y)"}]})
    assert cl.to_text() == "[0.5,1.25]: x AND y"


def test_concepts_and_length():
    cl = Explanation("clustered", {"clusters": [{"lower": 0, "upper": 1, "formula": "b OR a"},
                                                {"lower": 1, "upper": 2, "formula": "a AND c"}]})
    assert cl.concepts() == ["b", "a", "c"] and cl.length == 3
    lin = Explanation("linear", {"terms": [[1, "x"], [2, "y"], [3, "x"]]})
    assert lin.concepts() == ["x", "y"] and lin.length == 2
    assert Explanation.simple("dog").concepts() == ["dog"] and Explanation.simple("dog").length == 1
    assert KINDS == ("simple", "linear", "compositional", "clustered")


def test_dicts_and_json():
    e = Explanation.from_dict('{"kind": "linear", "terms": [[0.5, "b"]], "bias": 1}')
    assert e.kind == "linear" and e.payload == {"terms": [[0.5, "b"]], "bias": 1.0}
    assert e.to_dict() == {"kind": "linear", "terms": [[0.5, "b"]], "bias": 1.0}
    assert e.to_json() == '{"bias": 1.0, "kind": "linear", "terms": [[0.5, "b"]]}'
    # numpy numbers are plain floats after validation, so the dict is JSON-ready
    e = Explanation("linear", {"terms": [(np.float32(0.5), "b")], "bias": np.int64(2)})
    assert json.loads(e.to_json()) == {"bias": 2.0, "kind": "linear", "terms": [[0.5, "b"]]}
    # to_dict is a deep copy
    d = e.to_dict()
    d["terms"][0][0] = 9.0
    assert e.payload["terms"][0][0] == 0.5
    # the payload given is not modified
    p = {"terms": [[1, "x"]]}
    Explanation("linear", p)
    assert p == {"terms": [[1, "x"]]}
    _raises(ValueError, "an explanation dict needs a 'kind' key (one of ('simple', 'linear', 'compositional', "
            "'clustered')); got {'concept': 'x'}", Explanation.from_dict, {"concept": "x"})
    _raises(ValueError, "an explanation dict needs a 'kind' key (one of ('simple', 'linear', 'compositional', "
            "'clustered')); got ['simple']", Explanation.from_dict, '["simple"]')


def test_validation_errors():
    _raises(ValueError, "unknown explanation kind 'weird'; expected one of ('simple', 'linear', 'compositional', "
            "'clustered')", Explanation, "weird", {})
    _raises(ValueError, "simple explanation needs a non-empty string 'concept'; got {'concept': ''}", Explanation,
            "simple", {"concept": ""})
    _raises(ValueError, "simple explanation needs a non-empty string 'concept'; got {'concept': 3}", Explanation,
            "simple", {"concept": 3})
    _raises(ValueError, "linear explanation needs 'terms' = [[w, concept], ...]; got {'terms': 'dog'}", Explanation,
            "linear", {"terms": "dog"})
    _raises(ValueError, "linear term 1 must be [weight, concept]; got [1.0]", Explanation, "linear",
            {"terms": [[1.0, "a"], [1.0]]})
    _raises(ValueError, "linear term 0 must be [weight, concept]; got [1.0, 2.0]", Explanation, "linear",
            {"terms": [[1.0, 2.0]]})
    _raises(ValueError, "linear term 0 must be [weight, concept]; got 'a'", Explanation, "linear", {"terms": ["a"]})
    _raises(ValueError, "linear term 0 must be [weight, concept]; got [1, 'a', 'b']", Explanation, "linear",
            {"terms": [[1, "a", "b"]]})
    _raises(ValueError, "weight of linear term 0 must be a number, got True", Explanation, "linear",
            {"terms": [[True, "a"]]})
    _raises(ValueError, "weight of linear term 0 must be a number, got '1'", Explanation, "linear",
            {"terms": [["1", "a"]]})
    _raises(ValueError, "linear bias must be a number, got None", Explanation, "linear", {"terms": [], "bias": None})
    _raises(ValueError, "compositional explanation needs a string 'formula'; got {'formula': 1}", Explanation,
            "compositional", {"formula": 1})
    with pytest.raises(ValueError, match="malformed formula"):
        Explanation("compositional", {"formula": "a AND"})
    _raises(ValueError, "clustered explanation needs a non-empty 'clusters' list; got {'clusters': []}", Explanation,
            "clustered", {"clusters": []})
    _raises(ValueError, "clustered explanation needs a non-empty 'clusters' list; got {'clusters': 'x'}",
            Explanation, "clustered", {"clusters": "x"})
    _raises(ValueError, "cluster 1 needs keys lower, upper, formula; got {'lower': 0}", Explanation, "clustered",
            {"clusters": [{"lower": 0, "upper": 1, "formula": "a"}, {"lower": 0}]})
    _raises(ValueError, "cluster 0 needs keys lower, upper, formula; got 'a'", Explanation, "clustered",
            {"clusters": ["a"]})
    _raises(ValueError, "cluster 0 upper must be a number, got 'x'", Explanation, "clustered",
            {"clusters": [{"lower": 0, "upper": "x", "formula": "a"}]})
    _raises(ValueError, "cluster 0 lower must be a number, got 'x'", Explanation, "clustered",
            {"clusters": [{"lower": "x", "upper": 1, "formula": "a"}]})
    with pytest.raises(ValueError, match="malformed formula"):
        Explanation("clustered", {"clusters": [{"lower": 0, "upper": 1, "formula": "(a"}]})
    # tuples are accepted for terms and clusters, and numbers are plain floats afterwards
    e = Explanation("clustered", ({"clusters": ({"lower": np.int64(1), "upper": 2, "formula": "a", "x": 1},)}))
    assert e.payload == {"clusters": [{"lower": 1.0, "upper": 2.0, "formula": "a"}]}
    assert type(e.payload["clusters"][0]["lower"]) is float
    e = Explanation("linear", {"terms": ((np.int64(2), "a"),), "bias": np.float32(0.5)})
    assert e.payload == {"terms": [[2.0, "a"]], "bias": 0.5} and type(e.payload["terms"][0][0]) is float


# --------------------------------------------------------------------------------- predicted activations
def test_predicted_activation_kinds_by_hand():
    pres = {"a": np.array([0.0, 1.0, 0.5]), "b": np.array([1.0, 1.0, 0.2]), "c": np.array([0, 1, 1])}
    s = predicted_activation("a", pres)
    np.testing.assert_array_equal(s, [0.0, 1.0, 0.5])
    s[0] = 9.0
    assert pres["a"][0] == 0.0  # a copy, not a view of the presence
    s = predicted_activation({"kind": "simple", "concept": "c"}, pres)
    assert s.dtype == np.float64 and s.tolist() == [0.0, 1.0, 1.0]
    lin = Explanation("linear", {"terms": [[2.0, "a"], [-1.0, "b"], [0.5, "a"]], "bias": 0.25})
    np.testing.assert_allclose(predicted_activation(lin, pres), [-0.75, 1.75, 1.30])
    np.testing.assert_allclose(predicted_activation({"kind": "linear", "terms": [[3, "c"]]}, pres), [0, 3, 3])
    # clustered: sum_j (l_j + u_j)/2 * s(F_j)
    cl = {"kind": "clustered", "clusters": [{"lower": 1, "upper": 2, "formula": "a"},
                                            {"lower": 2, "upper": 6, "formula": "NOT b"}]}
    np.testing.assert_allclose(predicted_activation(cl, pres), [0.0, 1.5, 0.75 + 3.2])
    np.testing.assert_allclose(predicted_activation({"kind": "compositional", "formula": "a OR b"}, pres),
                               [1.0, 1.0, 0.6])
    _raises(ValueError, "linear explanation with no terms has no input length; give at least one term",
            predicted_activation, {"kind": "linear", "terms": [], "bias": 1.0}, pres)
    with pytest.raises(KeyError, match=r"presence lacks concepts \['y', 'z'\] named by explanation "
                       r"'y AND NOT a OR z'"):
        predicted_activation({"kind": "compositional", "formula": "y AND NOT a OR z"}, pres)
    # a callable presence is not checked up front (it may compute concepts on demand)
    calls = []
    s = predicted_activation("dog", lambda name: calls.append(name) or np.ones(2))
    assert calls == ["dog"] and s.tolist() == [1.0, 1.0]


def test_predicted_matrix_by_hand_duplicates_and_dtypes():
    pm = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.int8)
    exps = [
        "b",
        Explanation("linear", {"terms": [[1.0, "a"], [2.0, "a"], [-1.0, "c"]], "bias": 0.5}),
        {"kind": "linear", "terms": [[0.0, "b"]], "bias": -1},
        {"kind": "compositional", "formula": "a AND NOT c"},
        {"kind": "clustered", "clusters": [{"lower": 2, "upper": 4, "formula": "b OR c"}]},
    ]
    out = predicted_matrix(exps, {"a": 0, "b": 1, "c": 2}, pm)
    assert out.dtype == np.float64 and out.shape == (3, 5)
    np.testing.assert_array_equal(out[:, 0], [0, 1, 1])
    np.testing.assert_array_equal(out[:, 1], [3 - 1 + 0.5, -1 + 0.5, 3 + 0.5])
    np.testing.assert_array_equal(out[:, 2], [-1, -1, -1])
    np.testing.assert_array_equal(out[:, 3], [0, 0, 1])
    np.testing.assert_array_equal(out[:, 4], [3, 3, 3])
    # a sequence of names is the same as the mapping to their positions; only formulas
    np.testing.assert_array_equal(predicted_matrix(exps, ["a", "b", "c"], pm), out)
    np.testing.assert_array_equal(predicted_matrix(exps[3:], ["a", "b", "c"], pm), out[:, 3:])
    np.testing.assert_array_equal(predicted_matrix(exps[:1], ["a", "b", "c"], pm), out[:, :1])
    _raises(ValueError, "presence_matrix must be 2-D (N, T); got shape (3,)", predicted_matrix, exps, ["a", "b", "c"],
            pm[:, 0])


def test_predicted_matrix_missing_concepts_message():
    names = ["a"]
    pm = np.ones((2, 1))
    exps = ["a"] + [f"x{i}" for i in range(25)]
    with pytest.raises(KeyError) as err:
        predicted_matrix(exps, names, pm)
    msg = err.value.args[0]
    assert msg.startswith("presence matrix lacks concepts named by 25 explanation(s): explanation 1 ('x0'): ['x0']; "
                          "explanation 2 ('x1'): ['x1']; ")
    assert msg.endswith("explanation 20 ('x19'): ['x19']")  # the first 20 only


def test_names_with_capital_x_and_escapes_at_the_end():
    # (guards against the tokenizer's character sets growing: 'X' is an ordinary letter)
    assert parse_formula("X-ray OR Xylophone") == Or(Concept("X-ray"), Concept("Xylophone"))
    assert formula_to_text(Concept("X-ray")) == "X-ray"
    # an escaped quote as the last character leaves the name unterminated
    _raises(ValueError, "unterminated quoted concept name starting at position 0 in '\"a\\\\\"'", parse_formula,
            '"a\\"')
    assert parse_formula('"a\\"" OR b') == Or(Concept('a"'), Concept("b"))


def test_zero_weights_in_text():
    assert Explanation("linear", {"terms": [[0.0, "a"], [0.0, "b"]], "bias": 0.0}).to_text() == "0.00*a + 0.00*b"
    assert Explanation("linear", {"terms": [[-0.004, "a"]]}).to_text() == "-0.00*a"


def test_float32_and_dataframe_presence_give_float64():
    import pandas as pd

    rng = np.random.default_rng(3)
    p32 = {"a": rng.random(6).astype(np.float32), "b": rng.random(6).astype(np.float32)}
    lin = {"kind": "linear", "terms": [[0.1, "a"], [0.7, "b"]], "bias": 0.0}
    out = predicted_activation(lin, p32)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, 0.1 * p32["a"].astype(np.float64) + 0.7 * p32["b"].astype(np.float64))
    pm = np.c_[p32["a"], p32["b"]]
    mat = predicted_matrix([lin, "a"], ["a", "b"], pm)
    assert mat.dtype == np.float64
    np.testing.assert_allclose(mat[:, 0], out, rtol=1e-15)
    np.testing.assert_array_equal(mat[:, 1], p32["a"].astype(np.float64))
    # a DataFrame of concept columns is a presence table (looked up by column, checked up front)
    df = pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 0.5]})
    np.testing.assert_allclose(predicted_activation({"kind": "compositional", "formula": "a OR b"}, df), [1.0, 1.0])
    with pytest.raises(KeyError, match=r"presence lacks concepts \['c'\]"):
        predicted_activation("c", df)


# ------------------------------------------------------------------------------------- explanation table
def test_explanation_table_rows_columns_and_dtypes():
    from neuronaudit.explanations import TABLE_COLUMNS, explanation_table

    assert TABLE_COLUMNS == ["neuron", "method", "explanation", "structured", "length", "params", "source_score"]
    dicts = [{"kind": "simple", "concept": "dog"},
             {"kind": "linear", "terms": [[0.5, "cat"], [-0.25, "cat"], [1, "sea lion"]], "bias": 0},
             {"kind": "compositional", "formula": "(a or b) and not a"}]
    df = explanation_table((k for k in (7, 3, 11)), "le", dicts, params={"width": 10, "alpha": 0.5})
    assert list(df.columns) == TABLE_COLUMNS
    assert df["neuron"].tolist() == [7, 3, 11] and df["neuron"].dtype == np.int64
    assert df["method"].tolist() == ["le"] * 3
    assert df["explanation"].tolist() == ["dog", "0.50*cat - 0.25*cat + 1.00*sea lion", "(a OR b) AND NOT a"]
    assert df["structured"].tolist() == [
        '{"concept": "dog", "kind": "simple"}',
        '{"bias": 0.0, "kind": "linear", "terms": [[0.5, "cat"], [-0.25, "cat"], [1.0, "sea lion"]]}',
        '{"formula": "(a or b) and not a", "kind": "compositional"}',
    ]
    assert df["length"].tolist() == [1, 2, 2] and df["length"].dtype == np.int64
    assert df["params"].tolist() == ['{"alpha": 0.5, "width": 10}'] * 3
    assert np.isnan(df["source_score"]).all() and df["source_score"].dtype == np.float64
    # per-row methods, params and scores
    df = explanation_table([1, 2], ["a", "b"], dicts[:2], params=['{"x": 1}', "{}"], source_score=[1, 0.5])
    assert df["method"].tolist() == ["a", "b"] and df["params"].tolist() == ['{"x": 1}', "{}"]
    assert df["source_score"].tolist() == [1.0, 0.5] and df["source_score"].dtype == np.float64
    df = explanation_table([4], "m", dicts[:1])
    assert df["params"].tolist() == ["{}"] and len(df) == 1
    # the schema's dtypes hold for int32 / integer inputs and for an empty table too
    df = explanation_table(np.array([5], dtype=np.int32), "m", dicts[:1], source_score=[2])
    assert df["neuron"].dtype == np.int64 and df["source_score"].dtype == np.float64
    empty = explanation_table([], "m", [], source_score=[])
    assert len(empty) == 0 and list(empty.columns) == TABLE_COLUMNS
    assert empty["neuron"].dtype == np.int64 and empty["length"].dtype == np.int64
    assert empty["source_score"].dtype == np.float64
    _raises(ValueError, "2 neurons but 1 explanations", explanation_table, [1, 2], "m", dicts[:1])
    with pytest.raises(ValueError, match="kind"):
        explanation_table([1], "m", [{"concept": "dog"}])
