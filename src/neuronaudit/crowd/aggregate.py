"""Scores from real ratings: counts -> soft presence -> the IS estimate of rho with its interval (issue 9, item 5).

Inputs are the crowd files of a study (docs/schemas.md, "Crowdsourced evaluation"): ``explanations``
(one row per evaluated explanation), ``design`` (one row per MG-IS draw: ``explanation_id``, ``draw``,
``image_id``, ``q``, ``weight`` = 1 / (N q), ``a_hat``), ``items`` (one row per distinct (image_id,
concept) to rate, with the guide's ``prior`` and the gold flags) and the ratings store
(:data:`neuronaudit.crowd.ratings.RATINGS_COLUMNS`).

Steps (:func:`aggregate_crowd` runs them all):

1. **Counts** (:func:`dedupe_ratings`, :func:`item_counts`): each rating is matched to its item by
   (image_id, concept); ratings of unknown items are left out and counted. A rater counts once per
   item: if the same rater answered an item more than once (e.g. in two tasks), the last submitted answer
   is kept and the repeats (and how many of them disagreed) are counted. Per item: ``n_yes`` of
   ``n_ratings``. Items rated by fewer raters than planned are counted (``fewer_raters_than_planned``).
2. **eta** (:func:`choose_eta`), the uniform error rate of BRAgg: ``None`` / ``"em"`` = EM
   (:func:`neuronaudit.aggregation.estimate_eta_em`, one-coin model with free prevalence) on the
   histogram of (n_yes, n_ratings) over the non-gold items; ``"gold"`` = the share of ratings of gold
   items that disagree with the gold answer (with its count); a number = an override. eta is kept in
   [1e-3, 0.5 - 1e-6]. If EM has no item with 2 ratings, or no gold item was rated, the fall-back is
   EM (for gold) and then ``ETA_FALLBACK`` = 0.2 (``eta_source`` ``"fallback"``), with a warning.
3. **Soft presence** of every atom concept at every rated image, per aggregation
   (:func:`soft_presence`): ``majority`` (ties 0.5), ``bragg_uniform`` (prior beta), ``bragg_model``
   (prior = the item's guide probability, clipped to [1e-3, 1 - 1e-3]; a missing prior falls back to
   beta and is counted), ``bragg_per_input`` (per-input error model Beta(0.75, 2.5) with the model
   prior, the paper's per-input variant of its best aggregation); and ``bragg_debiased`` (the model-prior
   posterior corrected for rating noise so that its expectation given the truth is the truth,
   :func:`soft_presence`; not in the paper). :func:`aggregate_crowd` defaults to the paper's four; the
   pipeline's default (:data:`DEFAULT_AGGREGATIONS`) puts ``bragg_debiased`` first as the headline
   (:data:`HEADLINE_AGGREGATION`), the only one whose interval covers the exact score under noisy raters
   (docs/crowd.md section 6). Unrated items have no presence (NaN).
   Gold items enter no estimate of eta by EM; they serve the gold eta and the rater report.
4. **The explanation's soft presence at each draw** (:func:`explanation_presence`): every explanation
   is a sum of components weight x formula (simple: 1 x c; linear: w_j x c_j plus the bias;
   compositional: 1 x F; clustered: (l_j + u_j)/2 x F_j). Formulas are grouped by their shape (the
   formula with its concepts renamed c0, c1, ... in order of appearance), and each shape is evaluated
   once by :func:`neuronaudit.explanations.predicted_activation` (probabilistic logic) over all draws
   of all explanations of that shape and all aggregations at once, with a lookup returning the soft
   presences of each slot's concept at each draw's image. Python loops run over shapes, never over
   explanations or inputs. A draw where any atom is unrated is unrated (NaN).
5. **The estimate** (:func:`neuronaudit.crowd.interval.rho_interval`): per explanation the rated draws
   (an input drawn k times counts k times: draws are never collapsed) are packed to the front of an
   (explanations x n) array; explanations with the same number of rated draws are estimated together,
   so the loop runs over the few distinct sample sizes. Unrated draws are left out and counted
   (``n_unrated``); an explanation with no rated draw gets NaN and is recorded in the exclusions;
   degenerate samples (no variation in the soft presence) are flagged as ``crowd.interval`` does. An
   estimate outside [-1, 1] (estimated variance of s near 0) is set to the nearest bound and counted
   (``estimates_clipped``); the interval, clipped the same way by ``rho_interval``, still contains it.
   With ``truth`` (simulated studies) the same draws scored with the true presence give
   ``rho_hat_truth``: the estimate perfect raters would have given, which separates rating noise from
   sampling noise.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neuronaudit.aggregation import (
    BRAGG_BETA,
    bragg_posterior,
    bragg_posterior_per_input,
    estimate_eta_em,
    majority_vote,
)
from neuronaudit.crowd.interval import rho_interval
from neuronaudit.exclusions import Exclusions
from neuronaudit.explanations import (
    And,
    Concept,
    Explanation,
    Node,
    Not,
    Or,
    formula_concepts,
    formula_to_text,
    parse_formula,
    predicted_activation,
)
from neuronaudit.sampling import ESTIMATORS

__all__ = [
    "AGGREGATIONS",
    "EXTRA_AGGREGATIONS",
    "ALL_AGGREGATIONS",
    "AGGREGATION_LABELS",
    "HEADLINE_AGGREGATION",
    "DEFAULT_AGGREGATIONS",
    "ETA_FALLBACK",
    "ESTIMATE_COLUMNS",
    "PRESENCE_COLUMNS",
    "ItemIndex",
    "item_index",
    "RatedItems",
    "EtaChoice",
    "CrowdAggregate",
    "dedupe_ratings",
    "item_counts",
    "choose_eta",
    "soft_presence",
    "bragg_class_means",
    "explanation_components",
    "explanation_presence",
    "aggregate_crowd",
    "synthetic_crowd",
]

log = logging.getLogger(__name__)

#: the paper's aggregations (SPEC sec. 4); the default of :func:`aggregate_crowd`
AGGREGATIONS = ("majority", "bragg_uniform", "bragg_model", "bragg_per_input")
#: aggregations beyond the paper's
EXTRA_AGGREGATIONS = ("bragg_debiased",)
ALL_AGGREGATIONS = AGGREGATIONS + EXTRA_AGGREGATIONS
#: the aggregation whose estimate and interval the crowd path reports first (tables, figure): the only one
#: whose interval covers the exact score at the nominal rate under rating noise (docs/crowd.md, "Which
#: aggregation is the default")
HEADLINE_AGGREGATION = "bragg_debiased"
#: the pipeline's default ``crowd.aggregate.methods``: the headline first, the paper's plug-in aggregations
#: as reported alternatives
DEFAULT_AGGREGATIONS = (HEADLINE_AGGREGATION, *AGGREGATIONS)
AGGREGATION_LABELS = {
    "majority": "Majority vote",
    "bragg_uniform": "BRAgg (uniform prior)",
    "bragg_model": "BRAgg (model prior)",
    "bragg_per_input": "BRAgg (per-input error, model prior)",
    "bragg_debiased": "BRAgg (model prior), debiased",
}
ETA_FALLBACK = 0.2
ETA_RANGE = (1e-3, 0.5 - 1e-6)
PRIOR_EPS = 1e-3

#: columns of estimates.parquet (docs/schemas.md)
ESTIMATE_COLUMNS = [
    "explanation_id", "model", "layer", "neuron", "method", "aggregation", "eta", "eta_source",
    "rho_hat", "se", "lo", "hi", "degenerate", "n_draws", "n_used", "n_unrated", "n_distinct", "n_ratings",
    "exact_rho", "automated_rho", "rho_hat_truth", "covers_exact", "covers_exact_truth", "level", "estimator",
]
#: columns of soft_presence.parquet (docs/schemas.md)
PRESENCE_COLUMNS = ["image_id", "concept", "aggregation", "presence", "n_ratings", "n_yes", "is_gold", "prior",
                    "truth", "evaluations"]

_DESIGN_COLUMNS = ("explanation_id", "draw", "image_id", "weight", "a_hat")
_EXPLANATION_COLUMNS = ("explanation_id", "model", "layer", "neuron", "method", "structured")
_ITEM_COLUMNS = ("image_id", "concept")


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {list(df.columns)}); "
                         "write it with the crowd design stage (docs/schemas.md)")


def _str_array(s: pd.Series) -> np.ndarray:
    return s.astype(str).to_numpy(dtype=object)


# ----------------------------------------------------------------------------------------------
# 1. Counts
# ----------------------------------------------------------------------------------------------
class ItemIndex:
    """(image_id, concept) -> row of ``items``; vectorised lookups by integer keys."""

    def __init__(self, image_id: np.ndarray, concept: np.ndarray):
        self.images = pd.Index(pd.unique(image_id))
        self.concepts = pd.Index(pd.unique(concept))
        img = self.images.get_indexer(image_id).astype(np.int64)
        con = self.concepts.get_indexer(concept).astype(np.int64)
        key = img * len(self.concepts) + con
        self.order = np.argsort(key, kind="stable")
        self.sorted_keys = key[self.order]
        dup = np.flatnonzero(self.sorted_keys[1:] == self.sorted_keys[:-1])
        if dup.size:
            i = int(self.order[dup[0] + 1])
            raise ValueError(f"items repeat (image_id, concept) = ({image_id[i]!r}, {concept[i]!r}) at row {i} "
                             f"({dup.size} repeats); items.parquet needs one row per distinct pair")
        self.n = len(key)

    def image_codes(self, image_id) -> np.ndarray:
        return self.images.get_indexer(np.asarray(image_id, dtype=object)).astype(np.int64)

    def concept_codes(self, concept) -> np.ndarray:
        return self.concepts.get_indexer(np.asarray(concept, dtype=object)).astype(np.int64)

    def find_codes(self, img: np.ndarray, con: np.ndarray) -> np.ndarray:
        """Row of items for image / concept codes (-1 where unknown)."""
        img, con = np.broadcast_arrays(np.asarray(img, dtype=np.int64), np.asarray(con, dtype=np.int64))
        ok = (img >= 0) & (con >= 0)
        key = np.where(ok, img * len(self.concepts) + con, -1)
        if self.n == 0:
            return np.full(key.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.sorted_keys, key), 0, self.n - 1)
        hit = ok & (self.sorted_keys[pos] == key)
        return np.where(hit, self.order[pos], -1)

    def find(self, image_id, concept) -> np.ndarray:
        return self.find_codes(self.image_codes(image_id), self.concept_codes(concept))


@dataclass
class RatedItems:
    """Ratings matched to items, one per (item, rater): ``item`` (row of items), ``rater`` (code into
    ``raters``), ``rating`` (0/1), ``task`` (the task of the kept answer); plus what was left out."""

    item: np.ndarray
    rater: np.ndarray
    raters: np.ndarray
    rating: np.ndarray
    task: np.ndarray
    n_read: int
    n_unknown: int
    unknown_pairs: list
    n_repeat: int
    n_conflict: int

    @property
    def n_kept(self) -> int:
        return int(len(self.item))


def dedupe_ratings(ratings: pd.DataFrame, items: pd.DataFrame | ItemIndex) -> RatedItems:
    """Match ratings to items and keep one answer per (item, rater): the last submitted (module doc)."""
    _require(ratings, ("image_id", "concept", "rater", "rating"), "the ratings table")
    index = items if isinstance(items, ItemIndex) else item_index(items)
    n_read = len(ratings)
    rating = pd.to_numeric(ratings["rating"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(rating, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"ratings row {i}: rating {ratings['rating'].iloc[i]!r} is not 0/1 "
                         f"({int(bad.sum())} such rows); re-import the answers with crowd.ratings.ingest_ratings")
    item = index.find(_str_array(ratings["image_id"]), _str_array(ratings["concept"]))
    unknown = item < 0
    unknown_pairs: list = []
    if unknown.any():
        u = ratings.loc[unknown, ["image_id", "concept"]].drop_duplicates()
        unknown_pairs = [f"{a}|{b}" for a, b in zip(u["image_id"], u["concept"], strict=True)]
    keep = ~unknown
    rater_codes, raters = pd.factorize(ratings["rater"].astype(str).to_numpy(dtype=object)[keep])
    raters = np.asarray(raters, dtype=object)
    item_k = item[keep]
    rating_k = rating[keep].astype(np.int8)
    if "task" in ratings.columns:
        task_k = _str_array(ratings["task"])[keep]
    else:
        task_k = np.full(len(item_k), "", dtype=object)
    if "submitted_at" in ratings.columns:
        t = pd.to_datetime(ratings["submitted_at"], utc=True)
        tns = t.to_numpy(dtype="datetime64[ns]").view(np.int64)[keep]  # NaT = int64 min: first
    else:
        tns = np.zeros(len(item_k), dtype=np.int64)
    key = item_k.astype(np.int64) * max(len(raters), 1) + rater_codes
    order = np.lexsort((np.arange(len(key)), tns, key))  # within a key: by time, then file order
    ks = key[order]
    last = np.ones(len(ks), dtype=bool)
    last[:-1] = ks[1:] != ks[:-1]
    n_repeat = int(len(ks) - last.sum())
    n_conflict = 0
    if n_repeat:
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        r_sorted = rating_k[order]
        n_conflict = int((np.maximum.reduceat(r_sorted, starts) != np.minimum.reduceat(r_sorted, starts)).sum())
    kept = order[last]
    return RatedItems(item=item_k[kept], rater=rater_codes[kept], raters=raters, rating=rating_k[kept],
                      task=task_k[kept], n_read=n_read, n_unknown=int(unknown.sum()), unknown_pairs=unknown_pairs,
                      n_repeat=n_repeat, n_conflict=n_conflict)


def item_index(items: pd.DataFrame) -> ItemIndex:
    """The (image_id, concept) -> row lookup of an items table (error if a pair repeats)."""
    _require(items, _ITEM_COLUMNS, "the items table")
    return ItemIndex(_str_array(items["image_id"]), _str_array(items["concept"]))


def item_counts(rated: RatedItems, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_yes, n_ratings) per item row, each rater counted once."""
    yes = np.bincount(rated.item, weights=rated.rating, minlength=n_items).astype(np.int64)
    total = np.bincount(rated.item, minlength=n_items).astype(np.int64)
    return yes, total


