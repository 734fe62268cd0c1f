"""Scorers behind one small protocol, registered in one place.

A scorer gives the presence [c_t]_x, on the scoring split, of the concepts the explanations name
(those it knows), and scores every explanation by the correlation between its predicted activation
s(x, E) and the neuron's activation (SPEC sec. 2; :func:`score_table`). Built in:

==================  ============================================================================
``label``           the dataset's ground-truth labels (the labelled concepts only)
``concept_model``   a concept model's calibrated probabilities, from its ``scoring_presence`` file
                    (:mod:`neuronaudit.studies.scoring_presence`; every concept for an
                    open-vocabulary model, the trained ones for the probe)
==================  ============================================================================

``@register_scorer`` adds a :class:`Scorer` subclass to :data:`SCORERS` under its ``kind``; the score
stage (:func:`neuronaudit.studies.automated.score_layer`) makes one instance per configured scorer with
:func:`make_scorer`. A scorer that does not score by presence overrides :meth:`Scorer.score`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from neuronaudit.data.arrays import label_matrix
from neuronaudit.exclusions import MAX_NAN_FRACTION, Exclusions, finite_columns
from neuronaudit.explanations import Explanation, predicted_matrix
from neuronaudit.io import read_matrix
from neuronaudit.scoring import correlation_scores

log = logging.getLogger(__name__)

__all__ = [
    "LABEL_SCORER",
    "SCORERS",
    "Scorer",
    "ScoringData",
    "register_scorer",
    "make_scorer",
    "scorer_kinds",
    "LabelScorer",
    "ConceptModelScorer",
    "score_table",
    "named_concepts",
    "read_scoring_presence",
]

LABEL_SCORER = "label"


def named_concepts(tables: Sequence[pd.DataFrame]) -> list[str]:
    """Every concept the explanations of the tables name, in order of first appearance."""
    names: dict[str, None] = {}
    for table in tables:
        for s in table["structured"]:
            names.update(dict.fromkeys(Explanation.from_dict(s).concepts()))
    return list(names)


def score_table(
    explanations: pd.DataFrame,
    activations: np.ndarray,
    presence: np.ndarray,
    concepts: Sequence[str],
    scorer: str,
    *,
    image_ids: Sequence | None = None,
    exclusions: Exclusions | None = None,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> pd.DataFrame:
    """Score every row of an explanation table against ``activations`` (N x K) with one scorer.

    ``presence`` (N x T) holds [c_t]_x of the concepts ``concepts`` the scorer knows; rows naming
    other concepts get NaN and a reason. Returns neuron, method, concept_model, rho, reason, length.

    Non-finite values (:func:`neuronaudit.exclusions.finite_columns`): a neuron or concept column that
    is all NaN (or NaN on more than ``max_nan_fraction`` of the images) is left out, so its rows get
    NaN and the reason ``neuron left out: ...`` / ``concept left out for <scorer>: ...``; only images
    with no activation or no presence at all (or NaN in a kept column) are dropped. What was left out
    is recorded in ``exclusions`` (logged).
    """
    exclusions = exclusions if exclusions is not None else Exclusions(f"score by {scorer}", log, logging.DEBUG)
    activations, presence = np.asarray(activations), np.asarray(presence)
    exps = [Explanation.from_dict(s) for s in explanations["structured"]]
    ids = np.arange(len(activations)) if image_ids is None else np.asarray(image_ids)
    k = activations.shape[1]
    rows, neuron_ok = finite_columns(activations, np.arange(k), ids, exclusions, col_item="neuron",
                                     what="activation", max_nan_fraction=max_nan_fraction)
    prow, concept_ok = finite_columns(presence[rows], list(concepts), ids[rows], exclusions, col_item="concept",
                                      what=f"{scorer} presence", max_nan_fraction=max_nan_fraction)
    rows[rows] = prow
    activations, presence = activations[rows], presence[rows][:, concept_ok]
    neuron_reason = exclusions.reasons("neuron")
    concept_reason = exclusions.reasons("concept")
    concepts = [c for c, ok in zip(concepts, concept_ok, strict=True) if ok]
    known = set(concepts)
    neurons = explanations["neuron"].to_numpy(np.int64)
    reason = np.empty(len(exps), dtype=object)
    ok = np.zeros(len(exps), dtype=bool)
    for i, (e, nk) in enumerate(zip(exps, neurons, strict=True)):  # reasons per explanation row, not per image
        named = e.concepts()
        left_out = [c for c in named if c in concept_reason]
        unknown = [c for c in named if c not in known and c not in concept_reason]
        if not (0 <= nk < k) or not neuron_ok[nk]:
            reason[i] = f"neuron left out: {neuron_reason.get(str(nk), 'not in the activations')}"
        elif left_out:
            reason[i] = f"concept left out for {scorer}: {left_out[:5]} ({concept_reason[left_out[0]]})"
        elif unknown:
            reason[i] = f"concept unknown to {scorer}: {unknown[:5]}"
        else:
            reason[i], ok[i] = "", True
    rho = np.full(len(exps), np.nan)
    if ok.any() and len(activations):
        pred = predicted_matrix([e for e, g in zip(exps, ok, strict=True) if g], concepts, presence)
        res = correlation_scores(activations, pred, pairing=neurons[ok])
        rho[ok] = res.rho
        reason[ok] = res.reason
    return pd.DataFrame({
        "neuron": neurons,
        "method": explanations["method"].to_numpy(),
        "concept_model": scorer,
        "rho": rho,
        "reason": reason.astype(str),
        "length": explanations["length"].to_numpy(np.int64),
    })


def read_scoring_presence(path, image_ids) -> tuple[np.ndarray, list[str]]:
    """A scoring_presence file back: (probability (N x T), concepts), checked against ``image_ids``."""
    m = read_matrix(path, ["probability"])
    if not np.array_equal(m.image_ids, np.asarray(image_ids)):
        raise ValueError(f"{path}: rows do not match the scoring split; rerun scoring_presence")
    concepts = list(m.meta.get("concepts", m.columns))
    return m["probability"][:, : len(concepts)], concepts


@dataclass
class ScoringData:
    """What a scorer may read: the scoring split's images (manifest order), the concepts the
    explanations of the layer name, and the labels table (read on first use)."""

    image_ids: np.ndarray
    named: list[str]
    labels_path: Any = None
    _labels: pd.DataFrame | None = None

    @property
    def labels(self) -> pd.DataFrame:
        if self._labels is None:
            self._labels = pd.read_parquet(self.labels_path)
        return self._labels


class Scorer(ABC):
    """One scorer (a column value of ``concept_model`` in the score tables). Subclass, set ``kind``,
    implement :meth:`presence` (or override :meth:`score`), decorate with :func:`register_scorer`."""

    #: the scorer type (registry key)
    kind: ClassVar[str]

    def __init__(self, name: str, source: Any = None):
        self.name = name  # the name in the score tables (``concept_model`` column)
        self.source = source  # where its presence comes from (a file), if anywhere

    @abstractmethod
    def presence(self, data: ScoringData) -> tuple[np.ndarray, list[str]]:
        """[c_t]_x (images x T, in ``data.image_ids`` order) of the T concepts of ``data.named`` it knows."""

    def score(self, tables: Mapping[str, pd.DataFrame], activations: np.ndarray, data: ScoringData, *,
              exclusions: Exclusions | None = None, max_nan_fraction: float = MAX_NAN_FRACTION,
              ) -> dict[str, pd.DataFrame]:
        """{method: score rows (:func:`score_table`)} of every explanation table; what is left out is
        recorded (once) in ``exclusions``."""
        pres, known = self.presence(data)
        return {method: score_table(table, activations, pres, known, self.name, image_ids=data.image_ids,
                                    exclusions=exclusions if i == 0 else None, max_nan_fraction=max_nan_fraction)
                for i, (method, table) in enumerate(tables.items())}


#: kind -> scorer class
SCORERS: dict[str, type[Scorer]] = {}


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: add a :class:`Scorer` subclass under its ``kind``."""
    if not (isinstance(cls, type) and issubclass(cls, Scorer)):
        raise TypeError(f"{cls!r} is not a Scorer subclass")
    if not isinstance(getattr(cls, "kind", None), str) or not cls.kind:
        raise TypeError(f"{cls.__name__}: set the class attribute kind")
    SCORERS[cls.kind] = cls
    return cls


