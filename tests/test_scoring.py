import numpy as np
from scipy.stats import mannwhitneyu, pearsonr

from neuronaudit.scoring import auc_scores, correlation_scores, pairwise_correlation


def test_correlation_matches_pearson_and_pairing():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 4))
    s = a + rng.standard_normal((200, 4))
    res = correlation_scores(a, s)
    for k in range(4):
        assert np.isclose(res.rho[k], pearsonr(a[:, k], s[:, k])[0])
    res2 = correlation_scores(a, s[:, [2, 0]], pairing=[2, 0])
    np.testing.assert_allclose(res2.rho, res.rho[[2, 0]])


def test_degenerate_columns_give_nan_with_reason():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 4))
    a[:, 1] = 3.0
    a[5, 2] = np.nan
    s = rng.standard_normal((50, 4))
    s[:, 3] = 0.0
    res = correlation_scores(a, s)
    assert np.isfinite(res.rho[0])
    assert np.isnan(res.rho[1:]).all()
    assert list(res.reason) == ["", "constant activation", "non-finite activation", "constant prediction"]


def test_pairwise_correlation_blockwise():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((100, 7))
    c = (rng.random((100, 5)) < 0.3).astype(float)
    m = pairwise_correlation(a, c, block=3)
    for i in range(7):
        for j in range(5):
            assert np.isclose(m[i, j], pearsonr(a[:, i], c[:, j])[0])


def test_auc_rank_based_with_ties():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 5, size=(80, 3)).astype(float)  # many ties
    y = (rng.random((80, 3)) < 0.4).astype(int)
    auc = auc_scores(s, y)
    for k in range(3):
        u = mannwhitneyu(s[y[:, k] == 1, k], s[y[:, k] == 0, k]).statistic
        assert np.isclose(auc[k], u / (y[:, k].sum() * (80 - y[:, k].sum())))
    mat = auc_scores(s, y[:, :2], pairwise=True)
    assert mat.shape == (3, 2) and np.isclose(mat[1, 1], auc[1])
    y[:, 0] = 0
    assert np.isnan(auc_scores(s, y)[0])
