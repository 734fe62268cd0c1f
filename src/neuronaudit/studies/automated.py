"""Automated evaluation: "simulation with correlation scoring" (SPEC sec. 2) and the downstream study
(SPEC sec. 5, Table 5). Rules ``scoring_presence``, ``score_explanations``, ``table_automated``,
``downstream``.

Scoring (:func:`neuronaudit.studies.scoring_presence.scoring_presence` once per concept model, then
:func:`score_layer`), on the held-out split (``test``), for every explanation of a table and every
scorer (:mod:`neuronaudit.studies.scorers`: a registered :class:`~neuronaudit.studies.scorers.Scorer`
per ``label`` / concept model):

* presence [c_t]_x of each concept the explanations name: a concept model's calibrated probability
  (``load_fitted(spec, state).presence``) or, for the scorer ``label``, the ground-truth labels;
* predicted activation s(x, E) (simple, linear, compositional, clustered; ``explanations.predicted_matrix``);
* rho = Pearson correlation over the split between s(., E) and the neuron's activation
  (``scoring.correlation_scores``).

An explanation naming a concept the scorer cannot score (the probe knows only the dataset's labelled
concepts; ``label`` only the labels) gets rho = NaN and the reason ``concept unknown to <scorer>: [...]``;
constant activations or predictions get NaN with the reason from ``correlation_scores``. Never a crash.

Score table (one row per neuron x method x scorer): model, layer, neuron, method, concept_model, rho,
reason, length. Tables 1-2 (:func:`automated_tables`): mean ± SEM of rho per (model, layer, method,
scorer) over the neurons every method scored (``n_common``; each method's own ``n_scored`` and mean
beside it), for simple methods (every explanation has l = 1) and complex ones. What a stage leaves
out (all-NaN neurons or concepts, images without data) is counted in ``<output>.excluded.parquet``.

Downstream (:func:`downstream_study`; seed 001 B.9): per class of the dataset, the neuron whose
explanation text (MiniLM) is closest to the class name, and its ROC-AUC as a one-vs-rest classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.aggregation import standard_error
from neuronaudit.data.arrays import class_indices, load_activations, split_rows
from neuronaudit.exclusions import MAX_NAN_FRACTION, Exclusions, finite_columns
from neuronaudit.explainers.downstream import downstream_auc
from neuronaudit.explanations import Explanation
from neuronaudit.io import provenance, read_meta, read_table, write_table
from neuronaudit.report.tables import mean_pm_sem
from neuronaudit.studies.scorers import (  # noqa: F401 (score_table, named_concepts re-exported)
    LABEL_SCORER,
    ScoringData,
    make_scorer,
    named_concepts,
    read_scoring_presence,
    score_table,
)
from neuronaudit.text import encode_texts

log = logging.getLogger(__name__)

__all__ = [
    "LABEL_SCORER",
    "SCORE_COLUMNS",
    "score_table",
    "named_concepts",
    "read_scoring_presence",
    "score_layer",
    "AUTOMATED_COLUMNS",
    "automated_tables",
    "mean_sem",
    "downstream_text",
    "downstream_study",
]

SCORE_COLUMNS = ["model", "layer", "neuron", "method", "concept_model", "rho", "reason", "length"]


def score_layer(
    explanation_paths: Mapping[str, Any],
    outs: Mapping[str, Any],
    *,
    activations_path,
    manifest_path,
    labels_path,
    presence_paths: Mapping[str, Any],
    label_scoring: bool = True,
    scorers: Sequence[str] = (),
    split: str = "test",
    model: str = "",
    layer: str = "",
    meta: Mapping[str, Any] | None = None,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> dict[str, pd.DataFrame]:
    """The score rule: every explanation file of one (model, layer) x every scorer, on ``split``.

    ``explanation_paths`` / ``outs``: {method: path}; ``presence_paths``: {scorer: scoring_presence
    file}; ``label_scoring`` adds the scorer ``label`` (ground truth) for the labelled concepts;
    ``scorers`` adds other registered scorer kinds (:mod:`neuronaudit.studies.scorers`), each named by its kind.
    """
    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    acts, _ = load_activations(activations_path, manifest, rows)
    image_ids = manifest["image_id"].to_numpy()[rows]
    tables = {m: read_table(p) for m, p in explanation_paths.items()}
    kinds = list(scorers)
    scorers = ([make_scorer(LABEL_SCORER)] if label_scoring else []) + [
        make_scorer("concept_model", name, path) for name, path in presence_paths.items()] + [
        make_scorer(kind) for kind in kinds]
    data = ScoringData(image_ids, named_concepts(list(tables.values())), labels_path)
    excl = Exclusions(f"score {model}/{layer}", log)
    parts: dict[str, list[pd.DataFrame]] = {m: [] for m in tables}
    for scorer in scorers:
        scorer_excl = Exclusions(f"score {model}/{layer} by {scorer.name}", log)  # logged once per scorer
        scored = scorer.score(tables, acts, data, exclusions=scorer_excl, max_nan_fraction=max_nan_fraction)
        for method in tables:
            parts[method].append(scored[method])
        excl.extend(scorer_excl)
    out = {}
    for method in tables:
        scores = pd.concat(parts[method], ignore_index=True)
        scores.insert(0, "layer", layer)
        scores.insert(0, "model", model)
        scores = scores[SCORE_COLUMNS]
        info = provenance(model=model, layer=layer, method=method, split=split, n_images=int(len(rows)),
                          scorers=[sc.name for sc in scorers], excluded=excl.summary(), **dict(meta or {}))
        write_table(scores, outs[method], info)
        excl.write(outs[method])
        for scorer, g in scores.groupby("concept_model", sort=False):
            log.info("%s/%s %s scored by %s: mean rho %.4f over %d neurons (%d NaN)", model, layer, method, scorer,
                     g["rho"].mean(), g["rho"].notna().sum(), g["rho"].isna().sum())
        out[method] = scores
    return out


def mean_sem(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof 1) of the finite values; NaN when undefined."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(standard_error(x)) if x.size > 1 else float("nan")


AUTOMATED_COLUMNS = ["model", "layer", "method", "concept_model", "n_neurons", "n_scored", "n_nan", "n_common",
                     "n_methods", "mean", "sem", "mean_pm_sem", "mean_scored", "sem_scored", "compared_on",
                     "mean_length", "max_length"]


def automated_tables(
    scores: pd.DataFrame, digits: int = 4, min_coverage: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 1 and 2 from score rows: (simple methods, complex methods).

    A method is simple on a layer when every explanation it gave has length 1 (the paper's l = 1
    baselines: CLIP-Dissect, LE l=1, INVERT l=1, ...), complex otherwise (LE, INVERT l=3, CCE ...).

    Methods are compared on the same neurons: ``mean``, ``sem``, ``mean_pm_sem`` are over the
    ``n_common`` neurons that every method of the (model, layer, scorer), in both tables, scored
    (finite rho); a mean over each method's own scored neurons would average different subsets.
    ``n_scored`` / ``n_nan`` and ``mean_scored`` / ``sem_scored`` are each method's own;
    ``compared_on`` says which subset the mean is over. A method the scorer scores on fewer than
    ``min_coverage`` times the neurons of the best-covered method (CLIP-Dissect's free words under the
    label scorer) is not compared (``mean`` NaN, ``compared_on`` says why); it would otherwise shrink
    every method's comparison to its few neurons. Columns: :data:`AUTOMATED_COLUMNS`.
    """
    rows = []
    for (model, layer, scorer), grp in scores.groupby(["model", "layer", "concept_model"], sort=True):
        scored = grp.pivot_table(index="neuron", columns="method", values="rho", aggfunc="first", dropna=False)
        scored = scored.reindex(columns=sorted(grp["method"].unique()))
        finite = np.isfinite(scored.to_numpy(dtype=np.float64))
        # A method this scorer can score on few neurons (CLIP-Dissect's free words under the label
        # scorer: only where its word happens to be a labelled concept) is left out of the comparison
        # rather than shrinking it to those few neurons; it says so in compared_on, and its own mean
        # stays in mean_scored. "Few" = under min_coverage of the best-covered method's count.
        n_per_method = finite.sum(axis=0)
        keep = (n_per_method > 0) & (n_per_method >= min_coverage * n_per_method.max())
        compared = [m for m, k in zip(scored.columns, keep, strict=True) if k]
        common = scored.index[finite[:, keep].all(axis=1)] if compared else scored.index[:0]
        methods = list(scored.columns)
        note = (f"the {len(common)} neurons scored by all {len(compared)} methods scored here" if len(compared) > 1
                else "the neurons scored (one method)")
        if len(compared) > 1 and len(common) < scored.shape[0]:
            log.warning("%s/%s scored by %s: methods compared on the %d of %d neurons every method scored "
                        "(n_scored per method: %s)", model, layer, scorer, len(common), scored.shape[0],
                        dict(zip(methods, n_per_method.tolist(), strict=True)))
        unscored = sorted(set(methods) - set(compared))
        if unscored:
            log.warning("%s/%s: %s scores too few neurons of %s (their concepts are mostly not %s concepts): "
                        "left out of the comparison", model, layer, scorer, unscored, scorer)
        for method, g in grp.groupby("method", sort=True):
            own_mean, own_sem = mean_sem(g["rho"].to_numpy())
            if method in compared:
                mean, sem = mean_sem(g.loc[g["neuron"].isin(common), "rho"].to_numpy())
                method_note = note
            elif not g["rho"].notna().any():
                mean, sem = np.nan, np.nan
                method_note = f"not compared: {scorer} scored none of its neurons"
            else:
                mean, sem = np.nan, np.nan
                method_note = (f"not compared: {scorer} scored only {int(g['rho'].notna().sum())} of its "
                               f"{len(g)} neurons (under {min_coverage:.0%} of the best-covered method); "
                               "its own mean is mean_scored")
            rows.append({
                "model": model, "layer": layer, "method": method, "concept_model": scorer,
                "n_neurons": int(len(g)), "n_scored": int(g["rho"].notna().sum()), "n_nan": int(g["rho"].isna().sum()),
                "n_common": int(len(common)), "n_methods": len(compared),
                "mean": mean, "sem": sem, "mean_pm_sem": mean_pm_sem(mean, sem, digits),
                "mean_scored": own_mean, "sem_scored": own_sem, "compared_on": method_note,
                "mean_length": float(g["length"].mean()), "max_length": int(g["length"].max()),
            })
    summary = pd.DataFrame(rows, columns=AUTOMATED_COLUMNS)
    simple = summary["max_length"] <= 1
    return summary[simple].reset_index(drop=True), summary[~simple].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- downstream
