"""The arrays the explain and score stages read from the pipeline's files: a split's rows of the
manifest, a layer's activations on them, the ground-truth label matrices, and a presence file's
matrix (images x concepts).

Shared by :mod:`neuronaudit.explainers.stage`, :mod:`neuronaudit.studies.automated` and
:mod:`neuronaudit.concepts.stage`; pure data access (pandas / NumPy / Parquet), no model code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from neuronaudit.data.datasets import labels_matrix
from neuronaudit.io import read_matrix

__all__ = [
    "LABEL_KINDS",
    "split_rows",
    "load_activations",
    "label_matrix",
    "class_indices",
    "read_presence",
]

#: the label kinds of the labels table (``kind`` column)
LABEL_KINDS = ("class", "superclass", "attribute")


def split_rows(manifest: pd.DataFrame, split: str) -> np.ndarray:
    """Row positions (manifest order) of the images of ``split``."""
    rows = np.flatnonzero((manifest["split"] == split).to_numpy())
    if rows.size == 0:
        raise ValueError(f"the manifest has no '{split}' images; set dataset.splits.{split}")
    return rows


def load_activations(path, manifest: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Activations (len(rows) x K, float32) of the given manifest rows, and the neuron names.

    Rows are matched by image_id: images the extraction skipped (undecodable, listed in its
    extraction_report.json) come back as NaN rows, which the callers drop and count."""
    m = read_matrix(path, ["activation"])
    wanted = manifest["image_id"].to_numpy()[rows]
    pos = pd.Index(m.image_ids).get_indexer(wanted)
    extra = pd.Index(m.image_ids).difference(manifest["image_id"])
    if len(extra):
        raise ValueError(f"{path}: {len(extra)} image(s) not in the manifest, e.g. {list(extra[:3])}; "
                         "rerun the activation extraction")
    acts = np.full((len(wanted), m["activation"].shape[1]), np.nan, dtype=np.float32)
    acts[pos >= 0] = m["activation"][pos[pos >= 0]]
    names = m.columns or [str(k) for k in range(acts.shape[1])]
    return acts, list(names)


def label_matrix(labels: pd.DataFrame, image_ids, kinds: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Binary ground-truth presence (images x concepts, float32) of the labelled concepts of ``kinds``."""
    kinds = tuple(kinds or LABEL_KINDS)
    concept_kind = labels[["concept", "kind"]].drop_duplicates("concept")
    concepts = [str(c) for c, k in zip(concept_kind["concept"], concept_kind["kind"], strict=True) if k in kinds]
    if not concepts:
        raise ValueError(f"the labels have no concepts of kinds {list(kinds)}")
    sub = labels[labels["concept"].isin(concepts)]
    y, names = labels_matrix(sub, list(image_ids), concepts)
    return y.astype(np.float32), names


def class_indices(labels: pd.DataFrame, image_ids) -> tuple[np.ndarray, list[str]]:
    """Class index per image (from the one-hot ``class`` labels) and the class names."""
    y, classes = label_matrix(labels, image_ids, ["class"])
    bad = np.flatnonzero(y.sum(axis=1) != 1)
    if bad.size:
        raise ValueError(f"{bad.size} image(s) do not have exactly one class label, e.g. row {bad[0]}")
    return y.argmax(axis=1), classes


def read_presence(
    path,
    value: str,
    rows: np.ndarray | None = None,
    *,
    image_ids=None,
    max_concepts: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """A presence file's ``probability`` or raw ``score`` (images x C, float32) and its concepts.

    Rows are picked by ``image_ids`` when given (a file over another set of images, e.g. a split:
    matched by id), else by the manifest positions ``rows`` (all rows when None).
    ``max_concepts`` keeps the first n concepts (wordfreq vocabularies are ordered by frequency).
    """
    if value not in ("probability", "score"):
        raise ValueError(f"value must be 'probability' or 'score', got {value!r}")
    m = read_matrix(path, [value])
    names = list(m.columns)
    n = len(names) if not max_concepts else min(int(max_concepts), len(names))
    if image_ids is not None:
        pos = pd.Index(m.image_ids).get_indexer(np.asarray(image_ids))
        if (pos < 0).any():
            raise ValueError(f"{path} lacks {(pos < 0).sum()} of the requested images; rerun it")
        rows = pos
    mat = m[value] if rows is None else m[value][rows]
    return np.ascontiguousarray(mat[:, :n]), names[:n]
