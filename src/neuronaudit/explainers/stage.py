"""The explain stage of the pipeline (rules ``explain_similarity``, ``explain``, ``import_explanations``):
one explanation table per (model, layer, method); one ``explain`` job per layer runs all its methods.

Explanations are generated on the probing split D (``explain.split``, default ``val``); the held-out
``test`` split is left for the automated evaluation (:mod:`neuronaudit.studies.automated`).

A method entry of the config (``explain.methods.<name>``) names its ``method`` type and where its
concept presence comes from (``presence``: ``label`` for the ground-truth labels, or a concept model):

==============  ==================================================================================
``clip_dissect``  SoftWPMI over the image-concept similarity P (N x C) of a concept model and a
                  vocabulary (SPEC sec. 6). P is the presence file's raw ``score`` when the pipeline
                  has one for that (concept model, vocabulary), else cos(img, text) computed from the
                  stored image embeddings and the concept model's text encoder, once per pair on the
                  probing split (:func:`split_concept_matrix`, rule ``explain_similarity``).
``le``            Linear Explanations on the presence: binary labels for LE(label), the concept
                  model's calibrated probabilities for LE(<concept model>).
``le_l1``         The best single concept by correlation (LE's l = 1 variant).
``invert``        INVERT formulas over the binary labels (``params.length``: 1 or 3 ...).
``top_class``     The class most frequent among the neuron's top-activating images (baseline).
``import``        A CSV made elsewhere (``path``, ``format``: clip_dissect | linear | compositional |
                  clustered), normalised (:mod:`neuronaudit.explainers.importers`).
==============  ==================================================================================

Output: the normalised explanation table (``importers.TABLE_COLUMNS``) written with
:func:`neuronaudit.io.write_table`; its provenance metadata holds the method entry, model, layer,
split, number of probing images, and ``runtime`` = {seconds (the method itself), seconds_inputs
(building its presence / label matrix; 0 when shared), seconds_total, n_neurons, device} (Tables 8-9).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.data.vocabularies import vocabulary_concepts
from neuronaudit.exclusions import MAX_NAN_FRACTION, Exclusions, finite_columns
from neuronaudit.explainers.runtime import RuntimeLog
from neuronaudit.io import read_matrix, read_meta

log = logging.getLogger(__name__)

__all__ = [
    "METHOD_TYPES",
    "METHOD_PARAMS",
    "LABEL",
    "check_method",
    "method_needs",
    "split_rows",
    "load_activations",
    "label_matrix",
    "class_indices",
    "vocabulary_concepts",
    "concept_model_matrix",
    "split_concept_matrix",
    "generate",
    "explain_layer",
    "runtime_table",
]

LABEL = "label"  # presence source: the dataset's ground-truth labels
LABEL_KINDS = ("class", "superclass", "attribute")
METHOD_TYPES = ("clip_dissect", "le", "le_l1", "invert", "top_class", "import")
#: keyword parameters each method type accepts in ``params`` (passed to the library function)
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "clip_dissect": ("top_k", "scale", "lam", "p_start", "p_end", "min_prob"),
    "le": ("max_length", "tolerance", "width", "glm_lambda", "glm_alpha", "glm_iters", "filter_concepts", "seed"),
    "le_l1": (),
    "invert": ("length", "beam_size", "min_fraction", "max_fraction"),
    "top_class": ("top_k", "mode"),
    "import": (),
}


def check_method(name: str, entry: Mapping[str, Any], concept_models: Mapping | None = None,
                 vocabularies: Mapping | None = None) -> None:
    """Fail early (at DAG build time) on an entry the generator could not run, naming the key."""
    where = f"explain.methods.{name}"
    kind = entry.get("method")
    if kind not in METHOD_TYPES:
        raise ValueError(f"{where}.method = {kind!r}: use one of {list(METHOD_TYPES)}")
    unknown = sorted(set(entry.get("params") or {}) - set(METHOD_PARAMS[kind]))
    if unknown:
        raise ValueError(f"{where}.params: {unknown} not understood by {kind}; allowed: {list(METHOD_PARAMS[kind])}")
    source = entry.get("presence", LABEL)
    if kind == "import":
        if not entry.get("path") or not entry.get("format"):
            raise ValueError(f"{where}: an import needs 'path' (may contain {{model}} and {{layer}}) and 'format'")
        return
    if kind in ("invert", "top_class") and source != LABEL:
        raise ValueError(f"{where}: {kind} works on the binary ground-truth labels; set presence: {LABEL}")
    if kind == "clip_dissect" and source == LABEL:
        raise ValueError(f"{where}: clip_dissect needs image-text similarities; set presence to a concept model")
    if source != LABEL:
        if concept_models is not None and source not in concept_models:
            raise ValueError(f"{where}.presence = {source!r}: not 'label' and not a configured concept model "
                             f"{sorted(concept_models)}")
        vocab = entry.get("vocabulary", "labels")
        if vocabularies is not None and vocab not in vocabularies:
            raise ValueError(f"{where}.vocabulary = {vocab!r}: not a configured vocabulary {sorted(vocabularies)}")
        backend = (concept_models or {}).get(source, {}).get("backend")
        if backend == "probe" and vocabularies is not None and vocabularies[vocab].get("source") != "dataset":
            raise ValueError(f"{where}: the probe concept model {source!r} only knows the dataset's labelled "
                             f"concepts; use a vocabulary with source: dataset, not {vocab!r}")


def method_needs(entry: Mapping[str, Any]) -> str:
    """What a method's input is built from: 'label', 'concept_model' or 'import'."""
    if entry["method"] == "import":
        return "import"
    return LABEL if entry.get("presence", LABEL) == LABEL else "concept_model"


