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

Sharding (rules ``explain_shard`` / ``explain_gather``, docs/explain_stage.md): a method whose explainer
declares ``per_neuron`` may be split over n jobs per layer. Shard i-of-n (``explain_layer(shard=(i, n))``)
explains every n-th tile of :data:`TILE_NEURONS` consecutive kept neurons of the layer, starting with the
i-th (as LINE's shards take every n-th neuron), after the same NaN policy as an unsharded run, which runs
the same tiles one after the other; :func:`gather_shards` checks that the n files belong together and
cover every kept neuron once, and writes the rows sorted by neuron, the exclusions once and
``runtime`` summed over the shards (``shards`` = {n, seconds per shard}).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
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
from neuronaudit.exclusions import MAX_NAN_FRACTION, Exclusions, finite_columns, sidecar_path
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
from neuronaudit.explanations import explanation_table
from neuronaudit.io import provenance, read_meta, read_table, write_table

log = logging.getLogger(__name__)

#: per-neuron methods are run on tiles of this many consecutive neurons (explain_layer); a shard job
#: takes whole tiles, so a layer splits into at most ceil(neurons / TILE_NEURONS) non-empty shards
TILE_NEURONS = 256

__all__ = [
    "LABEL",
    "check_method",
    "generate",
    "TILE_NEURONS",
    "explain_layer",
    "gather_shards",
    "parse_shard",
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
    shards = entry.get("shards")
    if shards is not None:
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"{where}.shards = {shards!r}: give a whole number >= 1 (jobs per layer)")
        if shards > 1 and not cls.per_neuron:
            sharded = [n for n, c in EXPLAINERS.items() if c.per_neuron]
            raise ValueError(f"{where}.shards = {shards}: {kind} does not explain each neuron on its own, so its "
                             f"layer cannot be split; shardable methods: {sharded}. Remove shards or set it to 1")
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
    shard: tuple[int, int] | None = None,
    tile_neurons: int | None = None,
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

    A ``per_neuron`` method is run on tiles of ``tile_neurons`` (:data:`TILE_NEURONS`) consecutive kept
    neurons, one call each, its rows concatenated in neuron order: every tile is the same computation
    whichever job runs it, so sharded and unsharded runs give bit-identical rows (a batched BLAS product
    rounds a neuron's column differently with a different number of neurons beside it), and the
    method's per-neuron memory is that of one tile.
    ``shard`` = (i, n), 1 <= i <= n: explain only the tiles i, i + n, i + 2n ... (module doc); every
    method must be ``per_neuron``. The provenance then also holds ``shard`` ("i-of-n"),
    ``n_kept_neurons`` (the layer's neurons left after the NaN policy) and ``tile_neurons``.
    """
    tile_neurons = int(tile_neurons or TILE_NEURONS)
    if tile_neurons < 1:
        raise ValueError(f"tile_neurons = {tile_neurons}: must be >= 1")
    explainers = {name: get_explainer(entry["method"]) for name, entry in methods.items()}
    if shard is not None:
        i, n = shard
        if not 1 <= i <= n:
            raise ValueError(f"shard {i}-of-{n}: i must be between 1 and n")
        whole = [name for name, e in explainers.items() if not e.per_neuron]
        if whole:
            raise ValueError(f"{whole}: not per-neuron explainers; a layer cannot be split over shards for them")
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
    n_kept = len(neuron_idx)
    tiles = [(t0, min(t0 + tile_neurons, n_kept)) for t0 in range(0, n_kept, tile_neurons)]
    shard_meta: dict[str, Any] = {}
    if shard is not None:
        tiles = tiles[shard[0] - 1 :: shard[1]]
        shard_meta = {"shard": f"{shard[0]}-of-{shard[1]}", "n_kept_neurons": int(n_kept),
                      "tile_neurons": int(tile_neurons)}
        log.info("%s/%s shard %d-of-%d: %d of the %d kept neurons (%d tiles of at most %d)", model, layer,
                 shard[0], shard[1], sum(b - a for a, b in tiles), n_kept, len(tiles), tile_neurons)
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
        tiled = uses_activations and explainer.per_neuron
        n_explained = sum(b - a for a, b in tiles) if tiled else acts.shape[1]
        with timer.time(name, layer, n_neurons=n_explained):
            with np.errstate(invalid="ignore"):  # LE compares -inf candidate scores
                if tiled:
                    table = _run_tiles(explainer, data, tiles, neuron_idx, name)
                else:
                    table = _run(explainer, data)
                    if uses_activations:
                        table["neuron"] = neuron_idx[table["neuron"].to_numpy()]  # back to the layer's numbering
        seconds = timer.records[-1]["seconds"]
        runtime = {"seconds": seconds, "seconds_inputs": prep, "seconds_total": time.perf_counter() - t_total,
                   "n_neurons": int(n_explained), "device": device}
        info = provenance(model=model, layer=layer, method=name, entry=dict(entry), split=split,
                          n_images=int(acts.shape[0]), n_concepts=n_concepts, runtime=runtime,
                          n_layer_neurons=int(n_layer_neurons), excluded=excl.summary(), **shard_meta,
                          **dict(meta or {}))
        write_table(table, outs[name], info)
        excl.write(outs[name])
        log.info("%s on %s/%s: %d of %d neurons, %d images, %d concepts; mean length %.2f; %.2f s (+%.2f s inputs)"
                 "; left out: %s", name, model, layer, n_explained, n_layer_neurons, acts.shape[0], n_concepts,
                 table["length"].mean() if len(table) else float("nan"), seconds, prep, excl.summary() or "nothing")
        tables[name] = table
    return tables


def _run_tiles(explainer: Explainer, data: ExplainInputs, tiles, neuron_idx: np.ndarray, name: str) -> pd.DataFrame:
    """A per-neuron method on each tile (kept-neuron positions [a, b)) of ``data.activations``; rows in
    tile order, each tile's sorted by neuron (stable). The method records its own exclusions (LE's
    activity filter: the same for every tile, as it reads the presence only) from the first tile only.
    Inside the explainer's ``shared_presence()`` block: LE does its presence-only setup once for all tiles."""
    parts = []
    with explainer.shared_presence():
        for k, (a, b) in enumerate(tiles):
            excl = data.exclusions if k == 0 else Exclusions(f"{name} tile {a}-{b}", log, level=logging.DEBUG)
            part = _run(explainer, replace(data, activations=data.activations[:, a:b], exclusions=excl))
            part["neuron"] = neuron_idx[a + part["neuron"].to_numpy()]  # back to the layer's numbering
            parts.append(part.sort_values("neuron", kind="stable"))
    if not parts:  # a shard with no tile (more shards than tiles)
        return _empty_table(name)
    return pd.concat(parts, ignore_index=True)


def _empty_table(method: str = "") -> pd.DataFrame:
    """An explanation table without rows (a shard left with no neuron: more shards than neurons)."""
    return explanation_table([], method, [], "{}", [])


def parse_shard(item: str) -> tuple[int, int]:
    """Snakemake's scatter item ``"i-of-n"`` -> (i, n)."""
    try:
        i, n = (int(x) for x in str(item).split("-of-"))
    except ValueError:
        raise ValueError(f"shard {item!r}: expected 'i-of-n' (e.g. 2-of-4)") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard {item!r}: i must be between 1 and n")
    return i, n


# provenance keys that differ between the shards of one layer and method (the rest must agree)
_SHARD_KEYS = ("shard", "runtime", "versions", "excluded")


def gather_shards(paths: Sequence, out) -> pd.DataFrame:
    """The n shard files of one (model, layer, method) -> the layer's explanation file ``out``.

    Checks that the files are shards 1..n of the same n, of the same method entry, layer, split and
    inputs (their provenance agrees but for the shard's own keys), that no neuron is in two shards and
    that together they explain all ``n_kept_neurons``; each error names the file. Writes the rows
    sorted by neuron (the unsharded order), the exclusions once (shard 1's: every shard with a tile records
    the same layer- and concept-level ones, as tiles are picked after them), and the provenance of an unsharded
    run with ``runtime`` summed over the shards (seconds, seconds_inputs, seconds_total, n_neurons: the
    job time a layer costs, not the wall time) plus ``shards`` = {n, seconds, seconds_total per shard}.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError(f"{out}: no shard files to gather")
    metas = [read_meta(p) for p in paths]
    items = []
    for p, m in zip(paths, metas, strict=True):
        if "shard" not in m:
            raise ValueError(f"{p}: not a shard file (no 'shard' in its metadata); rerun its explain_shard job")
        items.append(parse_shard(m["shard"]))
    n = items[0][1]
    if sorted(items) != [(i, n) for i in range(1, n + 1)]:
        got = [f"{i}-of-{k}" for i, k in items]
        raise ValueError(f"{out}: the shard files {paths} are shards {got}, not 1..{n} of {n} once each")
    # the first shard holds the first tile whenever the layer has a neuron; a shard without a tile has
    # not run the method, so it has not recorded the method's own exclusions (LE's activity filter)
    first = min(range(len(paths)), key=lambda k: items[k][0])
    ref = {k: v for k, v in metas[first].items() if k not in _SHARD_KEYS}
    for p, m in zip(paths, metas, strict=True):
        keys = sorted(k for k in set(ref) | set(m) if k not in _SHARD_KEYS and ref.get(k) != m.get(k))
        if m.get("runtime", {}).get("n_neurons") and m.get("excluded") != metas[first].get("excluded"):
            keys.append("excluded")
        if keys:
            raise ValueError(f"{p}: its provenance differs from {paths[first]} in {keys}: the shards come from "
                             "different runs or settings; delete the shard files and rerun")
    tables = [read_table(p) for p in paths]
    seen: dict[int, str] = {}
    for p, t in zip(paths, tables, strict=True):
        for neuron in pd.unique(t["neuron"]):
            if int(neuron) in seen:
                raise ValueError(f"{p}: neuron {int(neuron)} is also in {seen[int(neuron)]}")
            seen[int(neuron)] = p
    runtimes = [m.get("runtime", {}) for m in metas]
    n_neurons = sum(int(r.get("n_neurons", 0)) for r in runtimes)
    kept = metas[0].get("n_kept_neurons")
    if kept is not None and n_neurons != kept:
        raise ValueError(f"{out}: the {n} shards explained {n_neurons} neurons, the layer has {kept} after the "
                         f"NaN policy; rerun the shards ({paths[0]} ...)")
    nonempty = [t for t in tables if len(t)] or tables[:1]
    table = pd.concat(nonempty, ignore_index=True).sort_values("neuron", kind="stable").reset_index(drop=True)
    order = sorted(range(n), key=lambda k: items[k][0])
    runtime = {
        "seconds": float(sum(r.get("seconds", 0.0) for r in runtimes)),
        "seconds_inputs": float(sum(r.get("seconds_inputs", 0.0) for r in runtimes)),
        "seconds_total": float(sum(r.get("seconds_total", 0.0) for r in runtimes)),
        "n_neurons": n_neurons,
        "device": runtimes[0].get("device"),
    }
    shards = {"n": n, "seconds": [runtimes[k].get("seconds") for k in order],
              "seconds_total": [runtimes[k].get("seconds_total") for k in order]}
    info = {**ref, "excluded": metas[first].get("excluded", {}), "runtime": runtime, "shards": shards,
            "versions": metas[first].get("versions", {})}
    write_table(table, out, info)
    excluded = read_table(sidecar_path(paths[first]))
    sidecar_meta = read_meta(sidecar_path(paths[first]))
    write_table(excluded, sidecar_path(out), {**sidecar_meta, "output": str(out)})
    return table


def runtime_table(paths: Sequence) -> pd.DataFrame:
    """Tables 8-9 analogue from the explanation files' metadata: one row per (model, layer, method).

    A sharded layer's seconds are the sum over its shards (:func:`gather_shards`); ``shards`` says how
    many jobs ran it (1 when unsharded)."""
    rows = []
    for p in paths:
        meta = read_meta(p)
        rt = meta.get("runtime", {})
        rows.append({"model": meta.get("model"), "layer": meta.get("layer"), "method": meta.get("method"),
                     "method_type": (meta.get("entry") or {}).get("method"), "n_neurons": rt.get("n_neurons"),
                     "n_images": meta.get("n_images"), "n_concepts": meta.get("n_concepts"),
                     "seconds": rt.get("seconds"), "seconds_inputs": rt.get("seconds_inputs"),
                     "seconds_total": rt.get("seconds_total"), "device": rt.get("device"),
                     "shards": int((meta.get("shards") or {}).get("n", 1))})
    cols = ["model", "layer", "method", "method_type", "n_neurons", "n_images", "n_concepts", "seconds",
            "seconds_inputs", "seconds_total", "device", "shards"]
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "layer", "method"]).reset_index(drop=True)
