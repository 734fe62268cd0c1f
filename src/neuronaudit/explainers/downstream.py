"""Downstream evaluation (seed 001, B.9, Table 5): do explanations find neurons that classify unseen classes?

For each class y of a dataset the model was not trained on, pick the neuron whose explanation text
embedding is closest (cosine) to the embedding of the class name, and report that neuron's ROC-AUC as a
one-vs-rest classifier of y over the dataset's images; average over classes, per method. Embeddings come
from any text encoder and are passed in as arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuronaudit.explainers.invert import auc_matrix

__all__ = ["match_neurons_to_classes", "downstream_auc", "downstream_summary"]


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def match_neurons_to_classes(explanation_embeddings, class_embeddings):
    """Index (into the explanation rows) of the closest explanation per class, and the cosine similarity."""
    sim = _unit(class_embeddings) @ _unit(explanation_embeddings).T  # (n_classes, K)
    best = sim.argmax(axis=1)
    return best, sim[np.arange(sim.shape[0]), best]


def downstream_auc(explanation_embeddings, class_embeddings, activations, labels, class_names,
                   neurons=None, method: str = "") -> pd.DataFrame:
    """Per-class table: class, neuron, cosine similarity, AUC of the neuron's activations for the class.

    ``activations``: (N images x K neurons) on the unseen dataset; ``labels``: N class indices;
    ``explanation_embeddings``: (K x d) one per explained neuron (row j is neuron ``neurons[j]``).
    """
    labels = np.asarray(labels, dtype=np.int64)
    acts = np.asarray(activations, dtype=np.float64)
    neurons = np.arange(acts.shape[1]) if neurons is None else np.asarray(neurons)
    best, cos = match_neurons_to_classes(explanation_embeddings, class_embeddings)
    chosen = neurons[best]
    onehot = labels[:, None] == np.arange(len(class_names))[None, :]
    # AUC of neuron chosen[c] for class c: only the chosen columns are needed
    auc = np.array([np.nan] * len(class_names))
    uniq, inv = np.unique(chosen, return_inverse=True)
    aucs = auc_matrix(onehot, acts[:, uniq])  # (n_classes, len(uniq))
    auc = aucs[np.arange(len(class_names)), inv]
    return pd.DataFrame({"method": method, "class": list(class_names), "neuron": chosen, "similarity": cos, "auc": auc})


def downstream_summary(per_class: pd.DataFrame) -> pd.Series:
    """Mean AUC over classes per method (the numbers of Table 5)."""
    return per_class.groupby("method")["auc"].mean()