# ---------------------------------------------------------------------------------------------- inputs
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
    from neuronaudit.data.datasets import labels_matrix

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


def concept_model_matrix(
    rows: np.ndarray,
    value: str,
    *,
    presence_path=None,
    spec: Mapping[str, Any] | None = None,
    state_path=None,
    embeddings_path=None,
    concepts: Sequence[str] | None = None,
    max_concepts: int | None = None,
    image_ids=None,
    chunk: int = 2048,
    device: str = "cpu",
    model=None,
) -> tuple[np.ndarray, list[str]]:
    """A concept model's ``probability`` or raw ``score`` (len(rows) x C, float32) on manifest ``rows``.

    From the presence file when one is given (its columns are the concepts; rows picked by ``rows``,
    or by ``image_ids`` when given, for files over a subset of images), else computed from the
    stored image embeddings: the text side is encoded once, the images in chunks of ``chunk`` rows.
    ``max_concepts`` keeps the first n concepts (wordfreq vocabularies are ordered by frequency).
    ``model``: an already loaded concept model (skips loading it again).
    """
    if value not in ("probability", "score"):
        raise ValueError(f"value must be 'probability' or 'score', got {value!r}")
    if presence_path:
        m = read_matrix(presence_path, [value])
        names = list(m.columns)
        n = len(names) if not max_concepts else min(int(max_concepts), len(names))
        if image_ids is not None:  # a file over another set of images (e.g. a split): match by id
            pos = pd.Index(m.image_ids).get_indexer(np.asarray(image_ids))
            if (pos < 0).any():
                raise ValueError(f"{presence_path} lacks {(pos < 0).sum()} of the requested images; rerun it")
            rows = pos
        return np.ascontiguousarray(m[value][rows, :n]), names[:n]
    from neuronaudit.concepts.base import l2_normalise
    from neuronaudit.concepts.stage import load_fitted

    if spec is None or state_path is None or embeddings_path is None or concepts is None:
        raise ValueError("without a presence file, give spec, state_path, embeddings_path and concepts")
    concepts = list(concepts)[: int(max_concepts)] if max_concepts else list(concepts)
    model = model or load_fitted(dict(spec), state_path, device)
    emb_file = read_matrix(embeddings_path, ["embedding"])
    if image_ids is not None and not np.array_equal(emb_file.image_ids[rows], np.asarray(image_ids)):
        raise ValueError(f"{embeddings_path}: rows do not match the requested images; rerun embed_images")
    emb = emb_file["embedding"][rows]
    txt = l2_normalise(model.encode_text(concepts)) if model.has_text_encoder else None
    out = np.empty((len(rows), len(concepts)), dtype=np.float32)
    for s in range(0, len(rows), chunk):
        raw = model.similarity(emb[s : s + chunk], txt) if txt is not None else model.scores(emb[s : s + chunk], concepts)
        out[s : s + chunk] = raw if value == "score" else model.probability(raw)
    return out, concepts


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
    """The explain_similarity rule: a concept model's ``values`` (raw ``score`` = cos for CLIP-Dissect,
    ``probability`` for LE) of a vocabulary on the probing split only, as a matrix file.

    Used where the pipeline has no presence file for (concept model, vocabulary): the text side is
    encoded once for every layer's explain job instead of once per job.
    """
    from neuronaudit.io import provenance, write_matrix

    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    concepts = vocabulary_concepts(vocabulary, pd.read_parquet(labels_path))
    concepts = concepts[: int(max_concepts)] if max_concepts else concepts
    from neuronaudit.concepts.stage import load_fitted

    model = load_fitted(dict(spec), state_path, device)
    ids = manifest["image_id"].to_numpy()[rows]
    raw, _ = concept_model_matrix(rows, "score", spec=spec, state_path=state_path, embeddings_path=embeddings_path,
                                  concepts=concepts, image_ids=ids, device=device, model=model)
    arrays = {"score": raw} if "score" in values else {}
    if "probability" in values:
        arrays["probability"] = model.probability(raw).astype(np.float32)
    write_matrix(out, manifest["image_id"].to_numpy()[rows], arrays, columns=concepts,
                 meta=provenance(split=split, concept_model=model.info(), **dict(meta or {})))
    log.info("%s of %d concepts on %d %s images", sorted(arrays), len(concepts), len(rows), split)
    return concepts


