import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronaudit.explanations import (
    And,
    Concept,
    Explanation,
    Not,
    Or,
    formula_to_text,
    parse_formula,
    predicted_activation,
    predicted_matrix,
)


def test_parse_precedence_and_multiword_names():
    node = parse_formula("(dog OR ground beetle) AND NOT grass OR sea_lion AND t-shirt")
    assert node == Or(
        And(Or(Concept("dog"), Concept("ground beetle")), Not(Concept("grass"))),
        And(Concept("sea_lion"), Concept("t-shirt")),
    )
    assert parse_formula('"cats AND dogs" OR x') == Or(Concept("cats AND dogs"), Concept("x"))
    assert parse_formula("a AND b AND c") == And(And(Concept("a"), Concept("b")), Concept("c"))


@pytest.mark.parametrize("bad", ["", "dog AND", "(dog OR cat", "dog )", "AND dog", '"open', "NOT"])
def test_parse_errors_name_position(bad):
    with pytest.raises(ValueError, match="position"):
        parse_formula(bad)


names = st.text(alphabet=st.sampled_from(list("ab AND OR NOT()\"\\_-x")), min_size=1, max_size=12)
nodes = st.recursive(
    names.map(Concept),
    lambda kids: st.one_of(
        st.builds(And, kids, kids), st.builds(Or, kids, kids), st.builds(Not, kids)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(nodes)
def test_formula_round_trip(node):
    assert parse_formula(formula_to_text(node)) == node


def test_explanation_views_and_dicts():
    lin = Explanation.from_dict({"kind": "linear", "terms": [[0.42, "dog"], [0.1, "cat"]], "bias": 0})
    assert lin.to_text() == "0.42*dog + 0.10*cat"
    assert lin.length == 2 and lin.concepts() == ["dog", "cat"]
    comp = Explanation.from_dict({"kind": "compositional", "formula": "(dog OR cat) AND NOT dog"})
    assert comp.concepts() == ["dog", "cat"] and comp.length == 2
    cl = Explanation.from_dict(
        {"kind": "clustered", "clusters": [{"lower": 0, "upper": 2, "formula": "dog"}, {"lower": 2, "upper": 4, "formula": "cat OR x"}]}
    )
    assert cl.to_text() == "[0,2]: dog; [2,4]: cat OR x"
    for e in (lin, comp, cl, Explanation.simple("dog")):
        assert Explanation.from_dict(e.to_dict()) == e
        assert Explanation.from_dict(e.to_json()) == e
    with pytest.raises(ValueError, match="kind"):
        Explanation.from_dict({"kind": "weird"})


def test_predicted_activation_formulas():
    rng = np.random.default_rng(0)
    pres = {k: rng.random(50) for k in ("dog", "cat", "grass")}
    d, c, g = pres["dog"], pres["cat"], pres["grass"]
    comp = {"kind": "compositional", "formula": "(dog OR cat) AND NOT grass"}
    np.testing.assert_allclose(predicted_activation(comp, pres), (1 - (1 - d) * (1 - c)) * (1 - g))
    lin = {"kind": "linear", "terms": [[2.0, "dog"], [-1.0, "cat"]], "bias": 0.5}
    np.testing.assert_allclose(predicted_activation(lin, pres), 2 * d - c + 0.5)
    cl = {"kind": "clustered", "clusters": [{"lower": 1, "upper": 3, "formula": "dog AND cat"}, {"lower": 0, "upper": 1, "formula": "grass"}]}
    np.testing.assert_allclose(predicted_activation(cl, pres), 2 * d * c + 0.5 * g)
    np.testing.assert_allclose(predicted_activation("dog", pres.__getitem__), d)
    with pytest.raises(KeyError, match="zebra"):
        predicted_activation("zebra", pres)


def test_predicted_matrix_matches_single_and_reports_missing():
    rng = np.random.default_rng(1)
    names = ["dog", "cat", "grass"]
    pm = rng.random((40, 3))
    exps = [
        "cat",
        {"kind": "linear", "terms": [[0.3, "dog"], [0.7, "grass"]], "bias": 1},
        {"kind": "compositional", "formula": "dog AND NOT cat"},
        {"kind": "clustered", "clusters": [{"lower": 1, "upper": 2, "formula": "grass"}]},
    ]
    out = predicted_matrix(exps, names, pm)
    pres = dict(zip(names, pm.T, strict=True))
    for j, e in enumerate(exps):
        np.testing.assert_allclose(out[:, j], predicted_activation(e, pres))
    with pytest.raises(KeyError, match=r"explanation 1 .*'zebra'"):
        predicted_matrix(["dog", {"kind": "compositional", "formula": "zebra OR dog"}], names, pm)
