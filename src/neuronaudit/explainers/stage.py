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
                  probing split (:func:`neuronaudit.explainers.similarity.split_concept_matrix`,
                  rule ``explain_similarity``).
``le``            Linear Explanations on the presence: binary labels for LE(label), the concept
                  model's calibrated probabilities for LE(<concept model>).
``le_l1``         The best single concept by correlation (LE's l = 1 variant).
``invert``        INVERT formulas over the binary labels (``params.length``: 1 or 3 ...).
``top_class``     The class most frequent among the neuron's top-activating images (baseline).
``import``        A CSV made elsewhere (``path``, ``format``: clip_dissect | linear | compositional |
                  clustered), normalised (:mod:`neuronaudit.explainers.importers`).
==============  ==================================================================================

Each ``method`` type is an :class:`~neuronaudit.explainers.registry.Explainer` registered in
:mod:`neuronaudit.explainers.registry` (built-ins: :mod:`neuronaudit.explainers.methods`); the stage
builds the inputs it declares and calls its ``explain``. No method is named in this module.

Output: the normalised explanation table (``explanations.TABLE_COLUMNS``) written with
:func:`neuronaudit.io.write_table`; its provenance metadata holds the method entry, model, layer,
split, number of probing images, and ``runtime`` = {seconds (the method itself), seconds_inputs
(building its presence / label matrix; 0 when shared), seconds_total, n_neurons, device} (Tables 8-9).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.data.arrays import (
    LABEL_KINDS,
    class_indices,
    label_matrix,
    load_activations,
    read_presence,
    split_rows,
)
from neuronaudit.exclusions import MAX_NAN_FRACTION, Exclusions, finite_columns
from neuronaudit.explainers import methods as _builtin_methods  # noqa: F401 (registers the built-in explainers)
from neuronaudit.explainers.registry import (
    EXPLAINERS,
    LABEL,
    Explainer,
    ExplainInputs,
    check_params,
    explainer_names,
    get_explainer,
)
from neuronaudit.explainers.timing import RuntimeLog
from neuronaudit.io import provenance, read_meta, write_table

log = logging.getLogger(__name__)

__all__ = [
    "LABEL",
    "check_method",
    "generate",
    "explain_layer",
    "runtime_table",
]


def check_method(name: str, entry: Mapping[str, Any], concept_models: Mapping | None = None,
                 vocabularies: Mapping | None = None) -> None:
    """Fail early (at DAG build time) on an entry the generator could not run, naming the key."""
    where = f"explain.methods.{name}"
    kind = entry.get("method")
    cls = EXPLAINERS.get(kind)
    if cls is None:
        raise ValueError(f"{where}.method = {kind!r}: use one of the registered methods {explainer_names()}")
    check_params(cls, entry.get("params"), where)
    explainer = cls()
    explainer.check(where, entry)
    sources = cls.presence_sources()
    if not sources:  # reads no presence (an import)
        return
    source = entry.get("presence", LABEL)
    if source == LABEL and LABEL not in sources:
        what = "image-text similarities" if "similarity" in cls.inputs else "a concept model's presence"
        raise ValueError(f"{where}: {kind} needs {what}; set presence to a concept model")
    if source != LABEL and "concept_model" not in sources:
        raise ValueError(f"{where}: {kind} works on the binary ground-truth labels; set presence: {LABEL}")
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
    explainer = get_explainer(entry["method"])
    return _run(explainer, ExplainInputs(
        method=method_name, entry=entry, activations=np.asarray(activations, dtype=np.float32),
        presence=presence, concepts=None if concepts is None else list(concepts), class_index=class_index,
        class_names=None if class_names is None else list(class_names), exclusions=exclusions))


def _run(explainer: Explainer, inputs: ExplainInputs) -> pd.DataFrame:
    """Check that the inputs the explainer declares are there, and call it with the entry's params."""
    need = explainer.inputs
    missing = [f for f, wanted in (("activations", "activations" in need),
                                   ("presence", bool(need & {"labels", "concept_model", "similarity"})),
                                   ("concepts", bool(need & {"labels", "concept_model", "similarity"})),
                                   ("class_index", "classes" in need), ("class_names", "classes" in need),
                                   ("imported", "imported" in need)) if wanted and getattr(inputs, f) is None]
    if missing:
        raise ValueError(f"{inputs.method}: {explainer.name} needs {missing}")
    return explainer.explain(inputs, **dict(inputs.entry.get("params") or {}))


class _Inputs:
    """Builds (and caches) the arrays the methods of one layer need, timing each build."""

    def __init__(self, rows, image_ids, labels_path, presence_paths):
        self.rows, self.image_ids = rows, image_ids
        self.labels_path, self.presence_paths = labels_path, presence_paths or {}
        self._labels: pd.DataFrame | None = None
        self._cache: dict[tuple, tuple[dict, float]] = {}

    @property
    def labels(self) -> pd.DataFrame:
        if self._labels is None:
            self._labels = pd.read_parquet(self.labels_path)
        return self._labels

    def get(self, name: str, explainer: Explainer, entry: Mapping[str, Any]) -> tuple[dict, float]:
        """(keyword fields of :class:`ExplainInputs`, seconds to build them; 0 when cached)."""
        if "classes" in explainer.inputs:
            key: tuple = ("class",)
        elif entry.get("presence", LABEL) == LABEL:
            key = ("label", tuple(entry.get("kinds") or LABEL_KINDS))
        else:
            key = (entry["presence"], entry.get("vocabulary", "labels"), explainer.presence_value(),
                   entry.get("max_concepts"))
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
            path = self.presence_paths.get((cm, vocab))
            if path is None:
                raise ValueError(f"{name}: no presence file for concept model {cm!r} and vocabulary {vocab!r} "
                                 f"(given: {sorted(self.presence_paths)})")
            pres, names = read_presence(path, value, self.rows, image_ids=self.image_ids, max_concepts=max_concepts)
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
    presence_paths: Mapping[tuple[str, str], Any] | None = None,
    import_paths: Mapping[str, Any] | None = None,
    device: str = "cpu",
    meta: Mapping[str, Any] | None = None,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> dict[str, pd.DataFrame]:
    """The explain rule: every method of one (model, layer) on the probing split; one file per method.

    Each method is looked up in the explainer registry; the layer's activations (and the label /
    concept-model matrices, shared between methods) are read once. ``presence_paths`` maps (concept
    model, vocabulary) to its presence file on (at least) the probing split (rule ``presence`` or
    ``explain_similarity``); ``import_paths`` maps an import method to its file.
    Non-finite values (src/neuronaudit/exclusions.py): a neuron whose activations are all NaN (or NaN
    on more than ``max_nan_fraction`` of the images) and a concept whose presence is, are left out,
    not the images (constant neurons are kept and counted in the log: no method fails on them); images with no activation (skipped by the
    extraction) or no presence at all are dropped. Each method's output gets a sidecar
    ``<method>.excluded.parquet`` listing what was left out and why (also logged and summarised in the
    provenance ``excluded``). Explanation rows keep the layer's neuron numbering.
    """
    explainers = {name: get_explainer(entry["method"]) for name, entry in methods.items()}
    manifest = pd.read_parquet(manifest_path)
    rows = split_rows(manifest, split)
    acts_all, neuron_names = load_activations(activations_path, manifest, rows)
    n_layer_neurons = acts_all.shape[1]
    layer_excl = Exclusions(f"explain {model}/{layer}", log)
    neuron_idx = np.arange(n_layer_neurons)
    if any("activations" in e.inputs for e in explainers.values()):
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
    inputs = _Inputs(rows, manifest["image_id"].to_numpy()[rows], labels_path, presence_paths)
    tables = {}
    for name, entry in methods.items():
        explainer = explainers[name]
        t_total = time.perf_counter()
        timer = RuntimeLog(device)
        excl = Exclusions(f"explain {model}/{layer} {name}", log)
        acts, kwargs, prep = acts_all, {}, 0.0
        uses_activations = "activations" in explainer.inputs
        if uses_activations:
            excl.extend(layer_excl)
            kwargs, prep = inputs.get(name, explainer, entry)
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
        data = ExplainInputs(method=name, entry=entry, layer=layer, module=module,
                             activations=acts if uses_activations else None,
                             imported=(import_paths or {}).get(name), n_layer_neurons=int(n_layer_neurons),
                             exclusions=excl, **kwargs)
        with timer.time(name, layer, n_neurons=acts.shape[1]):
            with np.errstate(invalid="ignore"):  # LE compares -inf candidate scores
                table = _run(explainer, data)
            if uses_activations:
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