# ---------------------------------------------------------------------------------------------- methods
def generate(
    method_name: str,
    entry: Mapping[str, Any],
    activations: np.ndarray,
    *,
    presence: np.ndarray | None = None,
    concepts: Sequence[str] | None = None,
    class_index: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    exclusions: Exclusions | None = None,
) -> pd.DataFrame:
    """Run one method on arrays; returns the normalised explanation table (method = ``method_name``).

    ``presence`` (N x C) holds binary labels, probabilities, or (clip_dissect) raw similarities over
    ``concepts``; ``class_index``/``class_names`` feed top_class. Neuron ids are column positions.
    ``exclusions`` records the concepts a method's own filter leaves out (LE's activity filter).
    """
    from neuronaudit.explainers.baselines import top_activating_class_table
    from neuronaudit.explainers.clip_dissect import clip_dissect_table
    from neuronaudit.explainers.invert import invert_table
    from neuronaudit.explainers.linear import best_single_concept_table, linear_explanations_table

    kind = entry["method"]
    params = dict(entry.get("params") or {})
    acts = np.asarray(activations, dtype=np.float32)
    if kind == "top_class":
        return top_activating_class_table(class_index, acts, list(class_names), method=method_name, **params)
    if presence is None or concepts is None:
        raise ValueError(f"{method_name}: {kind} needs a presence matrix and its concept names")
    if kind == "clip_dissect":
        return clip_dissect_table(presence, acts, list(concepts), method=method_name, **params)
    if kind == "le":
        from neuronaudit.explainers.linear import DEFAULTS, active_concepts

        if params.get("filter_concepts", True):
            weak = ~active_concepts(presence, DEFAULTS["min_top5"], 0.0)  # top-5 mean < 0.5
            flat = ~active_concepts(presence, 0.0, DEFAULTS["min_std"])  # (nearly) constant
            names = np.asarray(concepts, dtype=object)
            if flat.all():
                raise ValueError(f"{method_name}: all {len(names)} concepts are constant on the probing images; "
                                 "LE has nothing to explain with (check the presence / labels of this split)")
            if (weak | flat).all():
                # a weak concept model (or one image per class) may give no concept a top-5 mean >= 0.5;
                # explain anyway, and say so
                log.warning("%s: no concept passes LE's activity filter (%d of %d have a top-5 mean < %g, %d are "
                            "constant); running without it", method_name, int(weak.sum()), len(names),
                            DEFAULTS["min_top5"], int(flat.sum()))
                if exclusions is not None:
                    exclusions.add("concept", names[flat], f"{method_name}: constant on the probing images "
                                   "(activity filter off: no concept passes it)")
                table = linear_explanations_table(presence[:, ~flat], acts, list(names[~flat]), method=method_name,
                                                  **{**params, "filter_concepts": False})
                table["params"] = table["params"].map(
                    lambda p: json.dumps({**json.loads(p), "filter_concepts": False}, sort_keys=True))
                return table
            if exclusions is not None:
                exclusions.add("concept", names[flat], f"{method_name} activity filter: std < {DEFAULTS['min_std']:g}")
                exclusions.add("concept", names[weak & ~flat],
                               f"{method_name} activity filter: mean of the top-5 values < {DEFAULTS['min_top5']:g}")
        return linear_explanations_table(presence, acts, list(concepts), method=method_name, **params)
    if kind == "le_l1":
        return best_single_concept_table(presence, acts, list(concepts), method=method_name)
    if kind == "invert":
        return invert_table(presence, acts, list(concepts), method=method_name, **params)
    raise ValueError(f"{method_name}: method type {kind!r} is not generated from arrays (use explain())")


