"""LINE's concept scores: how strongly a neuron responds to the images of a concept (SPEC sec. 6).

Every score compares the neuron's activations on the concept's images (generated, or retrieved by the
offline variant) with its activations on the control images (real images of one class):

* ``auc`` (default): ROC-AUC of the activations as a detector of "concept image" against control, rank
  based with ties counted one half (= the Mann-Whitney U statistic / (n_concept * n_control));
* ``mad``: (mean concept activation - mean control activation) / std of the control activations
  (sample std, ddof = 1; a constant control divides by 1, as the public implementation does);
* ``mean_activation``: the mean activation on the concept's images (the control is not used).

All are vectorised over a batch of concepts: ``concept`` may be (n,) or (B, n), ``control`` (m,) or
(B, m); the result is a float or a (B,) array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SCORES", "auc", "mad", "mean_activation", "get_score"]


def _pair(concept, control) -> tuple[np.ndarray, np.ndarray, bool]:
    c = np.asarray(concept, dtype=np.float64)
    x = np.asarray(control, dtype=np.float64)
    single = c.ndim == 1
    c = np.atleast_2d(c)
    x = np.atleast_2d(x)
    if c.shape[1] == 0 or x.shape[1] == 0:
        raise ValueError(f"a LINE score needs concept and control activations, got {c.shape[1]} and {x.shape[1]}")
    return c, x, single


def auc(concept, control) -> float | np.ndarray:
    """P(concept activation > control activation) + 0.5 P(equal), over all (concept, control) pairs."""
    c, x, single = _pair(concept, control)
    greater = (c[:, :, None] > x[:, None, :]).sum(axis=(1, 2))
    equal = (c[:, :, None] == x[:, None, :]).sum(axis=(1, 2))
    out = (greater + 0.5 * equal) / (c.shape[1] * x.shape[1])
    return float(out[0]) if single else out


def mad(concept, control) -> float | np.ndarray:
    """Standardised mean difference of concept vs control activations (std of the control)."""
    c, x, single = _pair(concept, control)
    std = x.std(axis=1, ddof=1) if x.shape[1] > 1 else np.zeros(len(x))
    std = np.where(std > 0, std, 1.0)
    out = (c.mean(axis=1) - x.mean(axis=1)) / std
    return float(out[0]) if single else out


def mean_activation(concept, control=None) -> float | np.ndarray:
    """Mean activation on the concept's images."""
    c = np.asarray(concept, dtype=np.float64)
    if c.shape[-1] == 0:
        raise ValueError("mean_activation needs at least one concept image")
    out = c.mean(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


SCORES: dict[str, Callable] = {"auc": auc, "mad": mad, "mean_activation": mean_activation}


def get_score(name: str) -> Callable:
    """The score function called ``name`` (auc, mad, mean_activation)."""
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown LINE score {name!r}; use one of {sorted(SCORES)}") from None
