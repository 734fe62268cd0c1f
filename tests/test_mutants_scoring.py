"""Tests that pin down scoring.py line by line (written against the survivors of ``make mutate``;
docs/testing.md lists what is left). Values are checked against np.corrcoef / the Mann-Whitney U
definition / hand-computed examples; errors against their full text."""

import re

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from neuronaudit.scoring import auc_scores, correlation_scores, pairwise_correlation, standardise

# a (7,)-vector whose population z-scores z give sum(z*z)/7 = 1 + 1 ulp (found by search): a perfectly
# correlated pair then computes to rho > 1 before clipping, an anti-correlated one to rho < -1
X_ROUND = np.random.default_rng(13).standard_normal(7)


def _raises(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------ standardise
def test_standardise_population_zscores_and_moments():
    x = np.array([[1.0, 10.0], [2.0, 10.0], [6.0, 10.0]])
    z, mean, std = standardise(x)
    # column 0: mean 3, population std sqrt(((-2)^2 + (-1)^2 + 3^2) / 3) = sqrt(14/3)
    np.testing.assert_allclose(z[:, 0], np.array([-2.0, -1.0, 3.0]) / np.sqrt(14 / 3))
    assert np.isnan(z[:, 1]).all()  # constant column
    np.testing.assert_allclose(mean, [3.0, 10.0])
    np.testing.assert_allclose(std, [np.sqrt(14 / 3), 0.0])
    assert mean.shape == (2,) and std.shape == (2,)
    # one column: mean and std keep their (1,) shape (only the reduced axis is squeezed)
    z1, m1, s1 = standardise(x[:, :1])
    assert m1.shape == (1,) and s1.shape == (1,) and m1[0] == 3.0
    # axis=1 standardises rows
    zr, mr, sr = standardise(x.T, axis=1)
    np.testing.assert_allclose(zr[0], z[:, 0])
    assert mr.shape == (2,) and np.allclose(mr, [3.0, 10.0])


def test_standardise_is_float64_whatever_the_input():
    x32 = np.array([[0.1], [0.2], [0.7], [1.3]], dtype=np.float32)
    z, mean, std = standardise(x32)
    assert z.dtype == np.float64 and mean.dtype == np.float64
    x64 = x32.astype(np.float64)
    np.testing.assert_array_equal(z, (x64 - x64.mean()) / x64.std())
    zi, _, _ = standardise(np.array([[0], [1], [2]], dtype=np.int8))
    np.testing.assert_allclose(zi[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])


def test_constant_column_with_rounding_in_its_mean_is_nan():
    # mean(0.1, 0.1, 0.1) = 0.10000000000000002 and std = 1.4e-17 > 0: without an exact constancy test
    # the z-scores come out as -1 everywhere instead of NaN (bug found by mutation testing)
    x = np.full((3, 1), 0.1)
    assert x.std() > 0
    z, _, std = standardise(x)
    assert np.isnan(z).all() and std[0] == 0.0
    rng = np.random.default_rng(0)
    m = pairwise_correlation(rng.standard_normal((3, 2)), x)
    assert np.isnan(m).all()
    # beside other columns (the constancy test is per column, not against the whole matrix's max / min)
    x2 = np.c_[x, [-5.0, 5.0, 0.0]]
    z2, _, std2 = standardise(x2)
    assert np.isnan(z2[:, 0]).all() and std2[0] == 0.0 and np.isfinite(z2[:, 1]).all()
    zr, _, _ = standardise(x2.T, axis=1)
    assert np.isnan(zr[0]).all() and np.isfinite(zr[1]).all()


def test_standardise_non_finite_columns_quietly_nan():
    x = np.array([[1.0, np.inf, np.nan], [2.0, 1.0, 1.0], [4.0, 2.0, 2.0]])
    with np.errstate(all="raise"):  # inf - inf is computed under errstate(invalid="ignore")
        z, _, _ = standardise(x)
    assert np.isfinite(z[:, 0]).all() and np.isnan(z[:, 1:]).all()


# ------------------------------------------------------------------------------ correlation_scores
def test_correlation_against_corrcoef_one_dimensional_and_blocks():
    rng = np.random.default_rng(5)
    a = rng.standard_normal(40)
    s = 0.5 * a + rng.standard_normal(40)
    res = correlation_scores(a, s)  # 1-D inputs are one column each
    assert res.rho.shape == (1,) and len(res) == 1 and res.ok.tolist() == [True]
    assert res.rho[0] == pytest.approx(np.corrcoef(a, s)[0, 1], abs=1e-12)
    # more columns than a block: every block is scored, same as one block
    A = rng.standard_normal((40, 3))
    S = A[:, rng.integers(0, 3, 7)] + rng.standard_normal((40, 7))
    pairing = rng.integers(0, 3, 7)
    one = correlation_scores(A, S, pairing=pairing, block=512)
    for block in (1, 2, 3):
        blocked = correlation_scores(A, S, pairing=pairing, block=block)
        np.testing.assert_allclose(blocked.rho, one.rho, rtol=0, atol=1e-14)
        assert list(blocked.reason) == [""] * 7
    for j in range(7):
        assert one.rho[j] == pytest.approx(np.corrcoef(A[:, pairing[j]], S[:, j])[0, 1], abs=1e-12)


def test_correlation_accepts_integer_and_boolean_columns():
    a = np.array([[0, 1], [1, 3], [2, 2], [3, 8]], dtype=np.int64)
    s = np.array([[False, True], [False, False], [True, True], [True, False]])
    res = correlation_scores(a, s)
    for k in range(2):
        assert res.rho[k] == pytest.approx(np.corrcoef(a[:, k], s[:, k].astype(float))[0, 1], abs=1e-12)
    # neuron indices as floats (e.g. a column read from a table) are cast to integers
    res2 = correlation_scores(a, s[:, [1, 0]], pairing=np.array([1.0, 0.0]))
    np.testing.assert_allclose(res2.rho, res.rho[[1, 0]], rtol=0, atol=1e-14)


def test_correlation_is_clipped_into_minus_one_one():
    x = X_ROUND[:, None]
    # unclipped, both exceed 1 in magnitude by one ulp (the reason for the clip)
    z, _, _ = standardise(x)
    assert (z[:, 0] @ z[:, 0]) / 7 > 1.0
    res = correlation_scores(np.c_[x, x], np.c_[x, -x])
    assert res.rho[0] == 1.0 and res.rho[1] == -1.0
    m = pairwise_correlation(x, np.c_[x, -x])
    assert m[0, 0] == 1.0 and m[0, 1] == -1.0


def test_correlation_degenerate_reasons_in_every_block_and_quiet():
    a = np.array([[1.0, 2.0, 0.1, 5.0], [2.0, 2.0, 0.1, 1.0], [4.0, 2.0, 0.1, np.nan]])
    s = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 2.0, 2.0], [1.0, 3.0, 0.0, 3.0]])
    with np.errstate(all="raise"):
        res = correlation_scores(a, s, block=3)
    assert list(res.reason) == ["", "constant activation", "constant activation", "non-finite activation"]
    assert not np.isnan(res.rho[0]) and np.isnan(res.rho[1:]).all()
    assert res.ok.tolist() == [True, False, False, False]
    # a column that is both: non-finite wins; the activation reason wins over the prediction's
    a2 = np.array([[np.nan, 1.0], [np.nan, 1.0]])
    s2 = np.array([[1.0, np.inf], [2.0, 1.0]])
    res2 = correlation_scores(a2, s2)
    assert list(res2.reason) == ["non-finite activation", "constant activation"]
    res3 = correlation_scores(np.array([[1.0], [2.0], [3.0]]), np.array([[np.inf], [np.inf], [np.inf]]))
    assert list(res3.reason) == ["non-finite prediction"]


