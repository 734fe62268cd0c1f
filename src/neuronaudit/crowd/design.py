"""The crowd stage's task design (issue 9, item 1): which explanations are rated, on which inputs, in
which tasks. Rule ``crowd_design``; docs/crowd.md; file schemas in docs/schemas.md.

1. **Explanations.** For every configured (model, layer) of ``crowd.evaluate``: a seeded random subset
   of ``crowd.neurons`` neurons (or the listed ids) x the configured ``crowd.methods``, read from the
   explanation tables ``results/{study}/explanations/{model}/{layer}/{method}.parquet``. Each is
   ``explanation_id = "{model}/{layer}/{neuron}/{method}"``; its atom concepts (``Explanation.concepts``)
   are what raters are asked about.
2. **Guide.** The configured concept model's calibrated probabilities on the split (the pipeline's
   ``scores/presence/{guide}.parquet``, which holds every concept any explanation names) give the
   guide's predicted activation ĉ(x) = s(x, E) of each explanation (``explanations.predicted_matrix``:
   simple = [c], linear = sum w [c] + b, formulas by probabilistic logic). A linear explanation with
   negative weights can predict ĉ < 0; MG-IS needs a non-negative presence estimate, so **ĉ is
   clipped at 0** before mixing (a documented choice: the negative part carries no evidence that the
   concept is present).
3. **Draws.** MG-IS (SPEC sec. 3): q = (1 - γ) |â| ĉ / sum |â| ĉ + γ / N over the split's N inputs,
   â the activation standardised with the split's mean and std; ``n`` draws with replacement from a
   generator seeded per explanation, ``np.random.default_rng([seed, stable_index(explanation_id)])``,
   so adding or removing an explanation changes no other explanation's draws. Weight w = 1 / (N q).
   An input drawn k times is k rows of the design (the estimator counts it k times) but one item.
4. **Items.** Distinct (image, atom concept) over *all* explanations: an image needed by two
   explanations naming the same concept, or drawn twice, is rated once. ``prior`` = the guide's
   probability of the concept at the image (BRAgg's model prior).
5. **Gold items** (``gold_per_task`` per task): known-answer items of the task's concept that are not
   design items. A labelled concept (``labels.parquet``) takes its gold from the labels, positives and
   negatives alternating. A concept the labels do not know has no known answer; its gold items are the
   guide's clear cases (probability >= 1 - ``GOLD_MARGIN`` -> 1, <= ``GOLD_MARGIN`` -> 0), alternating
   likewise; with neither, the task has no gold (counted in the log).
6. **Tasks.** Items grouped by concept (concepts in sorted order), shuffled with a per-concept seeded
   generator, split into the fewest tasks of at most ``images_per_task - gold_per_task`` items
   (sizes balanced), ``gold_per_task`` gold items added to each and the positions shuffled. Task ids
   ``t000001``... in that order.

Degenerate explanations are left out and counted (``<explanations>.excluded.parquet``), never a crash:
a neuron with constant (or non-finite) activation on the split, a concept unknown to the guide (or NaN
there), an explanation the guide predicts as zero everywhere (after clipping), a neuron id outside the
layer, a (neuron, method) missing from the method's table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.data.arrays import load_activations, split_rows
from neuronaudit.exclusions import Exclusions
from neuronaudit.explanations import Explanation, predicted_matrix
from neuronaudit.io import provenance, read_matrix, read_table, write_table
from neuronaudit.sampling import draw_samples, exact_rho, importance_weights, mg_is_q, standardise_activations

log = logging.getLogger(__name__)

__all__ = [
    "EXPLANATION_COLUMNS",
    "DESIGN_COLUMNS",
    "ITEM_COLUMNS",
    "TASK_COLUMNS",
    "GOLD_MARGIN",
    "SIMPLE_METHOD_KINDS",
    "CrowdDesign",
    "stable_index",
    "explanation_id",
    "select_neurons",
    "guide_activation",
    "draw_explanation",
    "make_items",
    "gold_pool",
    "make_tasks",
    "build_design",
    "run_design",
    "read_guide",
    "label_truth",
    "simulated_truth",
]

EXPLANATION_COLUMNS = ["explanation_id", "model", "layer", "neuron", "method", "explanation", "structured",
                       "concepts", "n_population", "automated_rho", "exact_rho"]
DESIGN_COLUMNS = ["explanation_id", "draw", "image_id", "q", "weight", "a_hat", "c_guide"]
ITEM_COLUMNS = ["image_id", "concept", "prior", "is_gold", "gold_answer"]
TASK_COLUMNS = ["task", "position", "image_id", "concept", "is_gold", "gold_answer"]
#: a concept the labels do not know takes as gold the images its guide is this sure about
GOLD_MARGIN = 0.01
#: explain methods whose explanations are single concepts (Table 1's simple methods) when crowd.methods is null
SIMPLE_METHOD_KINDS = ("clip_dissect", "le_l1", "top_class")


def stable_index(text: str) -> int:
    """A 63-bit integer from ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def explanation_id(model: str, layer: str, neuron: int | str, method: str) -> str:
    return f"{model}/{layer}/{neuron}/{method}"


