"""Calibration of image-text similarities into concept probabilities (SPEC sec. 2).

    [c_t]_x = p = sigmoid(a * (cos(img_x, text_t) + b))

(Linear Explanations paper, "simulation with correlation scoring"; the raw concept string is encoded
with no prompt template.) The published (a, b) for open_clip models are in :data:`PUBLISHED`; they
were fitted by grid search (a up to 150, b in [-1, 1] step 0.01) minimising the binary cross-entropy
against ImageNet-val one-hot labels plus WordNet superclasses (with more than 300 subclasses dropped).
:func:`fit_calibration` runs the same grid search for any concept model.

The grid search is exact in the label term and vectorised in the other: the mean BCE is

    BCE(a, b) = (1/M) sum_ij [softplus(z_ij) - y_ij z_ij],   z_ij = a (cos_ij + b),

whose label part is a (sum_ij y_ij cos_ij + b sum_ij y_ij), two numbers; the softplus part depends
on the cosines only, so they are histogrammed once (``bins`` equal-width bins, each represented by the
mean of its members) and every (a, b) pair costs O(bins). Replacing each cosine by its bin mean
changes the mean BCE by at most a^2 w^2 / 32 for bin width w (softplus'' <= 1/4 times half the
largest within-bin variance w^2 / 4): below 2e-7 for a = 150 and 4,000 bins over [-1, 1], far below
the BCE differences between neighbouring grid points. ``bins=None`` evaluates every entry exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# SPEC sec. 2: (a, b) per open_clip architecture (SigLIP models with their webli weights; CLIP ViT-L-14-336
# with OpenAI's weights).
PUBLISHED: dict[str, tuple[float, float]] = {
    "ViT-SO400M-14-SigLIP-384": (58.0, -0.13),
    "ViT-L-16-SigLIP-384": (60.0, -0.09),
    "ViT-L-14-336": (58.0, -0.25),
}

DEFAULT_A_GRID = np.arange(1.0, 151.0)  # a = 1, 2, ..., 150
DEFAULT_B_GRID = np.round(np.arange(-100, 101) / 100.0, 2)  # b = -1.00, -0.99, ..., 1.00


class Calibration(NamedTuple):
    """A fitted (or published) calibration; unpacks as ``a, b, bce``."""

    a: float
    b: float
    bce: float


def calibrate(cos, a: float, b: float) -> np.ndarray:
    """p = sigmoid(a * (cos + b)), elementwise, as float32 (NaN stays NaN)."""
    z = float(a) * (np.asarray(cos, dtype=np.float64) + float(b))
    # numerically stable logistic: exp of a non-positive number only
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def binary_cross_entropy(cos, labels, a: float, b: float) -> float:
    """Mean BCE of the calibrated probabilities over all labelled entries (NaN labels are skipped)."""
    cos, y = _flatten(cos, labels)
    z = a * (cos + b)
    return float(np.mean(_softplus(z) - y * z))


def _flatten(cos, labels) -> tuple[np.ndarray, np.ndarray]:
    cos = np.asarray(cos, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if cos.shape != y.shape:
        raise ValueError(f"fit_calibration: cos has shape {cos.shape} but labels {y.shape}; they must match")
    keep = np.isfinite(cos) & np.isfinite(y)
    cos, y = cos[keep], y[keep]
    if cos.size == 0:
        raise ValueError("fit_calibration: no entry has both a finite similarity and a label")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("fit_calibration: labels must lie in [0, 1] (binary, or soft), NaN for unlabelled")
    return cos, y


def fit_calibration(
    cos,
    labels,
    a_grid=None,
    b_grid=None,
    bins: int | None = 4000,
    chunk: int = 64,
) -> Calibration:
    """Grid-search (a, b) minimising the mean binary cross-entropy (SPEC sec. 2).

    Parameters
    ----------
    cos : (N, C) array of image-concept cosine similarities (or any raw score).
    labels : (N, C) array in {0, 1} (soft values in [0, 1] also work); NaN marks unlabelled entries.
    a_grid, b_grid : grids (default a = 1..150, b = -1..1 step 0.01, the paper's).
    bins : histogram the similarities into this many bins (see module docstring); None = exact.
    chunk : number of a values evaluated at once (memory ~ chunk * len(b_grid) * bins * 8 bytes).

    Returns
    -------
    Calibration(a, b, bce): the minimiser and its mean BCE per labelled entry.
    """
    a_grid = DEFAULT_A_GRID if a_grid is None else np.asarray(a_grid, dtype=np.float64).ravel()
    b_grid = DEFAULT_B_GRID if b_grid is None else np.asarray(b_grid, dtype=np.float64).ravel()
    x, y = _flatten(cos, labels)
    m = x.size
    sum_y, sum_yx = y.sum(), (y * x).sum()

    if bins is not None and x.size > bins:
        lo, hi = x.min(), x.max()
        idx = np.minimum(((x - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), bins - 1)
        counts = np.bincount(idx, minlength=bins).astype(np.float64)
        sums = np.bincount(idx, weights=x, minlength=bins)
        nz = counts > 0
        values, weights = sums[nz] / counts[nz], counts[nz]
    else:
        values, weights = x, np.ones_like(x)

    # Keep memory bounded: shrink the a-chunk when there are many distinct values.
    per_a = b_grid.size * values.size
    chunk = max(1, min(chunk, int(1e7 // max(per_a, 1))))
    best = (np.inf, np.nan, np.nan)
    vb = values[None, :] + b_grid[:, None]  # (B, V)
    for start in range(0, a_grid.size, chunk):
        a = a_grid[start : start + chunk]
        z = a[:, None, None] * vb[None]  # (A, B, V)
        sp = _softplus(z) @ weights  # (A, B)
        label_term = a[:, None] * (sum_yx + b_grid[None, :] * sum_y)
        loss = (sp - label_term) / m
        i, j = np.unravel_index(np.argmin(loss), loss.shape)
        if loss[i, j] < best[0]:
            best = (float(loss[i, j]), float(a[i]), float(b_grid[j]))
    return Calibration(a=best[1], b=best[2], bce=best[0])
