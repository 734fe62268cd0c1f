"""Top-activating-class baseline: explain a neuron by the class of the images that activate it most.

Not a method of the paper; a sanity baseline (and the seed of LINE's history, SPEC sec. 6).
Default ("frequency"): the class most frequent among the neuron's top-k images (k = 100), ties broken by
the higher mean activation of the tied classes' images inside the top-k. Alternative ("mean"): the class
with the highest mean activation over all its images in the dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuronaudit.explanations import explanation_table

__all__ = ["top_activating_class", "top_activating_class_table"]


def top_activating_class(labels, activations, n_classes: int | None = None, top_k: int = 100, mode: str = "frequency"):
    """Class index per neuron (K,) and its share of the top-k ("frequency") or its mean activation ("mean")."""
    labels = np.asarray(labels, dtype=np.int64)
    acts = np.asarray(activations, dtype=np.float64)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    n, k = acts.shape
    if mode == "mean":
        sums = np.zeros((n_classes, k))
        np.add.at(sums, labels, acts)
        counts = np.bincount(labels, minlength=n_classes)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / counts, -np.inf)
        best = means.argmax(axis=0)
        return best, means[best, np.arange(k)]
    if mode != "frequency":
        raise ValueError(f"unknown mode {mode!r}; expected 'frequency' or 'mean'")
    m = min(top_k, n)
    top = np.argpartition(-acts, m - 1, axis=0)[:m]  # (m, K)
    cls = labels[top]
    flat = cls + n_classes * np.arange(k)[None, :]
    counts = np.bincount(flat.ravel(), minlength=n_classes * k).reshape(k, n_classes)
    act_sum = np.bincount(flat.ravel(), weights=np.take_along_axis(acts, top, axis=0).ravel(),
                          minlength=n_classes * k).reshape(k, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        tie_break = np.where(counts > 0, act_sum / counts, -np.inf)
    order = np.lexsort((-tie_break, -counts), axis=1)  # most frequent, then highest mean activation
    best = order[:, 0]
    return best, counts[np.arange(k), best] / m


def top_activating_class_table(labels, activations, class_names, neurons=None, method="top_class", **kwargs) -> pd.DataFrame:
    """:func:`top_activating_class` as the normalised explanation table (source_score = share or mean)."""
    best, score = top_activating_class(labels, activations, n_classes=len(class_names), **kwargs)
    dicts = [{"kind": "simple", "concept": str(class_names[c])} for c in best]
    params = {"top_k": kwargs.get("top_k", 100), "mode": kwargs.get("mode", "frequency")}
    return explanation_table(np.arange(len(best)) if neurons is None else neurons, method, dicts, params, score)