def select_neurons(n_neurons: int, neurons: int | Sequence[int], seed: int, model: str, layer: str) -> np.ndarray:
    """The evaluated neurons of a layer with ``n_neurons`` units, sorted.

    ``neurons`` an int k: a random subset of min(k, n_neurons) neurons from a generator seeded with
    (seed, the layer's name), so each layer's subset is fixed whatever else is configured; a list: those
    ids (an id outside the layer is an error naming it)."""
    if isinstance(neurons, bool):
        raise ValueError(f"crowd.neurons must be an integer or a list of neuron ids, got {neurons!r}")
    if isinstance(neurons, int | np.integer):
        if neurons < 1:
            raise ValueError(f"crowd.neurons must be >= 1, got {neurons}")
        rng = np.random.default_rng([seed, stable_index(f"neurons/{model}/{layer}")])
        return np.sort(rng.choice(n_neurons, size=min(int(neurons), n_neurons), replace=False))
    ids = np.asarray(list(neurons), dtype=np.int64)
    bad = ids[(ids < 0) | (ids >= n_neurons)]
    if bad.size:
        raise ValueError(f"crowd.neurons: {model}/{layer} has {n_neurons} neurons (0..{n_neurons - 1}); "
                         f"{bad.tolist()[:5]} are outside it: fix the list")
    return np.unique(ids)


def guide_activation(explanations: Sequence[Explanation], concepts: Sequence[str], presence: np.ndarray) -> np.ndarray:
    """ĉ (N, E): the guide's predicted activation s(x, E) of each explanation, clipped at 0 (module docstring)."""
    pred = predicted_matrix(list(explanations), list(concepts), presence)
    np.maximum(pred, 0.0, out=pred)
    return pred


def draw_explanation(a_hat: np.ndarray, c_guide: np.ndarray, n: int, gamma: float, seed: int, eid: str):
    """(indices, q at the draws, weights) of ``n`` MG-IS draws for one explanation (module docstring, 3)."""
    q = mg_is_q(a_hat, c_guide, gamma)
    rng = np.random.default_rng([int(seed), stable_index(eid)])
    idx = draw_samples(q, int(n), rng)
    return idx, q[idx], importance_weights(q[idx], len(q))


def label_truth(labels: pd.DataFrame | None, image_ids: Sequence[str], concepts: Sequence[str]) -> dict[str, np.ndarray]:
    """{concept: 0/1 int8 over ``image_ids``} for the concepts the labels know (the others are absent)."""
    if labels is None or not len(concepts):
        return {}
    known = [c for c in dict.fromkeys(concepts) if c in set(labels["concept"].astype(str).unique())]
    if not known:
        return {}
    sub = labels[labels["concept"].astype(str).isin(known) & labels["image_id"].isin(list(image_ids))]
    wide = sub.pivot_table(index="image_id", columns="concept", values="present", observed=True, aggfunc="max")
    wide.columns = wide.columns.astype(str)
    wide = wide.reindex(index=list(image_ids), columns=known)
    out = {}
    for c in known:
        col = wide[c].to_numpy(dtype=np.float64)
        if np.isfinite(col).all():  # a concept labelled on only some images is not "known"
            out[c] = col.astype(np.int8)
    return out