def _import_table(method_name: str, entry: Mapping[str, Any], path, layer: str, module: str | None,
                  n_neurons: int) -> pd.DataFrame:
    """Read a user's CSV; keep the rows of this layer when the file names several layers."""
    from neuronaudit.explainers.importers import read_explanations

    # one file for several layers: the reader keeps this layer's rows (by layer key or module path),
    # checks duplicates per layer, and counts and logs the other layers' rows
    layers = None if "{layer}" in entry["path"] else [x for x in (layer, module) if x]
    table = read_explanations(path, entry["format"], method=method_name, layers=layers)
    bad = table["neuron"][(table["neuron"] < 0) | (table["neuron"] >= n_neurons)]
    if len(bad):
        raise ValueError(f"{path}: unit {int(bad.iloc[0])} is outside the layer's {n_neurons} neurons")
    return table


class _Inputs:
    """Builds (and caches) the arrays the methods of one layer need, timing each build."""

    def __init__(self, rows, image_ids, labels_path, concept_models, state_paths, embeddings_paths,
                 presence_paths, vocabularies, device):
        self.rows, self.image_ids = rows, image_ids
        self.labels_path, self.device = labels_path, device
        self.concept_models, self.state_paths = concept_models or {}, state_paths or {}
        self.embeddings_paths, self.presence_paths = embeddings_paths or {}, presence_paths or {}
        self.vocabularies = vocabularies or {}
        self._labels: pd.DataFrame | None = None
        self._cache: dict[tuple, tuple[dict, float]] = {}

    @property
    def labels(self) -> pd.DataFrame:
        if self._labels is None:
            self._labels = pd.read_parquet(self.labels_path)
        return self._labels

    def get(self, entry: Mapping[str, Any]) -> tuple[dict, float]:
        """(keyword arrays for :func:`generate`, seconds to build them; 0 when cached)."""
        kind, need = entry["method"], method_needs(entry)
        if need == LABEL:
            key = ("class",) if kind == "top_class" else ("label", tuple(entry.get("kinds") or LABEL_KINDS))
        else:
            value = "score" if kind == "clip_dissect" else "probability"
            key = (entry["presence"], entry.get("vocabulary", "labels"), value, entry.get("max_concepts"))
        if key in self._cache:
            return self._cache[key][0], 0.0
        t0 = time.perf_counter()
        if key[0] == "class":
            idx, names = class_indices(self.labels, self.image_ids)
            out = {"class_index": idx, "class_names": names}
        elif key[0] == "label":
            pres, names = label_matrix(self.labels, self.image_ids, key[1])
            out = {"presence": pres, "concepts": names}
        else:
            cm, vocab, value, max_concepts = key
            presence_path = self.presence_paths.get((cm, vocab))
            concepts = None if presence_path else vocabulary_concepts(self.vocabularies[vocab], self.labels)
            pres, names = concept_model_matrix(
                self.rows, value, presence_path=presence_path, spec=self.concept_models.get(cm),
                state_path=self.state_paths.get(cm), embeddings_path=self.embeddings_paths.get(cm),
                concepts=concepts, max_concepts=max_concepts, image_ids=self.image_ids, device=self.device,
            )
            out = {"presence": pres, "concepts": names}
        seconds = time.perf_counter() - t0
        self._cache[key] = (out, seconds)
        return out, seconds


