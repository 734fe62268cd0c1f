"""The LINE loop for one neuron (SPEC sec. 6; seed 000), independent of the backends.

1. History: the ``n_best`` (5) classes with the highest mean activation on the probing split and
   ``n_random`` (5) other classes drawn at random, each scored.
2. ``iterations`` (10) times: the proposer proposes a concept from the history; the generator makes
   ``n_images`` (5) images of it; the score (AUC by default) compares the neuron's activations on them
   with its activations on the control images; the history is updated (the new concept replaces the
   worst if it scores higher, else a random one is dropped: :class:`~.history.ConceptHistory`).
3. Summary: the proposer summarises the top 3 into one concept, which is scored and added the same way.
4. The explanation is the best concept of the final history; its score is the table's ``source_score``.

Control images (:class:`ControlSampler`): the real probing-split images of ONE class, the class drawn
with weight 1 - cos(MiniLM(concept), MiniLM(class name)) (clipped at 0), so a concept is mostly compared
with images of unrelated classes; ``control_images`` caps how many of that class's images are used (a
seeded sample; None = all of them).

Randomness: every neuron has three generators seeded from (seed, neuron): the proposer's, the control
sampler's and the history's drops, so a neuron's result does not depend on which other neurons run
in the same job (sharding) or whether it was resumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neuronaudit.explainers.line.generators import Generated, Generator
from neuronaudit.explainers.line.history import (
    ConceptHistory,
    backends_json,
    drop_rng,
    history_frame,
)
from neuronaudit.explainers.line.proposers import Proposer
from neuronaudit.explainers.line.scores import get_score

__all__ = ["LoopSettings", "ControlSampler", "initial_concepts", "run_neuron", "run_neurons"]


@dataclass(frozen=True)
class LoopSettings:
    n_best: int = 5
    n_random: int = 5
    iterations: int = 10
    n_images: int = 5
    summary_top: int = 3
    score: str = "auc"
    control_images: int | None = None
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ControlSampler:
    """Control activations: the probing images of one class, drawn with weight 1 - similarity.

    ``activations`` (N x K) and ``class_index`` (N,) are the probing split's; ``class_emb`` the
    normalised text embeddings of ``class_names``; ``embed(concepts)`` embeds concepts the same way.
    """

    def __init__(self, activations: np.ndarray, class_index: np.ndarray, class_names: Sequence[str],
                 class_emb: np.ndarray, embed: Callable[[Sequence[str]], np.ndarray],
                 control_images: int | None = None) -> None:
        self.activations = np.asarray(activations, dtype=np.float32)
        self.class_index = np.asarray(class_index)
        self.class_names = list(class_names)
        self.class_emb = np.asarray(class_emb, dtype=np.float32)
        self.embed = embed
        self.members = [np.flatnonzero(self.class_index == c) for c in range(len(self.class_names))]
        self.present = np.array([len(m) > 0 for m in self.members])
        if not self.present.any():
            raise ValueError("LINE control images: no class has an image on the probing split")
        self.control_images = control_images

    def weights(self, concept: str) -> np.ndarray:
        e = self.embed([concept])[0]
        w = np.clip(1.0 - self.class_emb @ e, 0.0, None) * self.present
        return w / w.sum() if w.sum() > 0 else self.present / self.present.sum()

    def sample(self, concept: str, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """(class index, rows of its control images) for one scoring of ``concept``."""
        c = int(rng.choice(len(self.class_names), p=self.weights(concept)))
        rows = self.members[c]
        if self.control_images and len(rows) > self.control_images:
            rows = np.sort(rng.choice(rows, self.control_images, replace=False))
        return c, rows

    def class_means(self, neuron: int) -> np.ndarray:
        """Mean activation of the neuron on each class's probing images (NaN for an empty class)."""
        a = self.activations[:, neuron].astype(np.float64)
        sums = np.bincount(self.class_index, weights=a, minlength=len(self.class_names))
        counts = np.bincount(self.class_index, minlength=len(self.class_names))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan)


