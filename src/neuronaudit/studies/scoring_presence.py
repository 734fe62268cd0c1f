"""The scoring_presence rule: a concept model's presence [c_t]_x, on the scoring split, of every
concept the explanations name that it can score (all for open-vocabulary models; the trained
concepts for the probe). Read back by the ``concept_model`` scorer
(:class:`neuronaudit.studies.scorers.ConceptModelScorer`).

Loads the concept model (torch, open_clip ...) once for all layers and methods, which is why it is a
rule, and a module, of its own: the score jobs (:mod:`neuronaudit.studies.automated`) do not load it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.concepts.stage import concept_model_matrix, load_fitted
from neuronaudit.data.arrays import split_rows
from neuronaudit.io import provenance, read_table, write_matrix
from neuronaudit.studies.scorers import named_concepts

log = logging.getLogger(__name__)

__all__ = ["scoring_presence"]


def scoring_presence(
    spec: Mapping[str, Any],
    state_path,
    embeddings_path,
    manifest_path,
    explanation_paths: Sequence,
    out,
    *,
    split: str = "test",
    device: str = "cpu",
    meta: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write [c_t]_x on ``split`` of the named concepts the concept model knows; returns them.

    A matrix file (column ``probability``, rows = the split's images in manifest order;
    ``neuronaudit.meta.concepts`` lists the concepts). A model that knows none of them writes one
    all-NaN placeholder column (Parquet lists cannot be empty).
    """
    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    ids = manifest["image_id"].to_numpy()[rows]
    named = named_concepts([read_table(p, ["structured"]) for p in explanation_paths])
    cm = load_fitted(dict(spec), state_path, device)
    known = named if cm.has_text_encoder else [c for c in named if c in set(getattr(cm, "concepts", []))]
    if known:
        prob = concept_model_matrix(cm, embeddings_path, rows, known, "probability", image_ids=ids)
    else:
        prob = np.full((len(rows), 1), np.nan, dtype=np.float32)
    info = provenance(split=split, concepts=known, n_named=len(named), concept_model=cm.info(), **dict(meta or {}))
    write_matrix(out, ids, {"probability": prob}, columns=known or ["(none)"], meta=info)
    log.info("%d of %d named concepts scorable by %s on %d %s images", len(known), len(named),
             spec.get("backend"), len(rows), split)
    return known