def scorer_kinds() -> list[str]:
    return list(SCORERS)


def make_scorer(kind: str, name: str | None = None, source: Any = None) -> Scorer:
    """An instance of the scorer registered as ``kind`` (named ``name``, default the kind)."""
    cls = SCORERS.get(kind)
    if cls is None:
        raise ValueError(f"unknown scorer {kind!r}; registered: {scorer_kinds()}")
    return cls(name or kind, source)


@register_scorer
class LabelScorer(Scorer):
    """The ground-truth labels: the binary presence of the labelled concepts the explanations name."""

    kind = LABEL_SCORER

    def presence(self, data: ScoringData) -> tuple[np.ndarray, list[str]]:
        labels = data.labels
        labelled = set(labels["concept"].astype(str))
        known = [c for c in data.named if c in labelled]
        if not known:
            return np.zeros((len(data.image_ids), 0), np.float32), []
        return label_matrix(labels[labels["concept"].isin(known)], data.image_ids)


@register_scorer
class ConceptModelScorer(Scorer):
    """A concept model's calibrated probabilities, read from its scoring_presence file (``source``)."""

    kind = "concept_model"

    def presence(self, data: ScoringData) -> tuple[np.ndarray, list[str]]:
        return read_scoring_presence(self.source, data.image_ids)
