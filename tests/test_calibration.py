"""Calibration p = sigmoid(a (cos + b)) and its grid-search fit (SPEC sec. 2)."""

import numpy as np
import pytest

from neuronaudit.concepts.calibration import (
    PUBLISHED,
    binary_cross_entropy,
    calibrate,
    fit_calibration,
)


def _planted(a, b, n=2000, c=60, seed=0):
    rng = np.random.default_rng(seed)
    cos = rng.normal(-b, 0.05, (n, c)) + rng.normal(0, 0.02, (1, c))
    labels = (rng.random((n, c)) < calibrate(cos, a, b)).astype(np.float32)
    return cos, labels


@pytest.mark.parametrize("a,b", [(58.0, -0.13), (25.0, 0.2), (120.0, -0.5)])
def test_fit_recovers_planted_calibration(a, b):
    cos, labels = _planted(a, b)
    fit = fit_calibration(cos, labels)
    assert abs(fit.a - a) / a < 0.08
    assert abs(fit.b - b) <= 0.011
    # the reported BCE is the BCE at the returned point, and no worse than at the planted one
    assert fit.bce == pytest.approx(binary_cross_entropy(cos, labels, fit.a, fit.b), abs=1e-5)
    assert fit.bce <= binary_cross_entropy(cos, labels, a, b) + 1e-6


def test_binned_search_matches_exact_search():
    cos, labels = _planted(40.0, -0.1, n=100, c=20, seed=1)
    exact = fit_calibration(cos, labels, bins=None)
    binned = fit_calibration(cos, labels, bins=500)
    assert (binned.a, binned.b) == (exact.a, exact.b)
    width = (cos.max() - cos.min()) / 500
    assert binned.bce == pytest.approx(exact.bce, abs=exact.a**2 * width**2 / 32)  # the documented bound


def test_nan_labels_are_skipped():
    cos, labels = _planted(58.0, -0.13, n=600, c=40)
    masked = labels.copy()
    masked[::2] = np.nan
    fit = fit_calibration(cos, masked)
    assert fit.a == pytest.approx(fit_calibration(cos[1::2], labels[1::2]).a)


def test_calibrate_is_stable_and_published_values():
    p = calibrate(np.array([-1e3, 0.13, 1e3]), 58.0, -0.13)
    assert p.tolist() == [0.0, 0.5, 1.0]
    assert PUBLISHED["ViT-SO400M-14-SigLIP-384"] == (58.0, -0.13)
    assert PUBLISHED["ViT-L-16-SigLIP-384"] == (60.0, -0.09)
    assert PUBLISHED["ViT-L-14-336"] == (58.0, -0.25)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        fit_calibration(np.zeros((3, 2)), np.zeros((2, 3)))