def test_correlation_errors_name_the_shapes_and_bad_pairings():
    a = np.zeros((5, 3))
    _raises(ValueError, "activations have 5 inputs but predictions have 4", correlation_scores, a, np.zeros((4, 3)))
    _raises(ValueError, "activations have 3 columns and predictions 2: give `pairing` (the neuron index of each "
            "prediction column)", correlation_scores, a, np.zeros((5, 2)))
    _raises(ValueError, "pairing must have one neuron index per prediction column (2)", correlation_scores, a,
            np.zeros((5, 2)), pairing=[0, 1, 2])
    _raises(IndexError, "pairing column 1 names neuron 3, but there are 3", correlation_scores, a, np.zeros((5, 2)),
            pairing=[2, 3])
    _raises(IndexError, "pairing column 2 names neuron -1, but there are 3", correlation_scores, a,
            np.zeros((5, 3)), pairing=[0, 1, -1])


# ---------------------------------------------------------------------------- pairwise_correlation
def test_pairwise_against_corrcoef_every_block_and_degenerate_columns():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((30, 5))
    C = (rng.random((30, 4)) < 0.4).astype(float)
    C[:, 2] = 1.0  # constant concept column
    A[:, 3] = np.nan
    for block in (1, 2, 256):
        m = pairwise_correlation(A, C, block=block)
        assert m.shape == (5, 4)
        for i in range(5):
            for j in range(4):
                if i == 3 or j == 2:
                    assert np.isnan(m[i, j])
                else:
                    assert m[i, j] == pytest.approx(np.corrcoef(A[:, i], C[:, j])[0, 1], abs=1e-12)
    _raises(ValueError, "A has 30 inputs but C has 29", pairwise_correlation, A, C[:29])


