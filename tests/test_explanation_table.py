"""The explanation-table schema (neuronaudit.explanations.TABLE_COLUMNS / explanation_table)."""

import json

import numpy as np
import pytest

from neuronaudit.explainers import importers
from neuronaudit.explanations import TABLE_COLUMNS, explanation_table


def test_columns_dtypes_and_values():
    t = explanation_table([3, 1], "le", [{"kind": "simple", "concept": "dog"},
                                         {"kind": "linear", "terms": [[0.5, "cat"], [-0.25, "car"]], "bias": 0.0}],
                          params={"b": 1, "a": 2})
    assert list(t.columns) == TABLE_COLUMNS
    assert t["neuron"].dtype == np.int64 and t["length"].dtype == np.int64 and t["source_score"].dtype == float
    assert t["neuron"].tolist() == [3, 1] and t["method"].tolist() == ["le", "le"]
    assert t["explanation"].tolist() == ["dog", "0.50*cat - 0.25*car"] and t["length"].tolist() == [1, 2]
    assert json.loads(t["structured"].iloc[0]) == {"kind": "simple", "concept": "dog"}
    assert t["params"].tolist() == ['{"a": 2, "b": 1}'] * 2  # sorted keys
    assert t["source_score"].isna().all()


def test_per_row_methods_params_scores_and_errors():
    t = explanation_table(np.array([0, 1]), ["a", "b"], [{"kind": "simple", "concept": "x"}] * 2,
                          params=["{}", '{"k": 1}'], source_score=[0.5, 1])
    assert t["method"].tolist() == ["a", "b"] and t["params"].tolist() == ["{}", '{"k": 1}']
    assert t["source_score"].tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="2 neurons but 1 explanations"):
        explanation_table([0, 1], "m", [{"kind": "simple", "concept": "x"}])
    with pytest.raises(ValueError):
        explanation_table([0], "m", [{"kind": "nonsense"}])
    assert importers.explanation_table is explanation_table and importers.TABLE_COLUMNS is TABLE_COLUMNS
