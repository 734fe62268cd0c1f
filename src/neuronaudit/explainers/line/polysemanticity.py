"""Polysemanticity and new concepts from LINE's histories (SPEC sec. 6; issue 10 item 5).

Per neuron (:func:`neuron_polysemanticity`):

* ``n_high``: the distinct concepts of its history scoring at least ``threshold`` (default 0.9 on the
  AUC scale; a concept scored twice counts once, with its best score);
* ``n_distinct``: those concepts grouped by meaning: greedily, best first, a concept counts only if its
  sentence-embedding cosine (MiniLM) with every concept already counted is below ``distinct_similarity``
  (default 0.6), so 'boot' and 'boots' are one concept and 'boot' and 'handbag' two;
* ``polysemantic``: ``n_distinct >= 2``;
* ``new_concept``: the final explanation is absent from a reference vocabulary (compared lower-cased,
  single-spaced), the paper's "27-29% of top concepts absent from large predefined vocabularies".

Per layer (:func:`layer_table`): neurons, mean and median ``n_distinct``, the share of polysemantic
neurons, the share of new final concepts, and the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from neuronaudit.explainers.line.history import final_from_history
from neuronaudit.explainers.line.proposers import normalise_concept

__all__ = ["NEURON_COLUMNS", "LAYER_COLUMNS", "distinct_concepts", "neuron_polysemanticity", "layer_table"]

NEURON_COLUMNS = ["neuron", "final_concept", "final_score", "n_high", "n_distinct", "distinct", "polysemantic",
                  "new_concept"]
LAYER_COLUMNS = ["model", "layer", "method", "n_neurons", "mean_distinct", "median_distinct", "share_polysemantic",
                 "share_new_concepts", "threshold", "distinct_similarity", "reference_vocabulary", "n_reference"]


def distinct_concepts(concepts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray],
                      max_similarity: float) -> list[str]:
    """Greedy, in the given order (best first): keep a concept unless it is at least ``max_similarity``
    (cosine) to one kept before."""
    if not concepts:
        return []
    emb = np.asarray(embed(list(concepts)), dtype=np.float32)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    kept: list[int] = []
    for i in range(len(concepts)):
        if not kept or float((emb[kept] @ emb[i]).max()) < max_similarity:
            kept.append(i)
    return [concepts[i] for i in kept]


def neuron_polysemanticity(history: pd.DataFrame, embed: Callable[[Sequence[str]], np.ndarray],
                           reference: Iterable[str], threshold: float = 0.9,
                           distinct_similarity: float = 0.6) -> pd.DataFrame:
    """One row per neuron (:data:`NEURON_COLUMNS`)."""
    ref = {normalise_concept(c) for c in reference}
    final = final_from_history(history).set_index("neuron")
    rows = []
    for neuron, g in history.groupby("neuron", sort=True):
        best = g.groupby("concept")["score"].max().sort_values(ascending=False, kind="stable")
        high = [str(c) for c, s in best.items() if s >= threshold]
        distinct = distinct_concepts(high, embed, distinct_similarity)
        fc = str(final.loc[neuron, "concept"])
        rows.append({"neuron": int(neuron), "final_concept": fc, "final_score": float(final.loc[neuron, "score"]),
                     "n_high": len(high), "n_distinct": len(distinct), "distinct": distinct,
                     "polysemantic": len(distinct) >= 2, "new_concept": normalise_concept(fc) not in ref})
    return pd.DataFrame(rows, columns=NEURON_COLUMNS)


def layer_table(per_neuron: dict[tuple[str, str, str], pd.DataFrame], settings: dict, reference_name: str,
                n_reference: int) -> pd.DataFrame:
    """The per-layer summary of :func:`neuron_polysemanticity` tables keyed by (model, layer, method)."""
    rows = []
    for (model, layer, method), t in per_neuron.items():
        rows.append({"model": model, "layer": layer, "method": method, "n_neurons": len(t),
                     "mean_distinct": float(t["n_distinct"].mean()) if len(t) else np.nan,
                     "median_distinct": float(t["n_distinct"].median()) if len(t) else np.nan,
                     "share_polysemantic": float(t["polysemantic"].mean()) if len(t) else np.nan,
                     "share_new_concepts": float(t["new_concept"].mean()) if len(t) else np.nan,
                     "threshold": float(settings["threshold"]),
                     "distinct_similarity": float(settings["distinct_similarity"]),
                     "reference_vocabulary": reference_name, "n_reference": int(n_reference)})
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)