def downstream_text(structured: Mapping | str) -> str:
    """The text of an explanation that is matched to class names (our choice; seed 001 B.9 is silent).

    simple: the concept; linear: the positively weighted concepts, largest weight first, joined by
    ", " (all concepts if none is positive); compositional: the formula; clustered: the formula of the
    cluster with the highest activation range.
    """
    e = Explanation.from_dict(structured)
    p = e.payload
    if e.kind == "simple":
        return p["concept"]
    if e.kind == "linear":
        terms = sorted(p["terms"], key=lambda t: -t[0])
        pos = [name for w, name in terms if w > 0]
        return ", ".join(pos or [name for _, name in terms])
    if e.kind == "compositional":
        return e.to_text()
    top = max(p["clusters"], key=lambda c: c["lower"] + c["upper"])
    return Explanation("compositional", {"formula": top["formula"]}).to_text()


DOWNSTREAM_COLUMNS = ["model", "layer", "method", "n_classes", "n_classes_used", "n_classes_excluded",
                      "excluded_reason", "n_distinct_neurons", "mean_auc", "sem", "mean_pm_sem", "mean_similarity"]


def downstream_study(
    explanation_paths: Sequence,
    activation_paths: Mapping[tuple[str, str], Any],
    manifest_path,
    labels_path,
    *,
    split: str = "test",
    text_model: str = "all-MiniLM-L6-v2",
    device: str = "cpu",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 5: per-class rows and the mean AUC per (model, layer, method).

    A class with no positive (or no negative) image in ``split`` has no AUC: its row keeps
    ``auc`` = NaN and says why in ``excluded_reason``; the summary's ``mean_auc`` is over the
    ``n_classes_used`` classes, with ``n_classes_excluded`` and ``excluded_reason`` (reason: count).
    Neurons whose activations are all NaN are not matched to classes (logged).

    ``explanation_paths``: explanation tables of the target models' layers (model and layer are read
    from each file's metadata); ``activation_paths``: {(model, layer): activation file}.
    """
    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    labels = pd.read_parquet(labels_path)
    cls, class_names = class_indices(labels, manifest["image_id"].to_numpy()[rows])
    class_emb = encode_texts(class_names, model=text_model, device=device)
    tables, metas = [], []
    for path in explanation_paths:
        metas.append(read_meta(path))
        tables.append(read_table(path, ["neuron", "structured"]))
    texts = [[downstream_text(s) for s in t["structured"]] for t in tables]
    # explanations repeat a few concepts many times: embed each distinct text once
    unique = list(dict.fromkeys(x for tt in texts for x in tt))
    index = {x: i for i, x in enumerate(unique)}
    unique_emb = encode_texts(unique, model=text_model, device=device)
    log.info("downstream: %d explanation files, %d distinct texts embedded", len(tables), len(unique))
    acts_cache: dict[tuple[str, str], tuple] = {}
    parts = []
    for meta, table, tt in zip(metas, tables, texts, strict=True):
        key = (meta["model"], meta["layer"])
        if key not in acts_cache:
            # NaN policy of exclusions.finite_columns: all-NaN neurons are left out, not the images
            acts = load_activations(activation_paths[key], manifest, rows)[0]
            excl = Exclusions(f"downstream {key[0]}/{key[1]}", log)
            keep, neuron_ok = finite_columns(acts, np.arange(acts.shape[1]), manifest["image_id"].to_numpy()[rows],
                                             excl, col_item="neuron", what="activation")
            pos = np.bincount(cls[keep], minlength=len(class_names))
            class_reason = np.where(pos == 0, f"no positive {split} image",
                                    np.where(pos == keep.sum(), f"no negative {split} image", ""))
            excl.add("class", np.asarray(class_names, dtype=object)[class_reason != ""],
                     f"no positive or no negative {split} image: AUC undefined")
            acts_cache[key] = (acts[keep], cls[keep], neuron_ok, class_reason)
        acts, cls_kept, neuron_ok, class_reason = acts_cache[key]
        neurons = table["neuron"].to_numpy()
        usable = (neurons >= 0) & (neurons < len(neuron_ok))
        usable[usable] = neuron_ok[neurons[usable]]
        if not usable.all():
            log.warning("downstream %s/%s %s: %d explanation(s) of left-out neurons not matched to classes",
                        key[0], key[1], meta["method"], int((~usable).sum()))
        if not usable.any():
            log.warning("downstream %s/%s %s: no explanation of a usable neuron; method skipped", *key,
                        meta["method"])
            continue
        tt_ok = [x for x, u in zip(tt, usable, strict=True) if u]
        emb = unique_emb[[index[x] for x in tt_ok]]
        with np.errstate(invalid="ignore", divide="ignore"):
            per = downstream_auc(emb, class_emb, acts, cls_kept, class_names, neurons=neurons[usable],
                                 method=meta["method"])
        per.loc[class_reason != "", "auc"] = np.nan
        per["excluded_reason"] = class_reason
        per.insert(0, "layer", key[1])
        per.insert(0, "model", key[0])
        per["explanation"] = [tt_ok[i] for i in pd.Index(neurons[usable]).get_indexer(per["neuron"])]
        parts.append(per)
    per_class = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["model", "layer", "method", "class", "neuron", "similarity", "auc", "excluded_reason", "explanation"])
    summary_rows = []
    for (model, layer, method), g in per_class.groupby(["model", "layer", "method"], sort=True):
        mean, sem = mean_sem(g["auc"].to_numpy())
        used = np.isfinite(g["auc"].to_numpy(np.float64))
        reasons = g.loc[~used, "excluded_reason"].replace("", "AUC undefined (constant neuron)").value_counts()
        summary_rows.append({"model": model, "layer": layer, "method": method, "n_classes": int(len(g)),
                             "n_classes_used": int(used.sum()), "n_classes_excluded": int((~used).sum()),
                             "excluded_reason": "; ".join(f"{r}: {c}" for r, c in reasons.items()),
                             "n_distinct_neurons": int(g["neuron"].nunique()), "mean_auc": mean, "sem": sem,
                             "mean_pm_sem": mean_pm_sem(mean, sem), "mean_similarity": float(g["similarity"].mean())})
    summary = pd.DataFrame(summary_rows, columns=DOWNSTREAM_COLUMNS)
    for r in summary.itertuples():
        if r.n_classes_excluded:
            log.warning("downstream %s/%s %s: mean AUC over %d of %d classes (%s)", r.model, r.layer, r.method,
                        r.n_classes_used, r.n_classes, r.excluded_reason)
    return per_class, summary