def explain_layer(
    methods: Mapping[str, Mapping[str, Any]],
    outs: Mapping[str, Any],
    *,
    manifest_path,
    labels_path,
    activations_path,
    model: str,
    layer: str,
    module: str | None = None,
    split: str = "val",
    concept_models: Mapping[str, Mapping[str, Any]] | None = None,
    state_paths: Mapping[str, Any] | None = None,
    embeddings_paths: Mapping[str, Any] | None = None,
    presence_paths: Mapping[tuple[str, str], Any] | None = None,
    vocabularies: Mapping[str, Mapping[str, Any]] | None = None,
    import_paths: Mapping[str, Any] | None = None,
    device: str = "cpu",
    meta: Mapping[str, Any] | None = None,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> dict[str, pd.DataFrame]:
    """The explain rule: every method of one (model, layer) on the probing split; one file per method.

    The layer's activations (and the label / concept-model matrices, shared between methods) are
    read once. ``presence_paths`` maps (concept model, vocabulary) to a presence file where the
    pipeline has one; otherwise the matrix is computed from ``embeddings_paths`` and ``state_paths``.
    Non-finite values (src/neuronaudit/exclusions.py): a neuron whose activations are all NaN (or NaN
    on more than ``max_nan_fraction`` of the images) and a concept whose presence is, are left out,
    not the images (constant neurons are kept and counted in the log: no method fails on them); images with no activation (skipped by the
    extraction) or no presence at all are dropped. Each method's output gets a sidecar
    ``<method>.excluded.parquet`` listing what was left out and why (also logged and summarised in the
    provenance ``excluded``). Explanation rows keep the layer's neuron numbering.
    """
    from neuronaudit.io import provenance, write_table

    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    acts_all, neuron_names = load_activations(activations_path, manifest, rows)
    n_layer_neurons = acts_all.shape[1]
    layer_excl = Exclusions(f"explain {model}/{layer}", log)
    neuron_idx = np.arange(n_layer_neurons)
    if any(e["method"] != "import" for e in methods.values()):
        keep_rows, keep_neurons = finite_columns(
            acts_all, np.arange(n_layer_neurons), manifest["image_id"].to_numpy()[rows], layer_excl,
            col_item="neuron", what="activation", max_nan_fraction=max_nan_fraction)
        if not keep_neurons.any() or not keep_rows.any():
            raise ValueError(f"{activations_path}: no neuron with finite activations on the {split} images "
                             f"({layer_excl.summary()}); check the activation extraction")
        rows, acts_all, neuron_idx = rows[keep_rows], acts_all[keep_rows][:, keep_neurons], np.flatnonzero(keep_neurons)
        n_constant = int((acts_all.max(axis=0) == acts_all.min(axis=0)).sum())
        if n_constant:  # kept: no method fails on them, and scoring gives NaN with the reason
            log.info("%s/%s: %d neuron(s) constant on the %s images; their explanations are arbitrary and score NaN",
                     model, layer, n_constant, split)
    inputs = _Inputs(rows, manifest["image_id"].to_numpy()[rows], labels_path, concept_models, state_paths,
                     embeddings_paths, presence_paths, vocabularies, device)
    tables = {}
    for name, entry in methods.items():
        t_total = time.perf_counter()
        timer = RuntimeLog(device)
        excl = Exclusions(f"explain {model}/{layer} {name}", log)
        acts, kwargs, prep = acts_all, {}, 0.0
        if entry["method"] != "import":
            excl.extend(layer_excl)
            kwargs, prep = inputs.get(entry)
            if "presence" in kwargs:
                pres = kwargs["presence"]
                prow, pcol = finite_columns(pres, kwargs["concepts"], inputs.image_ids, excl, col_item="concept",
                                            what="presence", max_nan_fraction=max_nan_fraction)
                if not pcol.any() or not prow.any():
                    raise ValueError(f"{name} on {model}/{layer}: no concept with a finite presence on the {split} "
                                     f"images ({excl.summary()})")
                if not (prow.all() and pcol.all()):
                    kwargs = {**kwargs, "presence": pres[prow][:, pcol],
                              "concepts": [c for c, k in zip(kwargs["concepts"], pcol, strict=True) if k]}
                    acts = acts_all[prow]
        n_concepts = len(kwargs.get("concepts") or kwargs.get("class_names") or [])
        with timer.time(name, layer, n_neurons=acts.shape[1]):
            if entry["method"] == "import":
                table = _import_table(name, entry, import_paths[name], layer, module, n_layer_neurons)
            else:
                with np.errstate(invalid="ignore"):  # LE compares -inf candidate scores
                    table = generate(name, entry, acts, exclusions=excl, **kwargs)
                table["neuron"] = neuron_idx[table["neuron"].to_numpy()]  # back to the layer's numbering
        seconds = timer.records[-1]["seconds"]
        runtime = {"seconds": seconds, "seconds_inputs": prep, "seconds_total": time.perf_counter() - t_total,
                   "n_neurons": int(acts.shape[1]), "device": device}
        info = provenance(model=model, layer=layer, method=name, entry=dict(entry), split=split,
                          n_images=int(acts.shape[0]), n_concepts=n_concepts, runtime=runtime,
                          n_layer_neurons=int(n_layer_neurons), excluded=excl.summary(), **dict(meta or {}))
        write_table(table, outs[name], info)
        excl.write(outs[name])
        log.info("%s on %s/%s: %d of %d neurons, %d images, %d concepts; mean length %.2f; %.2f s (+%.2f s inputs)"
                 "; left out: %s", name, model, layer, acts.shape[1], n_layer_neurons, acts.shape[0], n_concepts,
                 table["length"].mean() if len(table) else float("nan"), seconds, prep, excl.summary() or "nothing")
        tables[name] = table
    return tables


def runtime_table(paths: Sequence) -> pd.DataFrame:
    """Tables 8-9 analogue from the explanation files' metadata: one row per (model, layer, method)."""
    rows = []
    for p in paths:
        meta = read_meta(p)
        rt = meta.get("runtime", {})
        rows.append({"model": meta.get("model"), "layer": meta.get("layer"), "method": meta.get("method"),
                     "method_type": (meta.get("entry") or {}).get("method"), "n_neurons": rt.get("n_neurons"),
                     "n_images": meta.get("n_images"), "n_concepts": meta.get("n_concepts"),
                     "seconds": rt.get("seconds"), "seconds_inputs": rt.get("seconds_inputs"),
                     "seconds_total": rt.get("seconds_total"), "device": rt.get("device")})
    cols = ["model", "layer", "method", "method_type", "n_neurons", "n_images", "n_concepts", "seconds",
            "seconds_inputs", "seconds_total", "device"]
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "layer", "method"]).reset_index(drop=True)