def simulated_truth(concepts: Sequence[str], image_ids: Sequence[str], guide_prob: np.ndarray,
                    labels: pd.DataFrame | None, seed: int, guide_name: str = "guide"
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The truth simulated raters see, over the split's N inputs: ({concept: 0/1 int8}, {concept: source}).

    A concept the labels know takes its labels (source "label"); any other is one Bernoulli draw per
    input of the guide's calibrated probability (``guide_prob[:, j]`` for ``concepts[j]``) from a
    generator seeded with (seed, the concept), source "bernoulli(<guide> probability)". The same
    (seed, split, guide) always gives the same truth, so the design's exact_rho and the simulated
    raters agree."""
    guide_prob = np.asarray(guide_prob, dtype=np.float64)
    known = label_truth(labels, image_ids, concepts)
    truth, source = {}, {}
    for j, c in enumerate(concepts):
        if c in known:
            truth[c], source[c] = known[c], "label"
            continue
        u = np.random.default_rng([int(seed), 1, stable_index(f"truth/{c}")]).random(len(image_ids))
        truth[c] = (u < np.nan_to_num(guide_prob[:, j], nan=0.0)).astype(np.int8)
        source[c] = f"bernoulli({guide_name} probability)"
    return truth, source


def make_items(design: pd.DataFrame, explanations: pd.DataFrame, prior: Mapping[str, np.ndarray],
               image_pos: Mapping[str, int]) -> pd.DataFrame:
    """Distinct (image_id, concept) of the design, sorted, with the guide's prior (not gold)."""
    concepts = explanations.set_index("explanation_id")["concepts"].map(json.loads)
    pairs = design[["explanation_id", "image_id"]].drop_duplicates()
    pairs = pairs.assign(concept=pairs["explanation_id"].map(concepts)).explode("concept")
    items = pairs[["image_id", "concept"]].drop_duplicates().sort_values(["concept", "image_id"], kind="stable")
    pos = items["image_id"].map(image_pos).to_numpy(np.int64)
    p = np.array([prior[c][i] for c, i in zip(items["concept"], pos, strict=True)], dtype=np.float64)
    return pd.DataFrame({"image_id": items["image_id"].to_numpy(object), "concept": items["concept"].to_numpy(object),
                         "prior": p, "is_gold": False, "gold_answer": pd.array([pd.NA] * len(items), dtype="Int8")})


def gold_pool(concept: str, image_ids: np.ndarray, truth: Mapping[str, np.ndarray], prior: Mapping[str, np.ndarray],
              exclude: set, seed: int, margin: float = GOLD_MARGIN) -> tuple[list[tuple[str, int]], str]:
    """Candidate gold items of a concept: [(image_id, answer)], positives and negatives alternating in a
    seeded order, none of them in ``exclude``; and where the answers come from ("label", "guide", "")."""
    if concept in truth:
        ans, source = truth[concept].astype(np.int64), "label"
        pos, neg = ans == 1, ans == 0
    elif concept in prior:
        p, source = prior[concept], "guide"
        pos, neg = p >= 1.0 - margin, p <= margin
    else:
        return [], ""
    free = ~np.isin(image_ids, list(exclude)) if exclude else np.ones(len(image_ids), dtype=bool)
    rng = np.random.default_rng([int(seed), stable_index(f"gold/{concept}")])
    ip = rng.permutation(np.flatnonzero(pos & free))
    ineg = rng.permutation(np.flatnonzero(neg & free))
    out: list[tuple[str, int]] = []
    for k in range(max(len(ip), len(ineg))):
        if k < len(ip):
            out.append((str(image_ids[ip[k]]), 1))
        if k < len(ineg):
            out.append((str(image_ids[ineg[k]]), 0))
    return out, source if out else ""


def make_tasks(items: pd.DataFrame, images_per_task: int, gold_per_task: int, seed: int,
               gold: Mapping[str, list[tuple[str, int]]] | None = None) -> pd.DataFrame:
    """Tasks of one concept each, at most ``images_per_task`` images with ``gold_per_task`` gold (module
    docstring, 6). ``items``: the non-gold items; ``gold``: {concept: [(image_id, answer)]}."""
    if images_per_task < 1:
        raise ValueError(f"crowd.images_per_task must be >= 1, got {images_per_task}")
    if not 0 <= gold_per_task < images_per_task:
        raise ValueError(f"crowd.gold_per_task must lie in [0, images_per_task - 1] = [0, {images_per_task - 1}], "
                         f"got {gold_per_task}")
    per = images_per_task - gold_per_task
    gold = gold or {}
    cols: dict[str, list] = {c: [] for c in TASK_COLUMNS}
    t = 0
    for concept, g in items.groupby("concept", sort=True):
        rng = np.random.default_rng([int(seed), stable_index(f"tasks/{concept}")])
        imgs = np.sort(g["image_id"].to_numpy(dtype=object))
        imgs = imgs[rng.permutation(len(imgs))]
        n_tasks = -(-len(imgs) // per)
        pool = gold.get(concept, [])
        k_gold = 0
        for chunk in np.array_split(imgs, n_tasks):
            t += 1
            rows = [(str(i), False, pd.NA) for i in chunk]
            for _ in range(min(gold_per_task, len(pool))):  # distinct gold images within a task
                iid, ans = pool[k_gold % len(pool)]
                k_gold += 1
                rows.append((iid, True, ans))
            order = rng.permutation(len(rows))
            for position, j in enumerate(order, start=1):
                iid, is_gold, ans = rows[j]
                cols["task"].append(f"t{t:06d}")
                cols["position"].append(position)
                cols["image_id"].append(iid)
                cols["concept"].append(str(concept))
                cols["is_gold"].append(is_gold)
                cols["gold_answer"].append(ans)
    return pd.DataFrame({
        "task": pd.Series(cols["task"], dtype=object), "position": np.asarray(cols["position"], dtype=np.int64),
        "image_id": pd.Series(cols["image_id"], dtype=object), "concept": pd.Series(cols["concept"], dtype=object),
        "is_gold": np.asarray(cols["is_gold"], dtype=bool), "gold_answer": pd.array(cols["gold_answer"], dtype="Int8"),
    })


@dataclass
class CrowdDesign:
    """The four design tables (schemas in docs/schemas.md) and what was left out."""

    explanations: pd.DataFrame
    design: pd.DataFrame
    items: pd.DataFrame
    tasks: pd.DataFrame
    exclusions: Exclusions
    info: dict[str, Any] = field(default_factory=dict)


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def build_design(
    candidates: pd.DataFrame,
    activations: Mapping[tuple[str, str], np.ndarray],
    image_ids: Sequence[str],
    guide: np.ndarray,
    guide_concepts: Sequence[str],
    settings: Mapping[str, Any],
    *,
    labels: pd.DataFrame | None = None,
    automated: Mapping[str, float] | None = None,
    truth: Mapping[str, np.ndarray] | None = None,
    exclusions: Exclusions | None = None,
) -> CrowdDesign:
    """The design from in-memory data (``run_design`` reads the files and calls this).

    candidates: one row per (model, layer, neuron, method) with ``explanation`` and ``structured``
    (the explanation tables' columns); activations: {(model, layer): (N, K)} on the split's images
    ``image_ids``; guide (N, T): the guide's probabilities of ``guide_concepts``; settings: the crowd
    config (n, gamma, seed, images_per_task, gold_per_task); labels: the labels table (gold items);
    automated: {explanation_id: rho} of the guide's score table; truth: {concept: 0/1 over the N
    inputs} (the known or simulated truth; exact_rho is NaN for explanations naming other concepts).
    """
    excl = exclusions if exclusions is not None else Exclusions("crowd_design", log)
    image_ids = np.asarray(image_ids, dtype=object)
    n_all = len(image_ids)
    n_draws, gamma, seed = int(settings.get("n", 180)), float(settings.get("gamma", 0.2)), int(settings.get("seed", 0))
    truth = dict(truth or {})
    automated = dict(automated or {})
    guide = np.asarray(guide, dtype=np.float64)
    gidx = {c: j for j, c in enumerate(guide_concepts)}
    finite_concept = np.isfinite(guide).all(axis=0) if guide.size else np.zeros(len(gidx), dtype=bool)

    # 1. parse, check concepts and neurons
    kept, exps = [], []
    for row in candidates.itertuples(index=False):
        eid = explanation_id(row.model, row.layer, row.neuron, row.method)
        try:
            e = Explanation.from_dict(row.structured)
        except (ValueError, TypeError, KeyError) as err:
            excl.add("explanation", [eid], f"unreadable structured explanation: {err}")
            continue
        acts = activations[(row.model, row.layer)]
        if not 0 <= int(row.neuron) < acts.shape[1]:
            excl.add("explanation", [eid], f"neuron {row.neuron} not in {row.model}/{row.layer}")
            continue
        concepts = e.concepts()
        unknown = [c for c in concepts if c not in gidx]
        if unknown:
            excl.add("explanation", [eid], f"concept unknown to the guide {settings.get('guide', '')}: {unknown[:5]}")
            continue
        bad = [c for c in concepts if not finite_concept[gidx[c]]]
        if bad:
            excl.add("explanation", [eid], f"the guide's presence is NaN for {bad[:5]}")
            continue
        kept.append((eid, row, concepts))
        exps.append(e)

    # 2. standardised activations and the guide's prediction, per explanation
    rows_e, a_cols, c_cols = [], [], []
    if kept:
        cg = guide_activation(exps, list(guide_concepts), guide)  # (N, E)
    for j, (eid, row, concepts) in enumerate(kept):
        a = activations[(row.model, row.layer)][:, int(row.neuron)].astype(np.float64)
        if not np.isfinite(a).all():
            excl.add("explanation", [eid], "non-finite activation on the split")
            continue
        a_hat = standardise_activations(a)
        if not np.isfinite(a_hat).all():
            excl.add("explanation", [eid], "constant activation on the split")
            continue
        if not (cg[:, j] > 0).any():
            excl.add("explanation", [eid], "the guide predicts zero everywhere (after clipping at 0)")
            continue
        rows_e.append((eid, row, concepts))
        a_cols.append(a_hat)
        c_cols.append(cg[:, j])

    # 3. draws
    expl_rows, design_parts = [], []
    for (eid, row, concepts), a_hat, c in zip(rows_e, a_cols, c_cols, strict=True):
        idx, q_at, w = draw_explanation(a_hat, c, n_draws, gamma, seed, eid)
        design_parts.append(pd.DataFrame({
            "explanation_id": eid, "draw": np.arange(len(idx), dtype=np.int32),
            "image_id": image_ids[idx], "q": q_at, "weight": w, "a_hat": a_hat[idx], "c_guide": c[idx],
        }))
        if all(t in truth for t in concepts):
            s = predicted_matrix([Explanation.from_dict(row.structured)], concepts,
                                 np.stack([truth[t] for t in concepts], axis=1).astype(np.float64))[:, 0]
            ex = float(exact_rho(a_hat, s))
        else:
            ex = float("nan")
        expl_rows.append({
            "explanation_id": eid, "model": row.model, "layer": row.layer, "neuron": str(row.neuron),
            "method": row.method, "explanation": row.explanation, "structured": row.structured,
            "concepts": json.dumps(concepts), "n_population": n_all,
            "automated_rho": float(automated.get(eid, np.nan)), "exact_rho": ex,
        })
    if not expl_rows:
        log.warning("crowd_design: no explanation left to evaluate (%d left out); the crowd files are empty",
                    len(excl))
        explanations = _empty(EXPLANATION_COLUMNS)
        design = _empty(DESIGN_COLUMNS)
    else:
        explanations = pd.DataFrame(expl_rows, columns=EXPLANATION_COLUMNS)
        explanations["n_population"] = explanations["n_population"].astype(np.int64)
        design = pd.concat(design_parts, ignore_index=True)[DESIGN_COLUMNS]

    # 4. items
    image_pos = {iid: i for i, iid in enumerate(image_ids)}
    prior = {c: guide[:, j] for c, j in gidx.items()}
    if len(design):
        items = make_items(design, explanations, prior, image_pos)
    else:
        items = pd.DataFrame({"image_id": pd.Series(dtype=object), "concept": pd.Series(dtype=object),
                              "prior": pd.Series(dtype=np.float64), "is_gold": pd.Series(dtype=bool),
                              "gold_answer": pd.array([], dtype="Int8")})

    # 5. gold pools and 6. tasks
    ipt, gpt = int(settings.get("images_per_task", 15)), int(settings.get("gold_per_task", 1))
    gold: dict[str, list[tuple[str, int]]] = {}
    sources: dict[str, str] = {}
    if gpt > 0 and len(items):
        label_known = label_truth(labels, image_ids, sorted(items["concept"].unique()))
        for concept, g in items.groupby("concept", sort=True):
            pool, src = gold_pool(concept, image_ids, label_known, prior, set(g["image_id"]), seed)
            gold[concept], sources[concept] = pool, src
        no_gold = [c for c, p in gold.items() if not p]
        if no_gold:
            log.info("crowd_design: %d concept(s) have no gold candidates (no labels and no clear guide case), "
                        "their tasks have no gold: %s", len(no_gold), no_gold[:10])
    tasks = make_tasks(items, ipt, gpt, seed, gold) if len(items) else _empty(TASK_COLUMNS)
    if len(tasks) and tasks["is_gold"].any():
        g = tasks.loc[tasks["is_gold"], ["image_id", "concept", "gold_answer"]].drop_duplicates(["image_id", "concept"])
        pos = g["image_id"].map(image_pos).to_numpy(np.int64)
        gp = np.array([prior[c][i] for c, i in zip(g["concept"], pos, strict=True)], dtype=np.float64)
        gold_items = pd.DataFrame({"image_id": g["image_id"].to_numpy(object), "concept": g["concept"].to_numpy(object),
                                   "prior": gp, "is_gold": True, "gold_answer": g["gold_answer"].astype("Int8").array})
        items = pd.concat([items, gold_items], ignore_index=True)
        items = items.sort_values(["concept", "image_id"], kind="stable").reset_index(drop=True)
        items["gold_answer"] = items["gold_answer"].astype("Int8")
    info = {
        "n_explanations": int(len(explanations)), "n_draws": int(len(design)),
        "n_items": int((~items["is_gold"]).sum()) if len(items) else 0,
        "n_gold_items": int(items["is_gold"].sum()) if len(items) else 0,
        "n_tasks": int(tasks["task"].nunique()) if len(tasks) else 0,
        "gold_sources": {k: v for k, v in sources.items() if v},
    }
    return CrowdDesign(explanations, design, items, tasks, excl, info)


def read_guide(path, image_ids) -> tuple[np.ndarray, list[str]]:
    """The guide's probabilities (N x T) on ``image_ids`` (matched by id) and its concepts."""
    m = read_matrix(path, ["probability"])
    concepts = list(m.meta.get("concepts", m.columns))
    pos = pd.Index(m.image_ids).get_indexer(np.asarray(image_ids))
    if (pos < 0).any():
        missing = np.asarray(image_ids)[pos < 0]
        raise ValueError(f"{path}: no presence for {int((pos < 0).sum())} image(s) of the crowd split, e.g. "
                         f"{list(missing[:3])}; crowd.split must be the scoring split (explain.scoring.split)")
    return m["probability"][pos, : len(concepts)].astype(np.float64), concepts


def _automated(score_paths: Sequence, guide: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in score_paths:
        s = read_table(p)
        s = s[s["concept_model"] == guide]
        for r in s.itertuples(index=False):
            out[explanation_id(r.model, r.layer, r.neuron, r.method)] = float(r.rho)
    return out


def run_design(
    *,
    manifest_path,
    labels_path,
    guide_path,
    activation_paths: Mapping[str, Any],
    explanation_paths: Mapping[str, Any],
    score_paths: Sequence = (),
    settings: Mapping[str, Any],
    outs: Mapping[str, Any],
    simulate_truth: bool = True,
) -> CrowdDesign:
    """The ``crowd_design`` rule: read the files, :func:`build_design`, write the four tables.

    activation_paths {"model/layer": path}; explanation_paths {"model/layer/method": path}; outs: paths
    of explanations, design, items, tasks. ``simulate_truth``: exact_rho against the simulated truth
    (labels where the concept is labelled, else the seeded Bernoulli draw of the guide's probability,
    :func:`simulated_truth`); False: against the labels only.
    """
    manifest = pd.read_parquet(manifest_path)
    split = settings.get("split", "test")
    rows = split_rows(manifest, split)
    image_ids = manifest["image_id"].to_numpy(dtype=object)[rows]
    labels = pd.read_parquet(labels_path)
    guide_name = settings.get("guide", "")
    guide, concepts = read_guide(guide_path, image_ids)
    excl = Exclusions("crowd_design", log)
    acts, parts = {}, []
    for key, path in activation_paths.items():
        model, layer = key.split("/")
        a, _ = load_activations(path, manifest, rows)
        acts[(model, layer)] = a
        chosen = select_neurons(a.shape[1], settings.get("neurons", 20), int(settings.get("seed", 0)), model, layer)
        log.info("%s/%s: %d of %d neurons evaluated: %s", model, layer, len(chosen), a.shape[1], chosen.tolist()[:30])
        for mkey, mpath in explanation_paths.items():
            m_model, m_layer, method = mkey.split("/")
            if (m_model, m_layer) != (model, layer):
                continue
            t = read_table(mpath)
            t = t[t["neuron"].isin(chosen)]
            missing = np.setdiff1d(chosen, t["neuron"].to_numpy())
            if missing.size:
                excl.add("explanation", [explanation_id(model, layer, k, method) for k in missing],
                         f"{method} gave no explanation of the neuron")
            parts.append(t.assign(model=model, layer=layer, method=method)[
                ["model", "layer", "neuron", "method", "explanation", "structured"]])
    candidates = (pd.concat(parts, ignore_index=True) if parts else
                  pd.DataFrame(columns=["model", "layer", "neuron", "method", "explanation", "structured"]))
    named = sorted({c for s in candidates["structured"] for c in Explanation.from_dict(s).concepts()} & set(concepts))
    if simulate_truth:
        cols = [concepts.index(c) for c in named]
        truth, _ = simulated_truth(named, image_ids, guide[:, cols], labels, int(settings.get("seed", 0)), guide_name)
    else:
        truth = label_truth(labels, image_ids, named)
    design = build_design(candidates, acts, image_ids, guide, concepts, settings, labels=labels,
                          automated=_automated(score_paths, guide_name), truth=truth, exclusions=excl)
    meta = provenance(split=split, guide=guide_name, n_population=int(len(image_ids)), excluded=excl.summary(),
                      **design.info)
    write_table(design.explanations, outs["explanations"], meta)
    write_table(design.design, outs["design"], meta)
    write_table(design.items, outs["items"], meta)
    write_table(design.tasks, outs["tasks"], meta)
    excl.write(outs["explanations"])
    i = design.info
    log.info("crowd design: %d explanations (%d left out), %d draws, %d items to rate + %d gold, %d tasks",
             i["n_explanations"], len(excl), i["n_draws"], i["n_items"], i["n_gold_items"], i["n_tasks"])
    return design
