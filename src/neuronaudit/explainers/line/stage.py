"""LINE in the pipeline (rules ``line_shard`` and ``line_gather``, workflow/rules/line.smk).

A layer's neurons (``line.neurons_per_layer``: a seeded random subset, or all) are split over
``line.shards`` Snakemake scattergather jobs, neuron i going to shard i mod n. A shard runs the loop
(:mod:`.loop`) neuron by neuron and writes each finished neuron's history at once, atomically, to
``results/{study}/line/{model}/{layer}/{method}/neurons/neuron_<k>.parquet`` with a fingerprint of
everything that shapes it (settings, backends, input files, code hash). A killed or failed job is
resumed by rerunning it: neurons whose file exists with the same fingerprint are read back, never
recomputed (a file with another fingerprint is recomputed and replaced). The shard's output is its
neurons' histories; the gather concatenates the shards into the layer's history
(``explanations/{model}/{layer}/{method}_history.parquet``) and its explanation table
(``explanations/{model}/{layer}/{method}.parquet``, scored and tabulated like every method).

Splits: the control images and the top-activating classes come from the probing split
(``explain.split``, val); the offline generator retrieves from ``line.offline.split`` (train), never
from the scoring split (``explain.scoring.split``, test), which is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from neuronaudit.activations.models import load_model
from neuronaudit.concepts.stage import load_fitted
from neuronaudit.data.arrays import class_indices, load_activations, split_rows
from neuronaudit.data.vocabularies import vocabulary_concepts
from neuronaudit.exclusions import Exclusions, finite_columns
from neuronaudit.explainers.line.generators import DiffusersGenerator, LookupActivations, RetrievalGenerator
from neuronaudit.explainers.line.history import final_from_history, history_frame
from neuronaudit.explainers.line.loop import ControlSampler, LoopSettings, run_neuron
from neuronaudit.explainers.line.proposers import EmbeddingProposer, LLMProposer, clean_vocabulary
from neuronaudit.explainers.line.settings import loop_settings
from neuronaudit.explainers.line.targets import ModelActivations
from neuronaudit.explanations import explanation_table
from neuronaudit.io import provenance, read_matrix, read_meta, read_table, write_table
from neuronaudit.text import encode_texts

log = logging.getLogger(__name__)

__all__ = ["select_neurons", "shard_neurons", "fingerprint", "LayerData", "load_layer", "offline_backends",
           "generative_backends",
           "run_shard", "gather", "checkpoint_path", "TextEmbedder"]


def select_neurons(candidates: np.ndarray, per_layer: int | None, seed: int = 0) -> np.ndarray:
    """The neurons LINE explains: all ``candidates``, or a seeded random subset of ``per_layer`` (sorted)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if per_layer is None or per_layer >= len(candidates):
        return candidates
    return np.sort(np.random.default_rng(seed).choice(candidates, int(per_layer), replace=False))


def shard_neurons(neurons: Sequence[int], scatteritem: str) -> list[int]:
    """The neurons of shard ``"i-of-n"`` (1-based): every n-th, starting at the (i-1)-th."""
    try:
        i, n = (int(x) for x in str(scatteritem).split("-of-"))
    except ValueError:
        raise ValueError(f"shard {scatteritem!r}: expected 'i-of-n' (Snakemake's scatteritem)") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard {scatteritem!r}: i must be in 1..n")
    return [int(k) for k in list(neurons)[i - 1 :: n]]


def _file_id(path) -> list:
    st = os.stat(path)
    return [os.fspath(path), st.st_size, st.st_mtime_ns]