def initial_concepts(means: np.ndarray, class_names: Sequence[str], n_best: int, n_random: int,
                     rng: np.random.Generator) -> list[str]:
    """The ``n_best`` classes with the highest mean activation, then ``n_random`` of the other classes at
    random (fewer when the dataset has fewer classes)."""
    order = [int(i) for i in np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable") if np.isfinite(means[i])]
    best = order[:n_best]
    rest = np.array(order[n_best:], dtype=np.int64)
    extra = rng.choice(rest, min(n_random, len(rest)), replace=False) if len(rest) else []
    return [class_names[i] for i in best] + [class_names[int(i)] for i in extra]


def run_neuron(neuron: int, proposer: Proposer, generator: Generator, target: Callable[[Generated, int], np.ndarray],
               control: ControlSampler, settings: LoopSettings = LoopSettings()) -> pd.DataFrame:
    """The whole LINE loop for one neuron; returns its history record (:data:`~.history.HISTORY_COLUMNS`)."""
    score_fn = get_score(settings.score)
    base = [int(settings.seed), int(neuron)]
    r_prop, r_ctrl = np.random.default_rng(base + [0]), np.random.default_rng(base + [2])
    mem = ConceptHistory(settings.n_best + settings.n_random, drop_rng(settings.seed, neuron))
    backends = backends_json(proposer.settings(), generator.settings())
    rows: list[dict] = []
    tried: list[str] = []
    acts_ctrl = control.activations[:, neuron]

    def evaluate(concept: str, phase: str, raw: str = "", prompt: str = "") -> None:
        g = generator.generate(concept)
        a = np.asarray(target(g, neuron), dtype=np.float64)
        cls, ctrl_rows = control.sample(concept, r_ctrl)
        s = float(score_fn(a, acts_ctrl[ctrl_rows]))
        dropped = mem.add(concept, s, float(a.mean()))
        tried.append(concept)
        best, best_score = mem.best()
        rows.append({"neuron": int(neuron), "step": len(rows), "phase": phase, "concept": concept, "score": s,
                     "metric": settings.score, "image_ids": g.image_ids, "prompts": g.prompts, "activations": a,
                     "control_class": control.class_names[cls], "n_control": len(ctrl_rows), "raw": raw, "llm_prompt": prompt,
                     "dropped": dropped, "best_concept": best, "best_score": best_score, "backends": backends,
                     "seed": int(settings.seed)})

    for c in initial_concepts(control.class_means(neuron), control.class_names, settings.n_best,
                              settings.n_random, np.random.default_rng(base + [3])):
        evaluate(c, "init")
    for _ in range(settings.iterations):
        p = proposer.propose(mem.ranked(), list(tried), "iterate", r_prop)
        evaluate(p.concept, "iterate", p.raw, p.prompt)
    if settings.summary_top:
        p = proposer.propose(mem.ranked(settings.summary_top), list(tried), "summary", r_prop)
        evaluate(p.concept, "summary", p.raw, p.prompt)
    return history_frame(rows)


def run_neurons(neurons: Sequence[int], proposer: Proposer, generator: Generator, target, control: ControlSampler,
                settings: LoopSettings = LoopSettings(), on_done: Callable[[int, pd.DataFrame, float], None] | None = None,
                progress: bool = False) -> pd.DataFrame:
    """:func:`run_neuron` for each neuron; ``on_done(neuron, history, seconds)`` after each (checkpoints)."""
    out = []
    for k in tqdm(list(neurons), desc="LINE", unit="neuron", disable=not progress, mininterval=5):
        t0 = time.perf_counter()
        h = run_neuron(int(k), proposer, generator, target, control, settings)
        if on_done is not None:
            on_done(int(k), h, time.perf_counter() - t0)
        out.append(h)
    return pd.concat(out, ignore_index=True) if out else history_frame([])
