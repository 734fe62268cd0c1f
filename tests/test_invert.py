import numpy as np
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from neuronaudit.explainers.invert import auc_matrix, invert, invert_table
from neuronaudit.explanations import Explanation


def _labels(n=3000, c=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c)) < 0.08, rng


def test_auc_matrix_matches_sklearn_with_ties():
    lab, rng = _labels(n=500, c=6)
    acts = np.round(rng.normal(size=(500, 3)), 1)  # ties
    auc = auc_matrix(lab, acts)
    for c in range(6):
        for k in range(3):
            np.testing.assert_allclose(auc[c, k], roc_auc_score(lab[:, c], acts[:, k]))
    np.testing.assert_allclose(auc_matrix(sp.csr_matrix(lab), acts), auc)


def test_single_concept_and_planted_or():
    lab, rng = _labels()
    names = [f"c{i}" for i in range(lab.shape[1])]
    a_or = (lab[:, 4] | lab[:, 9]).astype(float)
    acts = np.stack([lab[:, 7] + 0.3 * rng.normal(size=len(lab)), a_or + 0.3 * rng.normal(size=len(lab))], axis=1)
    l1 = invert(lab, acts, names, length=1)
    assert l1["formula"][0] == "c7" and l1["structured"][0] == {"kind": "simple", "concept": "c7"}
    l3 = invert(lab, acts, names, length=3, beam_size=5)
    assert l3["formula"][0].startswith("c7")
    e = Explanation.from_dict(l3["structured"][1])
    assert {"c4", "c9"} <= set(e.concepts())
    assert l3["auc"][1] > 0.95 and l3["auc"][1] >= l1["auc"][1]


def test_planted_and_not_and_table():
    lab, rng = _labels(n=4000, c=12, seed=5)
    lab[:, 2] |= rng.random(4000) < 0.3
    target = lab[:, 2] & ~lab[:, 5]
    acts = target[:, None] + 0.2 * rng.normal(size=(4000, 1))
    names = [f"concept {i}" for i in range(12)]
    res = invert(sp.csr_matrix(lab), acts, names, length=2, beam_size=5)
    assert res["formula"][0] == "concept 2 AND NOT concept 5"
    df = invert_table(lab, acts, names, length=2, beam_size=5)
    assert df["method"].iat[0] == "invert_l2" and df["length"].iat[0] == 2