# ------------------------------------------------------------------------------------------ auc_scores
def _auc_u(s, y):
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    return u / ((y == 1).sum() * (y == 0).sum())


def test_auc_hand_computed_and_one_dimensional():
    # scores 1 2 3 4 with labels 0 1 0 1: of the 4 (positive, negative) pairs 3 are ordered -> 0.75
    auc = auc_scores(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 1, 0, 1]))
    assert auc.shape == (1,) and auc[0] == 0.75
    # ties count one half: scores 1 1 with labels 0 1 -> 0.5
    assert auc_scores([[1], [1]], [[0], [1]])[0] == 0.5
    # integer scores and exactly one positive / one negative
    s = np.array([[3, 2], [1, 5], [2, 4], [0, 1]])
    y = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    np.testing.assert_allclose(auc_scores(s, y), [1.0, 2 / 3])


def test_auc_non_finite_columns_and_missing_scores():
    rng = np.random.default_rng(11)
    s = rng.standard_normal((30, 3))
    y = np.zeros((30, 3), dtype=int)
    y[::3] = 1
    s[4, 1] = np.inf
    auc = auc_scores(s, y)
    assert np.isnan(auc[1]) and not np.isnan(auc[[0, 2]]).any()
    for k in (0, 2):
        assert auc[k] == pytest.approx(_auc_u(s[:, k], y[:, k]))
    # None (a missing score) counts as non-finite
    lst = [[0.5, 1.0], [None, 2.0], [0.1, 3.0]]
    auc = auc_scores(lst, [[1, 0], [0, 1], [0, 1]])
    assert np.isnan(auc[0]) and auc[1] == 1.0
    # pairwise: the non-finite score row is NaN, the others are finite
    mat = auc_scores(s, y[:, :2], pairwise=True)
    assert np.isnan(mat[1]).all() and np.isfinite(mat[[0, 2]]).all()


def test_auc_single_class_columns_are_nan_quietly():
    s = np.array([[0.1, 0.2], [0.4, 0.3], [0.35, 0.9]])
    y = np.array([[0, 1], [0, 1], [0, 1]])
    with np.errstate(all="raise"):
        paired = auc_scores(s, y)
        mat = auc_scores(s, np.c_[y, [1, 0, 1]], pairwise=True)
    assert np.isnan(paired).all()
    assert np.isnan(mat[:, :2]).all() and np.isfinite(mat[:, 2]).all()
    # column 0 vs labels 1 0 1: positives 0.1, 0.35 both below the negative 0.4 -> AUC 0
    # column 1 (0.2 0.3 0.9): positives 0.2, 0.9 vs 0.3 -> 1 of 2 pairs ordered -> 0.5
    np.testing.assert_array_equal(mat[:, 2], [0.0, 0.5])


def test_auc_pairwise_is_the_default_for_different_shapes():
    rng = np.random.default_rng(12)
    s = rng.standard_normal((25, 3))
    y = (rng.random((25, 2)) < 0.5).astype(int)
    mat = auc_scores(s, y)
    assert mat.shape == (3, 2)
    for k in range(3):
        for m in range(2):
            assert mat[k, m] == pytest.approx(_auc_u(s[:, k], y[:, m]))
    # equal shapes default to paired, and pairwise=True still gives the full matrix
    assert auc_scores(s[:, :2], y).shape == (2,)
    full = auc_scores(s[:, :2], y, pairwise=True)
    assert full.shape == (2, 2) and full[0, 1] == pytest.approx(_auc_u(s[:, 0], y[:, 1]))
    _raises(ValueError, "paired AUC needs equal shapes; got (25, 3) and (25, 2)", auc_scores, s, y, pairwise=False)


def test_auc_labels_binary_float_labels_and_nan_labels():
    s = np.array([0.3, 0.1, 0.8, 0.5])
    assert auc_scores(s, np.array([0.0, 0.0, 1.0, 1.0]))[0] == 1.0  # float 0/1 labels
    assert auc_scores(s, np.array([True, False, True, False]))[0] == 0.75
    # NaN (unknown) labels pass the check and make that column's AUC NaN
    auc = auc_scores(np.c_[s, s], np.array([[0.0, 0.0], [np.nan, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    assert np.isnan(auc[0]) and auc[1] == 1.0
    _raises(ValueError, "labels must be binary 0/1", auc_scores, s, np.array([0.0, 2.0, 1.0, 0.0]))
    _raises(ValueError, "labels must be binary 0/1", auc_scores, s, np.array([0, 2, 1, 0]))
    _raises(ValueError, "scores have 4 inputs but labels have 3", auc_scores, s, np.array([0, 1, 1]))