def fingerprint(settings: Mapping[str, Any], files: Sequence = ()) -> str:
    """Hash of the settings and the identity (path, size, mtime) of the input files."""
    blob = json.dumps({"settings": settings, "files": [_file_id(f) for f in files]}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def checkpoint_path(folder, neuron: int) -> Path:
    return Path(folder) / f"neuron_{int(neuron):05d}.parquet"


class TextEmbedder:
    """MiniLM embeddings with an in-process memo (single new concepts are not written to the disk cache)."""

    def __init__(self, model: str = "all-MiniLM-L6-v2") -> None:
        self.model, self.memo = model, {}

    def __call__(self, concepts: Sequence[str]) -> np.ndarray:
        todo = [c for c in dict.fromkeys(concepts) if c not in self.memo]
        if todo:
            emb = encode_texts(todo, model=self.model, cache=len(todo) > 16)
            self.memo.update(zip(todo, emb, strict=True))
        return np.stack([self.memo[c] for c in concepts])


class LayerData:
    """A layer's arrays for LINE: probing-split activations and classes, held-out activations."""

    def __init__(self, manifest: pd.DataFrame, probe_rows, acts_probe, class_index, class_names, heldout_rows,
                 acts_heldout, n_layer_neurons: int, exclusions: Exclusions) -> None:
        self.manifest, self.probe_rows, self.acts_probe = manifest, probe_rows, acts_probe
        self.class_index, self.class_names = class_index, class_names
        self.heldout_rows, self.acts_heldout = heldout_rows, acts_heldout
        self.n_layer_neurons, self.exclusions = n_layer_neurons, exclusions
        self.neurons = np.arange(n_layer_neurons)


def load_layer(manifest_path, labels_path, activations_path, split: str, heldout_split: str | None,
               scoring_split: str | None = None, label: str = "") -> LayerData:
    """Read the arrays; neurons with non-finite activations on either split are left out and counted."""
    if heldout_split is not None and heldout_split in (split, scoring_split or split):
        which = "scoring" if heldout_split == scoring_split else "probing"
        raise ValueError(f"line.offline.split = {heldout_split!r} is the {which} split; retrieve from a split the "
                         "neuron is neither explained nor scored on (default: train)")
    manifest = pd.read_parquet(manifest_path)
    excl = Exclusions(f"line {label}", log)
    rows = split_rows(manifest, split)
    acts, _ = load_activations(activations_path, manifest, rows)
    ids = manifest["image_id"].to_numpy()
    keep_rows, keep_neurons = finite_columns(acts, np.arange(acts.shape[1]), ids[rows], excl, col_item="neuron",
                                             what="activation")
    rows, acts = rows[keep_rows], acts[keep_rows]
    class_index, class_names = class_indices(pd.read_parquet(labels_path), ids[rows])
    h_rows, h_acts = np.zeros(0, np.int64), np.zeros((0, acts.shape[1]), np.float32)
    if heldout_split is not None:
        h_rows = split_rows(manifest, heldout_split)
        h_acts, _ = load_activations(activations_path, manifest, h_rows)
        bad = ~np.isfinite(h_acts).all(axis=1)
        h_rows, h_acts = h_rows[~bad], h_acts[~bad]
        nan_neuron = ~np.isfinite(h_acts).all(axis=0)
        if nan_neuron.any():
            excl.add("neuron", np.flatnonzero(nan_neuron & keep_neurons), f"non-finite activations on the {heldout_split} images")
            keep_neurons &= ~nan_neuron
    data = LayerData(manifest, rows, acts, class_index, class_names, h_rows, h_acts, acts.shape[1], excl)
    data.neurons = np.flatnonzero(keep_neurons)
    return data


def offline_backends(data: LayerData, cm_spec: Mapping[str, Any], state_path, embeddings_path,
                     vocabulary_spec: Mapping[str, Any], labels_path, line: Mapping[str, Any], device: str = "cpu"):
    """(proposer, generator, target, control) of ``line_offline``."""
    off = dict(line.get("offline") or {})
    vocab = clean_vocabulary(vocabulary_concepts(dict(vocabulary_spec), pd.read_parquet(labels_path)),
                             int(off.get("min_letters", 3)))
    text_model = off.get("text_model", "all-MiniLM-L6-v2")
    proposer = EmbeddingProposer(vocab, lambda t: encode_texts(list(t), model=text_model), top_k=off.get("top_k", 3),
                                 n_candidates=off.get("n_candidates", 5), temperature=off.get("temperature", 0.05),
                                 text_model=text_model, vocabulary_name=off.get("vocabulary", ""))
    model = load_fitted(dict(cm_spec), state_path, device)
    if not model.has_text_encoder:
        raise ValueError(f"line.offline.concept_model: the {cm_spec.get('backend')} concept model scores only its own "
                         "labelled concepts; LINE retrieval needs one with a text encoder (conse, open_clip)")
    emb = read_matrix(embeddings_path, ["embedding"])
    pos = pd.Index(emb.image_ids).get_indexer(data.manifest["image_id"].to_numpy()[data.heldout_rows])
    if (pos < 0).any():
        raise ValueError(f"{embeddings_path} lacks {(pos < 0).sum()} held-out images; rerun embed_images")
    ids = data.manifest["image_id"].to_numpy()[data.heldout_rows]
    generator = RetrievalGenerator(ids, emb["embedding"][pos], model.encode_text, n_images=int(line.get("n_images", 5)),
                                   concept_model=str(off.get("concept_model", "")), split=str(off.get("split", "")))
    generator.precompute(vocab)  # one call (one cache entry) for the whole vocabulary
    generator.precompute(data.class_names)
    control = ControlSampler(data.acts_probe, data.class_index, data.class_names, proposer.embed(data.class_names),
                             proposer.embed, line.get("control_images"))
    return proposer, generator, LookupActivations(data.acts_heldout), control


def generative_backends(data: LayerData, line: Mapping[str, Any], model_spec: Mapping[str, Any], module: str,
                        device: str = "cpu"):
    """(proposer, generator, target, control) of LINE with a transformers LLM and a diffusers pipeline
    (``line.generative``); the target model runs on the generated images (``model_spec``, ``module``)."""
    gen = dict(line.get("generative") or {})
    proposer = LLMProposer(gen.get("llm", "meta-llama/Llama-3.2-1B-Instruct"), temperature=gen.get("temperature", 0.5),
                           top_p=gen.get("top_p", 0.9), max_new_tokens=gen.get("max_new_tokens", 160),
                           seed=gen.get("llm_seed", 0), prompt_iterate=gen.get("prompt_iterate"),
                           prompt_summary=gen.get("prompt_summary"), device=device)
    size = gen.get("size")
    generator = DiffusersGenerator(gen.get("diffusion", "stabilityai/sd-turbo"), n_images=int(line.get("n_images", 5)),
                                   steps=gen.get("steps", 1), guidance_scale=gen.get("guidance_scale", 0.0),
                                   height=size, width=size, batch_size=gen.get("batch_size", 5), device=device)
    target = ModelActivations(load_model(dict(model_spec)), module, device)
    embed = TextEmbedder()
    control = ControlSampler(data.acts_probe, data.class_index, data.class_names, embed(data.class_names), embed,
                             line.get("control_images"))
    return proposer, generator, target, control


def _neuron(k, folder: Path, fp: str, proposer, generator, target, control, settings) -> tuple[pd.DataFrame, str, float]:
    """One neuron of a shard: (history, 'resumed' | 'computed', loop seconds)."""
    path = checkpoint_path(folder, k)
    if path.is_file():
        try:
            meta = read_meta(path)
            if meta.get("fingerprint") == fp:
                return read_table(path), "resumed", float(meta.get("seconds") or 0.0)
        except Exception as exc:  # a damaged checkpoint is recomputed
            log.warning("checkpoint %s unreadable (%s); recomputing neuron %d", path, exc, k)
    t0 = time.perf_counter()
    h = run_neuron(int(k), proposer, generator, target, control, settings)
    dt = time.perf_counter() - t0
    write_table(h, path, {"fingerprint": fp, "seconds": dt, "neuron": int(k)})
    return h, "computed", dt


def run_shard(neurons: Sequence[int], backends, line: Mapping[str, Any], checkpoint_dir, fp: str,
              out=None, meta: Mapping[str, Any] | None = None, progress: bool = True,
              blas_threads: int = 1) -> pd.DataFrame:
    """Run the loop on ``neurons``, resuming from the checkpoints whose fingerprint is ``fp``; write each
    new neuron's history as soon as it is done; return (and write to ``out``) the shard's history. The
    output's ``seconds`` is the loop time of all its neurons (a resumed neuron's from its checkpoint)."""
    proposer, generator, target, control = backends
    settings = LoopSettings(**loop_settings(line))
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    parts, reused, computed, seconds = [], 0, 0, 0.0
    with threadpool_limits(blas_threads):  # small matrix-vector products: BLAS threads only cost time
        for k in tqdm(list(neurons), desc="LINE", unit="neuron", disable=not progress, mininterval=5):
            got = _neuron(k, folder, fp, proposer, generator, target, control, settings)
            parts.append(got[0])
            reused += got[1] == "resumed"
            computed += got[1] == "computed"
            seconds += got[2]
    history = pd.concat(parts, ignore_index=True) if parts else history_frame([])
    log.info("LINE shard: %d neurons (%d computed, %d resumed from %s); %.1f s of loop time", len(parts), computed,
             reused, folder, seconds)
    if out is not None:
        write_table(history, out, {**dict(meta or {}), "fingerprint": fp, "n_computed": computed, "n_resumed": reused,
                                   "seconds": seconds})
    return history


def gather(shards: Sequence, method: str, out_explanations, out_history, meta: Mapping[str, Any] | None = None,
           exclusions: Exclusions | None = None) -> pd.DataFrame:
    """Concatenate the shards' histories into the layer's history and explanation table."""
    parts, seconds = [], 0.0
    for p in shards:
        parts.append(read_table(p))
        seconds += float(read_meta(p).get("seconds") or 0.0)
    history = pd.concat(parts, ignore_index=True) if parts else history_frame([])
    history = history.sort_values(["neuron", "step"]).reset_index(drop=True)
    dup = history.duplicated(["neuron", "step"])
    if dup.any():
        raise ValueError(f"neuron {int(history.loc[dup, 'neuron'].iloc[0])} appears in two LINE shards; rerun the shards")
    final = final_from_history(history)
    info = dict(meta or {})
    table = explanation_table(final["neuron"], method, [{"kind": "simple", "concept": c} for c in final["concept"]],
                              info.get("params", {}), source_score=final["score"])
    n = len(final)
    runtime = {"seconds": seconds, "seconds_inputs": 0.0, "seconds_total": seconds, "n_neurons": n,
               "device": info.pop("device", "cpu")}
    write_table(history, out_history, provenance(method=method, kind="line_history", **info))
    write_table(table, out_explanations, provenance(method=method, runtime=runtime, n_neurons_explained=n,
                                                    excluded=exclusions.summary() if exclusions else {}, **info))
    if exclusions is not None:
        exclusions.write(out_explanations)
    return table
