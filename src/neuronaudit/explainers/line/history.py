"""LINE's concept history and its record (one row per scored concept), written to Parquet.

:class:`ConceptHistory` is the working memory the proposer sees: at most ``size`` (concept, score)
pairs, ranked by score and, among equal scores, by the mean activation on the concept's images (AUC
of 5 images saturates at 1.0 easily; the public implementation keeps the first of equal scores). A new
concept always enters; when the history is full, it replaces the worst concept if it
scores higher than it, otherwise one concept is dropped at random with weights ``max score - score``
(the public implementation's weights: the best concept is never dropped, the worst most often; equal
scores everywhere -> uniform). The drops use their own seeded generator, so a recorded sequence of
(concept, score) replays to the same history and final explanation (:func:`replay`).

The record of a neuron (:data:`HISTORY_COLUMNS`), one row per scored concept in order:

==================  =========================================================================
``neuron``          unit index in the layer
``step``            0, 1, ... in the order concepts were scored
``phase``           ``init`` (the 5 top-activating + 5 random classes), ``iterate``, ``summary``
``concept``         the concept scored
``score``           its score (``metric``)
``metric``          auc | mad | mean_activation
``image_ids``       the concept's images: held-out image ids (retrieval) or ``gen:<concept>#seed``
``prompts``         the text-to-image prompt of each image
``activations``     the neuron's activation on each image
``control_class``   the class whose real images were the control, and ``n_control`` of them
``raw``             the LLM's raw text, or the offline proposer's trace (JSON); empty for init
``llm_prompt``      the prompt the LLM was given ('' offline and for init)
``dropped``         the concept dropped from the history at this step ('' if none)
``best_concept``    the best concept of the history after this step, and ``best_score``
``backends``        JSON: proposer and generator names and settings
``seed``            the neuron's seed
==================  =========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HISTORY_COLUMNS", "ConceptHistory", "history_frame", "final_from_history", "replay", "drop_rng"]

HISTORY_COLUMNS = ["neuron", "step", "phase", "concept", "score", "metric", "image_ids", "prompts", "activations",
                   "control_class", "n_control", "raw", "llm_prompt", "dropped", "best_concept", "best_score", "backends", "seed"]


def drop_rng(seed: int, neuron: int) -> np.random.Generator:
    """The generator of the history's random drops for one neuron (independent of the backends')."""
    return np.random.default_rng([int(seed), int(neuron), 1])


class ConceptHistory:
    """Ordered (concept -> score) memory of at most ``size`` entries, with LINE's update rule."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        if size < 1:
            raise ValueError(f"history size must be >= 1, got {size}")
        self.size, self.rng = int(size), rng
        self.scores: dict[str, float] = {}
        self.keys: dict[str, tuple[float, float]] = {}

    def add(self, concept: str, score: float, tie: float = 0.0) -> str:
        """Add a scored concept (``tie``: the tie-breaker, the mean activation on its images); returns the
        concept dropped ('' if none)."""
        key = self._key(score, tie)
        if concept in self.scores:  # a repeated concept (an LLM may repeat one): its score is updated
            self.scores[concept], self.keys[concept] = float(score), key
            return ""
        dropped = ""
        if len(self.scores) >= self.size:
            names = list(self.scores)
            worst = min(range(len(names)), key=lambda i: self.keys[names[i]])
            if key > self.keys[names[worst]]:
                dropped = names[worst]
            else:
                values = np.array([self.scores[n] for n in names], dtype=np.float64)
                finite = np.isfinite(values)
                values = np.where(finite, values, values[finite].min() if finite.any() else 0.0)
                w = values.max() - values
                p = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
                dropped = names[int(self.rng.choice(len(names), p=p))]
            del self.scores[dropped], self.keys[dropped]
        self.scores[concept], self.keys[concept] = float(score), key
        return dropped

    @staticmethod
    def _key(score: float, tie: float) -> tuple[float, float]:
        s, t = float(score), float(tie)
        return (s if np.isfinite(s) else -np.inf, t if np.isfinite(t) else -np.inf)

    def ranked(self, top: int | None = None) -> list[tuple[str, float]]:
        """(concept, score) best first: by score, then by the tie-breaker (ties: earlier entry first)."""
        items = sorted(self.scores, key=lambda c: (-self.keys[c][0], -self.keys[c][1]))
        out = [(c, self.scores[c]) for c in items]
        return out[:top] if top else out

    def best(self) -> tuple[str, float]:
        return self.ranked(1)[0]


def history_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """The record rows as a DataFrame with :data:`HISTORY_COLUMNS` and fixed dtypes."""
    rows = list(rows)
    cols: dict[str, Any] = {c: [r[c] for r in rows] for c in HISTORY_COLUMNS}
    for col in ("neuron", "step", "n_control", "seed"):
        cols[col] = np.asarray(cols[col], dtype=np.int64)
    for col in ("score", "best_score"):
        cols[col] = np.asarray(cols[col], dtype=np.float64)
    for col in ("image_ids", "prompts"):
        cols[col] = [[str(x) for x in v] for v in cols[col]]
    cols["activations"] = [[float(x) for x in v] for v in cols["activations"]]
    return pd.DataFrame(cols, columns=HISTORY_COLUMNS)


def final_from_history(history: pd.DataFrame) -> pd.DataFrame:
    """One row per neuron: its final explanation (the best concept after the last step) and score."""
    last = history.sort_values(["neuron", "step"]).groupby("neuron", sort=True).tail(1)
    return last[["neuron", "best_concept", "best_score"]].rename(
        columns={"best_concept": "concept", "best_score": "score"}).reset_index(drop=True)


def replay(history: pd.DataFrame, size: int, seed: int | None = None) -> dict[int, tuple[str, float]]:
    """Rebuild each neuron's concept history from its recorded (concept, score) sequence with the update
    rule and the recorded seed; returns neuron -> (final concept, score). Raises ``ValueError`` when a
    replayed drop differs from the recorded one (the record was not made by this rule and seed)."""
    out = {}
    for neuron, g in history.sort_values(["neuron", "step"]).groupby("neuron", sort=True):
        s = int(g["seed"].iloc[0]) if seed is None else int(seed)
        mem = ConceptHistory(size, drop_rng(s, int(neuron)))
        for row in g.itertuples(index=False):
            dropped = mem.add(row.concept, row.score, float(np.mean(row.activations)) if len(row.activations) else 0.0)
            if dropped != row.dropped:
                raise ValueError(f"neuron {neuron}, step {row.step}: replay drops {dropped!r}, the record {row.dropped!r}")
        out[int(neuron)] = mem.best()
    return out


def backends_json(proposer: dict, generator: dict) -> str:
    return json.dumps({"proposer": proposer, "generator": generator}, sort_keys=True, default=str)


def concept_lists(history: pd.DataFrame, phases: Sequence[str] | None = None) -> dict[int, list[str]]:
    """neuron -> the concepts it tried, in order (optionally only some phases)."""
    h = history if phases is None else history[history["phase"].isin(phases)]
    return {int(n): list(g.sort_values("step")["concept"]) for n, g in h.groupby("neuron")}
