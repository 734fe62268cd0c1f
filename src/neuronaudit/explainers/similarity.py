"""The explain_similarity rule: a concept model's scores of a vocabulary on the probing split only.

Used where the pipeline has no presence file for (concept model, vocabulary): the text side is
encoded once for every layer's explain job instead of once per job, and the explain jobs read the
result as a presence file (:func:`neuronaudit.data.arrays.read_presence`). Loads the concept model
(torch, open_clip ...), which is why it is not part of :mod:`neuronaudit.explainers.stage`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.concepts.stage import concept_model_matrix, load_fitted
from neuronaudit.data.arrays import split_rows
from neuronaudit.data.vocabularies import vocabulary_concepts
from neuronaudit.io import provenance, write_matrix

log = logging.getLogger(__name__)

__all__ = ["split_concept_matrix"]


def split_concept_matrix(
    spec: Mapping[str, Any],
    state_path,
    embeddings_path,
    manifest_path,
    vocabulary: Mapping[str, Any],
    labels_path,
    out,
    *,
    values: Sequence[str] = ("score",),
    split: str = "val",
    max_concepts: int | None = None,
    device: str = "cpu",
    meta: Mapping[str, Any] | None = None,
) -> list[str]:
    """A concept model's ``values`` (raw ``score`` = cos for CLIP-Dissect, ``probability`` for LE) of a
    vocabulary on the probing split only, as a matrix file; returns the concepts."""
    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    concepts = vocabulary_concepts(vocabulary, pd.read_parquet(labels_path))
    concepts = concepts[: int(max_concepts)] if max_concepts else concepts
    model = load_fitted(dict(spec), state_path, device)
    ids = manifest["image_id"].to_numpy()[rows]
    raw = concept_model_matrix(model, embeddings_path, rows, concepts, "score", image_ids=ids)
    arrays = {"score": raw} if "score" in values else {}
    if "probability" in values:
        arrays["probability"] = model.probability(raw).astype(np.float32)
    write_matrix(out, ids, arrays, columns=concepts,
                 meta=provenance(split=split, concept_model=model.info(), **dict(meta or {})))
    log.info("%s of %d concepts on %d %s images", sorted(arrays), len(concepts), len(rows), split)
    return concepts