# ----------------------------------------------------------------------------------------------
# 2. eta
# ----------------------------------------------------------------------------------------------
@dataclass
class EtaChoice:
    """The eta BRAgg uses: ``eta``, ``source`` (em | gold | config | fallback), ``n`` (ratings it rests
    on: ratings of non-gold items for EM, gold ratings for gold), ``raw`` (before clipping), ``note``."""

    eta: float
    source: str
    n: int
    raw: float
    note: str = ""


def _em_eta(yes: np.ndarray, total: np.ndarray) -> float:
    """EM on the histogram of (yes, total) pairs (free prevalence); ValueError if unidentifiable."""
    keep = total >= 1
    y, m = yes[keep].astype(np.int64), total[keep].astype(np.int64)
    if not np.any(m >= 2):
        raise ValueError("EM for eta needs items with at least 2 ratings")
    base = int(m.max()) + 1
    keys, counts = np.unique(m * base + y, return_counts=True)  # the histogram of (yes, total)
    res = estimate_eta_em(keys % base, keys // base, weight=counts.astype(np.float64))
    return float(np.asarray(res.eta))


def choose_eta(
    setting,
    yes: np.ndarray,
    total: np.ndarray,
    is_gold: np.ndarray,
    rated: RatedItems | None = None,
    gold_answer: np.ndarray | None = None,
) -> EtaChoice:
    """eta from ``setting``: None / "em" (EM over non-gold items), "gold" (disagreement with gold
    answers; needs ``rated`` and ``gold_answer``, NaN for non-gold), or a number (override)."""
    yes, total = np.asarray(yes), np.asarray(total)
    is_gold = np.asarray(is_gold, dtype=bool)
    note = ""

    def clip(raw: float, source: str, n: int, note: str) -> EtaChoice:
        eta = float(np.clip(raw, *ETA_RANGE))
        if eta != raw:
            note = (note + "; " if note else "") + f"clipped from {raw:.4g} into [{ETA_RANGE[0]}, {ETA_RANGE[1]:.6f}]"
        return EtaChoice(eta=eta, source=source, n=n, raw=float(raw), note=note)

    if setting is not None and not isinstance(setting, str):
        value = float(setting)
        if not 0.0 < value < 1.0:
            raise ValueError(f"crowd.aggregate.eta = {setting!r}: an override must lie strictly in (0, 1)")
        return EtaChoice(eta=value, source="config", n=0, raw=value)
    if setting not in (None, "em", "gold"):
        raise ValueError(f"crowd.aggregate.eta = {setting!r}: use null (EM), 'em', 'gold' or a number in (0, 1)")
    if setting == "gold":
        if rated is None or gold_answer is None:
            raise ValueError("eta = 'gold' needs the ratings and the items' gold answers")
        ga = np.asarray(gold_answer, dtype=np.float64)
        on_gold = is_gold[rated.item] & np.isfinite(ga[rated.item])
        n_gold = int(on_gold.sum())
        if n_gold:
            raw = float(np.mean(rated.rating[on_gold] != ga[rated.item[on_gold]]))
            return clip(raw, "gold", n_gold, f"{int(round(raw * n_gold))} of {n_gold} gold ratings disagree")
        note = "no rated gold item: eta by EM instead"
        log.warning("eta = 'gold' but no gold item was rated; estimating eta by EM instead")
    ng = ~is_gold
    try:
        raw = _em_eta(yes[ng], total[ng])
        return clip(raw, "em", int(total[ng].sum()), note)
    except ValueError as e:
        log.warning("eta by EM impossible (%s); using eta = %g", e, ETA_FALLBACK)
        note = (note + "; " if note else "") + f"EM impossible ({e})"
        return EtaChoice(eta=ETA_FALLBACK, source="fallback", n=0, raw=ETA_FALLBACK, note=note)


# ----------------------------------------------------------------------------------------------
# 3. Soft presence per item
# ----------------------------------------------------------------------------------------------
def soft_presence(
    yes: np.ndarray,
    total: np.ndarray,
    prior: np.ndarray | None,
    methods: Sequence[str] = AGGREGATIONS,
    beta: float = BRAGG_BETA,
    eta: float = ETA_FALLBACK,
    eps: float = PRIOR_EPS,
) -> np.ndarray:
    """(len(methods), items) soft presence; NaN for items without ratings. ``prior``: the guide's
    probability per item (NaN = none: beta is used for the model prior there).

    ``bragg_debiased`` is (s - t0) / (t1 - t0) with s the BRAgg (model prior) posterior and t_c =
    E[s | c] under the one-coin model (:func:`bragg_class_means`): an unbiased estimate of the binary
    truth under that model (it can leave [0, 1]); docs/evaluation.md says why."""
    unknown = [m for m in methods if m not in ALL_AGGREGATIONS]
    if unknown:
        raise ValueError(f"unknown aggregation(s) {unknown}; expected some of {list(ALL_AGGREGATIONS)}")
    yes = np.asarray(yes, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    model_prior = np.full(yes.shape, float(beta)) if prior is None else np.asarray(prior, dtype=np.float64)
    model_prior = np.where(np.isfinite(model_prior), model_prior, beta)
    out = np.empty((len(methods), len(yes)))
    for k, m in enumerate(methods):  # the four aggregations
        if m == "majority":
            out[k] = majority_vote(yes, total)
        elif m == "bragg_uniform":
            out[k] = bragg_posterior(yes, total, eta, prior=beta, eps=eps)
        elif m == "bragg_model":
            out[k] = bragg_posterior(yes, total, eta, prior=model_prior, eps=eps)
        elif m == "bragg_debiased":
            t1, t0 = bragg_class_means(total, eta, model_prior, eps)
            out[k] = (bragg_posterior(yes, total, eta, prior=model_prior, eps=eps) - t0) / (t1 - t0)
        else:
            out[k] = bragg_posterior_per_input(yes, total, prior=model_prior, eps=eps)
    out[:, total == 0] = np.nan
    return out


def bragg_class_means(total, eta: float, prior, eps: float = PRIOR_EPS) -> tuple[np.ndarray, np.ndarray]:
    """(t1, t0) per item: the expected BRAgg posterior E[s | c] for a true c = 1 and c = 0, when each of
    the item's ``total`` raters errs independently with probability eta (one-coin model):
    t_c = sum_k Binomial(k; m, 1 - eta if c else eta) bragg_posterior(k, m, eta, prior). The loop runs
    over k = 0..max(m)."""
    from scipy import stats  # deferred: importing scipy.stats costs every job 0.3 s

    total = np.asarray(total, dtype=np.int64)
    prior = np.broadcast_to(np.asarray(prior, dtype=np.float64), total.shape)
    t1 = np.zeros(total.shape)
    t0 = np.zeros(total.shape)
    for k in range(int(total.max(initial=0)) + 1):
        ok = k <= total
        post = bragg_posterior(np.minimum(k, total), total, eta, prior=prior, eps=eps)
        t1 += np.where(ok, stats.binom.pmf(k, total, 1.0 - eta) * post, 0.0)
        t0 += np.where(ok, stats.binom.pmf(k, total, eta) * post, 0.0)
    return t1, t0


# ----------------------------------------------------------------------------------------------
# 4. Explanations at the draws
# ----------------------------------------------------------------------------------------------
def _rename(node: Node, slot: Mapping[str, str]) -> Node:
    if isinstance(node, Concept):
        return Concept(slot[node.name])
    if isinstance(node, Not):
        return Not(_rename(node.a, slot))
    cls = And if isinstance(node, And) else Or
    return cls(_rename(node.a, slot), _rename(node.b, slot))


@functools.lru_cache(maxsize=16384)
def _formula_shape(formula: str) -> tuple[str, tuple[str, ...]]:
    """("c0 AND NOT c1", ("dog", "grass")): the formula with its concepts as slots c0, c1, ..."""
    node = parse_formula(formula)
    names = formula_concepts(node)
    shape = formula_to_text(_rename(node, {n: f"c{i}" for i, n in enumerate(names)}))
    return shape, tuple(names)


def explanation_components(structured) -> tuple[list[tuple[float, str, tuple[str, ...]]], float]:
    """An explanation as ([(weight, shape, concepts), ...], bias): s = bias + sum weight x shape(concepts)."""
    e = structured if isinstance(structured, Explanation) else Explanation.from_dict(structured)
    p = e.payload
    if e.kind == "simple":
        return [(1.0, "c0", (p["concept"],))], 0.0
    if e.kind == "linear":
        return [(float(w), "c0", (name,)) for w, name in p["terms"]], float(p["bias"])
    if e.kind == "compositional":
        return [(1.0, *_formula_shape(p["formula"]))], 0.0
    return [(0.5 * (c["lower"] + c["upper"]), *_formula_shape(c["formula"])) for c in p["clusters"]], 0.0


def _ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, index): for each i, the indices starts[i] .. starts[i] + lengths[i] - 1, flattened."""
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    offs = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, np.asarray(starts, dtype=np.int64)[owner] + offs


@dataclass
class _Parts:
    """Components of many explanations, as flat arrays (one row per component)."""

    expl: np.ndarray
    weight: np.ndarray
    shape: np.ndarray  # code into shapes
    shapes: list
    concepts: np.ndarray  # (n_comp, max slots) concept names (object; None = no slot)
    bias: np.ndarray  # (E,)
    kind: np.ndarray  # (E,) the explanation's kind


def _parts(structured: Sequence) -> _Parts:
    expl, weight, shape, concepts, bias, kinds = [], [], [], [], [], []
    shapes: dict[str, int] = {}
    for i, s in enumerate(structured):  # a loop over explanations to parse them (no inputs)
        try:
            e = s if isinstance(s, Explanation) else Explanation.from_dict(s)
            comps, b = explanation_components(e)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"explanation {i}: cannot read its structured form {s!r}: {err}") from err
        bias.append(b)
        kinds.append(e.kind)
        for w, sh, names in comps:
            expl.append(i)
            weight.append(w)
            shape.append(shapes.setdefault(sh, len(shapes)))
            concepts.append(names)
    width = max((len(c) for c in concepts), default=1)
    cmat = np.full((len(concepts), width), None, dtype=object)
    for j, names in enumerate(concepts):
        cmat[j, : len(names)] = names
    return _Parts(np.asarray(expl, dtype=np.int64), np.asarray(weight, dtype=np.float64),
                  np.asarray(shape, dtype=np.int64), list(shapes), cmat, np.asarray(bias, dtype=np.float64),
                  np.asarray(kinds, dtype=object))


def explanation_presence(
    structured: Sequence,
    draw_expl: np.ndarray,
    draw_image: np.ndarray,
    items: pd.DataFrame | ItemIndex,
    values: np.ndarray,
) -> np.ndarray:
    """The explanations' soft presence s(x, E) at their draws, for every row of ``values`` at once.

    structured: E explanations (dicts, JSON strings or ``Explanation``); draw_expl (D,) the explanation
    of each draw (index into ``structured``); draw_image (D,) the drawn image ids; items: the items
    table (image_id, concept) whose rows ``values`` (A, items) hold the soft presences (NaN = unrated).
    Returns (A, D), NaN where an atom concept of the draw's explanation is unrated at its image.
    """
    return _draw_presence(structured, draw_expl, draw_image, items, values)[0]


def _draw_presence(structured, draw_expl, draw_image, items, values):
    """(s (A, D), binary second moment (A, D), (draw, item) pairs looked up): see explanation_presence.

    The second moment is an estimate of E[s_true^2] from unbiased atom estimates v_j of binary atoms:
    s itself for simple and compositional explanations (a binary truth has s^2 = s), s^2 - sum_j
    w_j^2 (v_j^2 - v_j) for linear ones (the atoms' own squares replaced by the atoms, c^2 = c), and
    s^2 for clustered ones (approximate)."""
    index = items if isinstance(items, ItemIndex) else item_index(items)
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[1] != index.n:
        raise ValueError(f"values has {values.shape[1]} columns but there are {index.n} items")
    draw_expl = np.asarray(draw_expl, dtype=np.int64)
    n_draws = len(draw_expl)
    parts = _parts(structured)
    n_expl = len(structured)
    if n_draws and (draw_expl.min() < 0 or draw_expl.max() >= n_expl):
        raise ValueError(f"draw_expl must index the {n_expl} explanations")
    img = index.image_codes(np.asarray(draw_image, dtype=object))
    # draws of explanation e: order[start[e] : start[e] + count[e]]
    order = np.argsort(draw_expl, kind="stable")
    count = np.bincount(draw_expl, minlength=n_expl)
    start = np.cumsum(count) - count
    out = np.zeros((values.shape[0], n_draws))
    out += parts.bias[draw_expl]
    pad = np.concatenate([values, np.full((values.shape[0], 1), np.nan)], axis=1)  # column -1: unknown item
    looked: list[tuple[np.ndarray, np.ndarray]] = []
    linear_corr = np.zeros_like(out)
    is_linear = parts.kind == "linear"
    for g, shape in enumerate(parts.shapes):  # one pass per formula shape
        comp = np.flatnonzero(parts.shape == g)
        owner, pos = _ragged_arange(start[parts.expl[comp]], count[parts.expl[comp]])
        draws = order[pos]
        comp_of = comp[owner]
        d_img = img[draws]
        slots = {}
        for k in range(parts.concepts.shape[1]):
            names = parts.concepts[comp, k]
            if all(n is None for n in names):
                break
            con = index.concept_codes(np.where(names == None, "", names).astype(object))  # noqa: E711
            it = index.find_codes(d_img, con[owner])
            slots[f"c{k}"] = pad[:, it]
            looked.append((draws[it >= 0], it[it >= 0]))
            # a concept missing from the items never matches (-1 -> NaN)
        val = predicted_activation(Explanation("compositional", {"formula": shape}), slots.__getitem__)
        w = parts.weight[comp_of]
        contrib = val * w
        lin = is_linear[parts.expl[comp_of]]
        corr = np.where(lin, w * w * (val * val - val), 0.0)
        for a in range(values.shape[0]):  # the few aggregations
            out[a] += np.bincount(draws, weights=contrib[a], minlength=n_draws)
            # NaN survive bincount's weighted sum (NaN + x = NaN)
            if lin.any():
                linear_corr[a] += np.bincount(draws, weights=corr[a], minlength=n_draws)
    kind_d = parts.kind[draw_expl] if n_draws else np.zeros(0, dtype=object)
    binary = (kind_d == "simple") | (kind_d == "compositional")
    cc = np.where(binary, out, out * out - np.where(kind_d == "linear", linear_corr, 0.0))
    if looked:
        d = np.concatenate([x[0] for x in looked])
        it = np.concatenate([x[1] for x in looked])
    else:
        d = it = np.zeros(0, dtype=np.int64)
    return out, cc, (d, it)


# ----------------------------------------------------------------------------------------------
# 5. Everything: estimates and the soft-presence table
# ----------------------------------------------------------------------------------------------
@dataclass
class CrowdAggregate:
    """What :func:`aggregate_crowd` returns: the two tables, a summary (for logs and metadata) and
    what was left out."""

    estimates: pd.DataFrame
    presence: pd.DataFrame
    summary: dict = field(default_factory=dict)
    excluded: Exclusions = field(default_factory=lambda: Exclusions("crowd_aggregate"))


def _nullable_int8(s: pd.Series | None, n: int) -> np.ndarray:
    if s is None:
        return np.full(n, np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _design_arrays(design: pd.DataFrame, expl_ids: pd.Index) -> dict:
    _require(design, _DESIGN_COLUMNS, "the design table")
    eid = _str_array(design["explanation_id"])
    e = expl_ids.get_indexer(eid)
    if (e < 0).any():
        i = int(np.flatnonzero(e < 0)[0])
        raise ValueError(f"design row {i}: explanation_id {eid[i]!r} is not in explanations.parquet "
                         f"({int((e < 0).sum())} such rows); rebuild the crowd design")
    w = pd.to_numeric(design["weight"], errors="coerce").to_numpy(dtype=np.float64)
    a = pd.to_numeric(design["a_hat"], errors="coerce").to_numpy(dtype=np.float64)
    for name, x, ok in (("weight", w, np.isfinite(w) & (w > 0)), ("a_hat", a, np.isfinite(a))):
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"design row {i} ({eid[i]!r}, draw {design['draw'].iloc[i]}): {name} = {float(x[i])!r} "
                             f"must be finite{' and > 0' if name == 'weight' else ''}")
    draw = design["draw"].to_numpy(dtype=np.int64)
    order = np.lexsort((draw, e))  # draw order within each explanation
    return {"expl": e[order], "draw": draw[order], "image": _str_array(design["image_id"])[order],
            "weight": w[order], "a_hat": a[order]}


def _covers(lo: np.ndarray, hi: np.ndarray, exact: np.ndarray, rho_hat: np.ndarray) -> pd.arrays.BooleanArray:
    """lo <= exact <= hi as a nullable boolean: null where the exact rho is unknown or there is no
    estimate; False for a degenerate sample (no interval: a miss, as ``crowd.interval`` counts it)."""
    known = np.isfinite(exact) & np.isfinite(rho_hat)
    with np.errstate(invalid="ignore"):
        hit = (lo <= exact) & (exact <= hi)  # False where lo / hi are NaN
    out = pd.array(np.where(known, hit, False), dtype="boolean")
    out[~known] = pd.NA
    return out


def _pack(values: np.ndarray, expl: np.ndarray, rank: np.ndarray, n_expl: int, width: int) -> np.ndarray:
    """(..., D) per-draw values -> (..., E, width) with draw d at [expl[d], rank[d]] (NaN elsewhere)."""
    out = np.full((*values.shape[:-1], n_expl, width), np.nan)
    out[..., expl, rank] = values
    return out


def aggregate_crowd(
    explanations: pd.DataFrame,
    design: pd.DataFrame,
    items: pd.DataFrame,
    ratings: pd.DataFrame,
    *,
    methods: Sequence[str] = AGGREGATIONS,
    beta: float = BRAGG_BETA,
    eta=None,
    level: float = 0.95,
    estimator: str = "unbiased",
    truth: pd.DataFrame | None = None,
    planned_raters: int | None = None,
    prior_eps: float = PRIOR_EPS,
) -> CrowdAggregate:
    """Estimates (one row per explanation x aggregation, :data:`ESTIMATE_COLUMNS`) and soft presence
    (one row per item x aggregation, :data:`PRESENCE_COLUMNS`) from the crowd files (module doc).

    ``planned_raters``: raters planned per input (the config's raters_per_input; default the most
    common number of ratings of a non-gold item); items with fewer are counted.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"crowd.aggregate.estimator must be one of {ESTIMATORS}, got {estimator!r}")
    methods = list(methods)
    unknown = [m for m in methods if m not in ALL_AGGREGATIONS]
    if unknown or not methods:
        raise ValueError(f"crowd.aggregate.methods {methods}: expected a non-empty subset of {list(ALL_AGGREGATIONS)}")
    _require(explanations, _EXPLANATION_COLUMNS, "the explanations table")
    ex = Exclusions("crowd_aggregate", log)
    expl = explanations.reset_index(drop=True)
    expl_ids = pd.Index(_str_array(expl["explanation_id"]))
    if expl_ids.has_duplicates:
        dup = expl_ids[expl_ids.duplicated()][0]
        raise ValueError(f"explanations.parquet repeats explanation_id {dup!r}; one row per explanation")
    n_expl = len(expl)

    # --- items, counts, eta, soft presence ------------------------------------------------------
    index = item_index(items)
    n_items = index.n
    is_gold = items["is_gold"].fillna(False).to_numpy(dtype=bool) if "is_gold" in items else np.zeros(n_items, bool)
    gold_answer = _nullable_int8(items.get("gold_answer"), n_items)
    prior = (pd.to_numeric(items["prior"], errors="coerce").to_numpy(dtype=np.float64)
             if "prior" in items else np.full(n_items, np.nan))
    rated = dedupe_ratings(ratings, index)
    if rated.n_unknown:
        ex.add("rating item", rated.unknown_pairs, "rated (image_id|concept) is not in items.parquet "
               f"({rated.n_unknown} ratings left out)")
    if rated.n_repeat:
        log.warning("%d repeated answers of a rater to the same item counted once (the last submitted); "
                    "%d of those items had disagreeing answers", rated.n_repeat, rated.n_conflict)
    yes, total = item_counts(rated, n_items)
    ng = ~is_gold
    if planned_raters is None:
        rated_ng = total[ng & (total > 0)]
        planned_raters = int(np.bincount(rated_ng).argmax()) if rated_ng.size else 0
    fewer = int((ng & (total < planned_raters)).sum())
    if fewer:
        log.warning("%d of %d non-gold items have fewer than the planned %d raters (%d have none)",
                    fewer, int(ng.sum()), planned_raters, int((ng & (total == 0)).sum()))
    eta_choice = choose_eta(eta, yes, total, is_gold, rated, gold_answer)
    missing_prior = int((~np.isfinite(prior) & ng).sum())
    if missing_prior and any(m in methods for m in ("bragg_model", "bragg_per_input", "bragg_debiased")):
        log.warning("%d items have no model prior; BRAgg's model prior falls back to beta = %g there",
                    missing_prior, beta)
    pres = soft_presence(yes, total, prior, methods, beta=beta, eta=eta_choice.eta, eps=prior_eps)
    tvals = None
    if truth is not None:
        _require(truth, ("image_id", "concept", "truth"), "the truth table")
        t_it = index.find(_str_array(truth["image_id"]), _str_array(truth["concept"]))
        tvals = np.full(n_items, np.nan)
        ok = t_it >= 0
        tvals[t_it[ok]] = pd.to_numeric(truth["truth"], errors="coerce").to_numpy(dtype=np.float64)[ok]

    # --- draws -> explanation presence -> estimates -----------------------------------------------
    d = _design_arrays(design, expl_ids)
    stack = pres if tvals is None else np.vstack([pres, tvals[None, :]])
    c_draw, cc_binary, (look_d, look_it) = _draw_presence(
        expl["structured"].tolist(), d["expl"], d["image"], index, stack)
    # second moment of c: c^2 for soft presences, the binary form for the debiased estimate of the truth
    debiased_row = np.asarray([m == "bragg_debiased" for m in methods] + [False] * (len(stack) - len(methods)))
    cc_draw = np.where(debiased_row[:, None], cc_binary, c_draw * c_draw)
    n_draws = np.bincount(d["expl"], minlength=n_expl)
    ok_draw = np.isfinite(c_draw[: len(methods)]).all(axis=0)
    n_used = np.bincount(d["expl"], weights=ok_draw, minlength=n_expl).astype(np.int64)
    # distinct rated images and the ratings behind them, per explanation
    img_code = index.image_codes(d["image"])
    pair = np.unique(d["expl"][ok_draw] * (len(index.images) + 1) + img_code[ok_draw] + 1)
    n_distinct = np.bincount(pair // (len(index.images) + 1), minlength=n_expl)
    okl = ok_draw[look_d]
    ei = np.unique(d["expl"][look_d[okl]].astype(np.int64) * max(n_items, 1) + look_it[okl])
    n_ratings = np.bincount(ei // max(n_items, 1), weights=total[ei % max(n_items, 1)], minlength=n_expl)
    # pack rated draws to the front, in draw order (an input drawn k times stays k times)
    sel = np.flatnonzero(ok_draw)
    e_sel = d["expl"][sel]
    rank = np.arange(len(sel)) - (np.cumsum(n_used) - n_used)[e_sel]
    width = int(n_used.max()) if n_expl and n_used.size else 0
    a_pack = _pack(d["a_hat"][sel], e_sel, rank, n_expl, max(width, 1))
    w_pack = _pack(d["weight"][sel], e_sel, rank, n_expl, max(width, 1))
    c_pack = _pack(c_draw[:, sel], e_sel, rank, n_expl, max(width, 1))  # (A (+1), E, width)
    cc_pack = _pack(cc_draw[:, sel], e_sel, rank, n_expl, max(width, 1))
    n_rows = c_pack.shape[0]
    fields = {k: np.full((n_rows, n_expl), np.nan) for k in ("rho_hat", "se", "lo", "hi")}
    fields["degenerate"] = np.zeros((n_rows, n_expl), dtype=bool)
    for k in np.unique(n_used[n_used > 0]):  # the few distinct numbers of rated draws
        rows = np.flatnonzero(n_used == k)
        res = rho_interval(a_pack[rows, :k], c_pack[:, rows, :k], w_pack[rows, :k], estimator,
                           cc_s=cc_pack[:, rows, :k], level=level)
        for f in fields:
            fields[f][:, rows] = getattr(res, f)
    # a correlation lies in [-1, 1]: an estimate outside it (the ratio's estimated Var(s) near 0, e.g. a
    # debiased sample with few positives) is projected onto [-1, 1], which can only bring it closer to the
    # true score; rho_interval clips the interval the same way, so the interval still contains it
    with np.errstate(invalid="ignore"):
        n_clipped = (np.abs(fields["rho_hat"]) > 1.0).sum(axis=1)
    fields["rho_hat"] = np.clip(fields["rho_hat"], -1.0, 1.0)
    if n_clipped[: len(methods)].any():
        log.warning("estimates outside [-1, 1] set to the nearest bound: %s",
                    {m: int(n_clipped[k]) for k, m in enumerate(methods) if n_clipped[k]})
    none = np.flatnonzero(n_used == 0)
    if none.size:
        no_design = none[n_draws[none] == 0]
        no_rating = none[n_draws[none] > 0]
        ex.add("explanation", expl_ids[no_design], "no draws in design.parquet")
        ex.add("explanation", expl_ids[no_rating], "no draw with every atom concept rated")
    partial = int(((n_used > 0) & (n_used < n_draws)).sum())
    if partial:
        log.warning("%d explanations estimated on part of their draws (unrated draws left out: %d in all)",
                    partial, int((n_draws - n_used).sum()))
    exact = (pd.to_numeric(expl["exact_rho"], errors="coerce").to_numpy(dtype=np.float64)
             if "exact_rho" in expl else np.full(n_expl, np.nan))
    automated = (pd.to_numeric(expl["automated_rho"], errors="coerce").to_numpy(dtype=np.float64)
                 if "automated_rho" in expl else np.full(n_expl, np.nan))
    rho_truth = fields["rho_hat"][-1] if tvals is not None else np.full(n_expl, np.nan)
    nan = np.full(n_expl, np.nan)
    if tvals is not None:
        covers_truth = _covers(fields["lo"][-1], fields["hi"][-1], exact, rho_truth)
    else:
        covers_truth = _covers(nan, nan, exact, nan)
    frames = []
    for k, m in enumerate(methods):
        uses_eta = m in ("bragg_uniform", "bragg_model", "bragg_debiased")
        lo, hi = fields["lo"][k], fields["hi"][k]
        covers = _covers(lo, hi, exact, fields["rho_hat"][k])
        frames.append(pd.DataFrame({
            "explanation_id": np.asarray(expl_ids, dtype=object),
            "model": _str_array(expl["model"]),
            "layer": _str_array(expl["layer"]),
            "neuron": _str_array(expl["neuron"]),
            "method": _str_array(expl["method"]),
            "aggregation": m,
            "eta": eta_choice.eta if uses_eta else np.nan,
            "eta_source": eta_choice.source if uses_eta else "n/a",
            "rho_hat": fields["rho_hat"][k],
            "se": fields["se"][k],
            "lo": lo,
            "hi": hi,
            "degenerate": fields["degenerate"][k],
            "n_draws": n_draws.astype(np.int64),
            "n_used": n_used,
            "n_unrated": (n_draws - n_used).astype(np.int64),
            "n_distinct": n_distinct.astype(np.int64),
            "n_ratings": n_ratings.astype(np.int64),
            "exact_rho": exact,
            "automated_rho": automated,
            "rho_hat_truth": rho_truth,
            "covers_exact": covers,
            "covers_exact_truth": covers_truth,
            "level": float(level),
            "estimator": estimator,
        }))
    estimates = pd.concat(frames, ignore_index=True)[ESTIMATE_COLUMNS]

    # --- soft_presence.parquet ---------------------------------------------------------------
    # which (model, layer) evaluations each item serves, through the draws that looked it up
    ml = (expl["model"].astype(str) + "/" + expl["layer"].astype(str)).to_numpy(dtype=object)
    ml_codes, ml_names = pd.factorize(ml)
    n_ml = max(len(ml_names), 1)
    member = np.zeros((n_items, n_ml), dtype=bool)
    member[look_it, ml_codes[d["expl"][look_d]]] = True
    patterns, inverse = np.unique(np.packbits(member, axis=1), axis=0, return_inverse=True)
    patterns = np.unpackbits(patterns, axis=1, count=n_ml).astype(bool)
    texts = np.asarray([json.dumps(sorted(str(ml_names[j]) for j in np.flatnonzero(p))) for p in patterns],
                       dtype=object)  # one per distinct membership pattern (few)
    evaluations = texts[np.ravel(inverse)] if n_items else np.zeros(0, dtype=object)
    truth_col = pd.array(np.where(np.isfinite(tvals), tvals, 0).astype(np.int8) if tvals is not None
                         else np.zeros(n_items, np.int8), dtype="Int8")
    if tvals is None:
        truth_col[:] = pd.NA
    else:
        truth_col[~np.isfinite(tvals)] = pd.NA
    base = pd.DataFrame({
        "image_id": _str_array(items["image_id"]),
        "concept": _str_array(items["concept"]),
    })
    presence = pd.concat([
        base.assign(aggregation=m, presence=pres[k], n_ratings=total, n_yes=yes, is_gold=is_gold, prior=prior,
                    truth=truth_col, evaluations=evaluations)
        for k, m in enumerate(methods)
    ], ignore_index=True)[PRESENCE_COLUMNS]

    cover_known = estimates["covers_exact"].notna()
    summary = {
        "ratings_read": rated.n_read,
        "ratings_kept": rated.n_kept,
        "ratings_unknown_item": rated.n_unknown,
        "repeat_answers": rated.n_repeat,
        "repeat_answers_disagreeing": rated.n_conflict,
        "items": n_items,
        "gold_items": int(is_gold.sum()),
        "items_rated": int((total > 0).sum()),
        "planned_raters": int(planned_raters),
        "items_fewer_raters_than_planned": fewer,
        "items_without_prior": missing_prior,
        "eta": eta_choice.eta,
        "eta_source": eta_choice.source,
        "eta_n": eta_choice.n,
        "eta_raw": eta_choice.raw,
        "eta_note": eta_choice.note,
        "explanations": n_expl,
        "explanations_partly_rated": partial,
        "explanations_without_estimate": int(none.size),
        "unrated_draws": int((n_draws - n_used).sum()),
        "estimates_clipped": {m: int(n_clipped[k]) for k, m in enumerate(methods)},
        "coverage": {m: (float(g["covers_exact"][cover_known].astype(bool).mean()) if cover_known[g.index].any()
                         else None) for m, g in estimates.groupby("aggregation", sort=False)},
        "coverage_true_presence": (
            {m: float(g["covers_exact_truth"].dropna().astype(bool).mean()) for m, g in
             estimates.groupby("aggregation", sort=False)} if estimates["covers_exact_truth"].notna().any() else None),
        "level": level,
        "estimator": estimator,
    }
    log.info("eta = %.4f (%s, n = %d%s); %d of %d ratings kept; %d explanations x %d aggregations estimated",
             eta_choice.eta, eta_choice.source, eta_choice.n, f"; {eta_choice.note}" if eta_choice.note else "",
             rated.n_kept, rated.n_read, n_expl, len(methods))
    return CrowdAggregate(estimates=estimates, presence=presence, summary=summary, excluded=ex)


# ----------------------------------------------------------------------------------------------
# Synthetic crowd files (tests, benchmarks, docs)
# ----------------------------------------------------------------------------------------------
def synthetic_crowd(
    n_explanations: int = 50,
    n_inputs: int = 5000,
    n: int = 180,
    raters_per_input: int = 3,
    eta: float = 0.05,
    seed: int = 0,
    gamma: float = 0.2,
    n_gold: int = 0,
    pool: int = 60,
    methods: Sequence[str] = ("method_a", "method_b"),
    prevalence: tuple[float, float] = (0.05, 0.3),
    signal: tuple[float, float] = (0.3, 2.0),
    error_concentration: float | None = None,
    spammer_fraction: float = 0.0,
    guide_strength: float = 2.0,
) -> dict[str, pd.DataFrame]:
    """The crowd files of a simulated study whose exact rho is known (docs/schemas.md schemas).

    A population of ``n_inputs`` images; explanation e is a simple explanation "concept<e>" with
    binary truth c_e ~ Bernoulli(prevalence_e), its neuron's activation a = s_e c_e + N(0, 1),
    standardised over the population, and a guide sigmoid(g (2c - 1) + N(0, 1)) with g = ``guide_strength``
    (2: an informative guide; 0.5: a nearly flat one, like the default study's ConSE prior); n MG-IS draws (gamma)
    per explanation; every distinct drawn (image, concept) is an item rated by ``raters_per_input``
    distinct raters of a pool of ``pool`` with uniform error ``eta``. ``n_gold`` extra items of known
    answer (random images and concepts) are rated the same way. Returns explanations, design, items,
    ratings, truth (frames).

    Heterogeneous raters (as ``crowd_simulate``'s MTurk workers): with ``error_concentration`` = k each
    rater of the pool has an error rate ~ Beta(k eta, k (1 - eta)) (mean eta), and a ``spammer_fraction``
    of the pool answers at random (error 0.5). Both come from a second generator seeded ``[seed, 1]``, so
    that the default (every rater errs with eta, no spammer) replays the same stream as before.
    """
    rng = np.random.default_rng(seed)
    e_n, big_n = int(n_explanations), int(n_inputs)
    prev = rng.uniform(*prevalence, size=(e_n, 1))
    c = rng.random((e_n, big_n)) < prev
    c[:, 0] = True  # every concept present somewhere
    c[:, 1] = False
    a = rng.uniform(*signal, size=(e_n, 1)) * c + rng.standard_normal((e_n, big_n))
    a_hat = (a - a.mean(axis=1, keepdims=True)) / a.std(axis=1, keepdims=True)
    guide = 1.0 / (1.0 + np.exp(-(float(guide_strength) * (2.0 * c - 1.0) + rng.standard_normal(c.shape))))
    q = np.abs(a_hat) * guide
    q *= (1.0 - gamma) / q.sum(axis=1, keepdims=True)
    q += gamma / big_n
    cdf = np.cumsum(q, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random((e_n, n))
    idx = np.stack([np.searchsorted(cdf[e], u[e], side="right") for e in range(e_n)])  # a loop over explanations
    idx = np.minimum(idx, big_n - 1)
    rows = np.arange(e_n)[:, None]
    exact = np.sum(a_hat * c, axis=1) / big_n / np.sqrt(c.mean(axis=1) * (1 - c.mean(axis=1)))
    neurons = np.arange(e_n)
    meth = np.asarray(methods, dtype=object)[neurons % len(methods)]
    eids = np.asarray([f"synth/layer/{k}/{m}" for k, m in zip(neurons, meth, strict=True)], dtype=object)
    concepts = np.asarray([f"concept{k}" for k in neurons], dtype=object)
    explanations = pd.DataFrame({
        "explanation_id": eids, "model": "synth", "layer": "layer", "neuron": neurons.astype(str), "method": meth,
        "explanation": concepts,
        "structured": [json.dumps({"kind": "simple", "concept": t}) for t in concepts],
        "concepts": [json.dumps([t]) for t in concepts], "n_population": big_n,
        "automated_rho": exact + rng.normal(0, 0.05, e_n), "exact_rho": exact,
    })
    images = np.asarray([f"img{i:06d}" for i in range(big_n)], dtype=object)
    design = pd.DataFrame({
        "explanation_id": np.repeat(eids, n), "draw": np.tile(np.arange(n, dtype=np.int32), e_n),
        "image_id": images[idx.ravel()], "q": q[rows, idx].ravel(), "weight": 1.0 / (big_n * q[rows, idx]).ravel(),
        "a_hat": a_hat[rows, idx].ravel(), "c_guide": guide[rows, idx].ravel(),
    })
    key = np.unique(np.repeat(neurons, n) * big_n + idx.ravel())
    it_e, it_i = key // big_n, key % big_n
    g_e = rng.integers(0, e_n, n_gold)
    g_i = rng.integers(0, big_n, n_gold)
    gkey = np.setdiff1d(np.unique(g_e * big_n + g_i), key)
    all_e = np.r_[it_e, gkey // big_n]
    all_i = np.r_[it_i, gkey % big_n]
    gold = np.r_[np.zeros(len(key), bool), np.ones(len(gkey), bool)]
    truth = c[all_e, all_i].astype(np.int8)
    items = pd.DataFrame({
        "image_id": images[all_i], "concept": concepts[all_e], "prior": guide[all_e, all_i], "is_gold": gold,
        "gold_answer": pd.array(np.where(gold, truth, 0), dtype="Int8"),
    })
    items.loc[~gold, "gold_answer"] = pd.NA
    m = int(raters_per_input)
    n_items = len(items)
    base = rng.integers(0, pool, n_items)
    rater = (base[:, None] + np.arange(m)[None, :]) % pool  # m distinct raters per item
    err = np.full(int(pool), float(eta))
    if error_concentration is not None or spammer_fraction > 0:
        rng_r = np.random.default_rng([seed, 1])
        if error_concentration is not None:
            k = float(error_concentration)
            err = rng_r.beta(k * eta, k * (1.0 - eta), size=int(pool))
        err = np.where(rng_r.random(int(pool)) < float(spammer_fraction), 0.5, err)
    flips = rng.random((n_items, m)) < err[rater]
    r = (truth[:, None] ^ flips).astype(np.int8)
    item_rep = np.repeat(np.arange(n_items), m)
    ratings = pd.DataFrame({
        "task": np.char.add("t", (item_rep // 15).astype(str)).astype(object),
        "image_id": items["image_id"].to_numpy()[item_rep], "concept": items["concept"].to_numpy()[item_rep],
        "rater": np.char.add("W", rater.ravel().astype(str)).astype(object), "rating": r.ravel(),
        "source": "synthetic", "submitted_at": pd.Series(pd.NaT, index=range(len(item_rep)), dtype="datetime64[ns, UTC]"),
    })
    truth_df = pd.DataFrame({"image_id": items["image_id"], "concept": items["concept"], "truth": truth,
                             "truth_source": "label"})
    return {"explanations": explanations, "design": design, "items": items, "ratings": ratings, "truth": truth_df}
