"""CLIP-Dissect: the concept whose image similarities best match a neuron's top-activating images.

SPEC section 6; Oikarinen & Weng, "CLIP-Dissect" (ICLR 2023), semantics read from the public peer
Trustworthy-ML-Lab/CLIP-dissect (``similarity.soft_wpmi``), reimplemented here vectorised over neurons.

Given the image-concept similarity matrix P (N images x C concepts; cosine similarity of the concept
model's image and text embeddings) and activations A (N x K):

1. Concept distribution per image: ``S = softmax(scale * P, axis=concepts)``, scale = 10
   (the peer applies the scale to the raw cosine similarities before the softmax over concepts).
2. For neuron k let x_1..x_m be its top-m images by activation (m = 100), in decreasing order, and
   p_i = p_start - (i - 1) / m * (p_start - p_end) (p_start = 0.998, p_end = 0.97; the last image gets
   p_m = 0.97028, exactly as in the peer). The soft probability that the concept "describes" the
   top set is
       log P(t | k) = sum_i log(1 + p_i (S[x_i, t] - 1) + eps),     eps = 1e-7.
3. The prior over concepts is the mean over the layer's neurons, in log space
       log P(t) = logsumexp_k log P(t | k) - log K,
   so SoftWPMI(k, t) = log P(t | k) - lambda * log P(t), lambda = 1.
4. The explanation of neuron k is argmax_t SoftWPMI(k, t).

Note that step 3 makes the scores depend on every neuron explained together (the peer explains a whole
layer at once); explain the whole layer in one call to match the paper.

Cost: K * m * C logarithms (the only part that is not a matrix product; about 0.8 ns each on one core,
the floor of this computation). They are computed in float32 by one worker thread per core (torch's
thread count), each owning a range of neurons and one small reused buffer of (2 neurons x m images x
1,024 concepts, 800 KB) that stays in its core's cache: one compiled pass (numba, ``_log_arguments``)
gathers the rows of S and computes the log's argument with the peer's four float32 operations in its
order, torch's ``log_`` runs over the buffer in place (the peer's log, so the same bits), and its sum
over the m images is written straight into the output. torch's intra-op threads are set to 1 while the
workers run (restored after): splitting each small in-place pass across threads cost more in
synchronisation than it gained. A fresh buffer per chunk of neurons (what this did before) spent about
half its time in page faults. Only the rows of S that are some neuron's top image are computed, their
softmax in blocks of 128 rows. Measured (tests/test_explainer_perf_paths.py keeps it bit-identical):
single-threaded CPU time for K = 320, 0.33 s softmax + 0.05 s arguments + 0.5 s logs + 0.06 s sums.
The arithmetic is the peer's, operation for operation ((1 + p (S - 1)) + eps, then log, then the sum
over the top images), so the output is bit-identical to a per-neuron float32 loop
(tests/test_clip_dissect.py; benchmarks/peers/clip_dissect_peer.py).
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from neuronaudit.explanations import explanation_table

if TYPE_CHECKING:
    import torch

__all__ = [
    "soft_wpmi",
    "clip_dissect",
    "clip_dissect_table",
    "soft_wpmi_reference",
]

DEFAULTS = {
    "top_k": 100,
    "scale": 10.0,
    "lam": 1.0,
    "p_start": 0.998,
    "p_end": 0.97,
    "min_prob": 1e-7,
}


def _rank_probabilities(top_k: int, p_start: float, p_end: float) -> torch.Tensor:
    """p_i = p_start - i/top_k * (p_start - p_end), i = 0..top_k-1 (peer's schedule)."""
    # torch is imported where it is used: the explainer registry (explainers.methods) imports this module,
    # and the Snakefile / config validation import the registry without loading torch (~2 s)
    import torch

    i = torch.arange(top_k, dtype=torch.float32)
    return p_start - i / top_k * (p_start - p_end)


def _log_arguments(block, rows, p_rank, one, eps, out):  # compiled by _log_arguments_kernel
    """out[a, i, t] = (1 + p_i (S[rows[a, i], t] - 1)) + eps in float32, the peer's operations in its
    order (s - 1, times p, plus 1, plus eps; each rounded to float32), gathered and computed in one pass
    instead of five in-place tensor passes."""
    for a in range(rows.shape[0]):
        for i in range(rows.shape[1]):
            src = block[rows[a, i]]
            p = p_rank[i]
            dst = out[a, i]
            for t in range(src.shape[0]):
                x = src[t] - one
                x = x * p
                x = x + one
                dst[t] = x + eps


_KERNELS: dict = {}


def _log_arguments_kernel():
    """``_log_arguments`` compiled (numba, cached on disk), on first use: numba is imported only by the
    explain jobs, not by everything that imports the explainer registry."""
    if "log_arguments" not in _KERNELS:
        import numba

        _KERNELS["log_arguments"] = numba.njit(cache=True, nogil=True)(_log_arguments)
    return _KERNELS["log_arguments"]


def _log_p_concept_given_neuron(
    similarity: np.ndarray,
    activations: np.ndarray,
    top_k: int,
    scale: float,
    p_start: float,
    p_end: float,
    min_prob: float,
    neuron_chunk: int | None,
    max_chunk_bytes: float,
    concept_chunk: int = 1024,
    n_threads: int | None = None,
) -> np.ndarray:
    """log P(t | k) for all neurons (K x C float32). See the module docstring, step 2."""
    import torch  # deferred: see _rank_probabilities

    sim = torch.as_tensor(np.ascontiguousarray(similarity, dtype=np.float32))
    acts = torch.as_tensor(np.ascontiguousarray(activations, dtype=np.float32))
    n_images, n_concepts = sim.shape
    if acts.shape[0] != n_images:
        raise ValueError(f"similarity has {n_images} images but activations have {acts.shape[0]}")
    k_top = min(top_k, n_images)
    n_neurons = acts.shape[1]
    with torch.no_grad():
        top_idx = torch.topk(acts, k=k_top, dim=0).indices  # (k_top, K), decreasing activation
        # Only images in some neuron's top set need the softmax over concepts.
        used, local_idx = torch.unique(top_idx, return_inverse=True)
        soft = torch.empty((used.numel(), n_concepts), dtype=torch.float32)
        for s in range(0, used.numel(), 128):  # blocks of rows that stay in cache (about 10 MB at C = 20,000)
            soft[s : s + 128] = torch.softmax(scale * sim[used[s : s + 128]], dim=1)
        p_rank = _rank_probabilities(top_k, p_start, p_end)[:k_top].view(1, k_top, 1)
        # blocks of a multiple of 128 concepts: every concept then takes the same (vectorised or tail)
        # path through torch's sum as in a full-width per-neuron computation, so results are bit-identical
        cb = min(n_concepts, max(128, -(-int(concept_chunk) // 128) * 128))
        if neuron_chunk is None:
            neuron_chunk = max(1, min(2, int(max_chunk_bytes // (4 * k_top * cb))))
        if n_threads is None:
            n_threads = torch.get_num_threads()
        rows = local_idx.T.contiguous()  # (K, k_top): row of `soft` for each neuron's top images
        out = torch.empty((n_neurons, n_concepts), dtype=torch.float32)
        n_workers = max(1, min(int(n_threads), n_neurons))
        # each worker thread owns a range of neurons and one reused buffer (no page faults) small enough
        # to stay in its core's cache; torch's own intra-op threads are set to 1 meanwhile, so each
        # in-place pass runs single-threaded in cache instead of being split (and synchronised) per op
        bounds = np.linspace(0, n_neurons, n_workers + 1).astype(int)
        bufs = [torch.empty(neuron_chunk * k_top * cb, dtype=torch.float32) for _ in range(n_workers)]
        reds = [torch.empty((neuron_chunk, cb), dtype=torch.float32) for _ in range(n_workers)]

        def work(i: int, block: torch.Tensor, c0: int, c1: int) -> None:
            with torch.no_grad():
                buf, red = bufs[i], reds[i]
                for s in range(int(bounds[i]), int(bounds[i + 1]), neuron_chunk):
                    e = min(int(bounds[i + 1]), s + neuron_chunk)
                    g = buf[: (e - s) * k_top * (c1 - c0)].view(e - s, k_top, c1 - c0)
                    # log((1 + p (S - 1)) + eps), the peer's order of operations: the argument in one
                    # compiled pass, then torch's log in place (the peer's log, bit for bit)
                    kernel(block_np[i], rows_np[s:e], p_np, one, eps, g.numpy())
                    g.log_()
                    if cb == n_concepts:
                        torch.sum(g, dim=1, out=out[s:e])
                    else:
                        r = red[: e - s, : c1 - c0]
                        torch.sum(g, dim=1, out=r)
                        out[s:e, c0:c1] = r

        kernel = _log_arguments_kernel()
        rows_np = rows.numpy()
        p_np = np.ascontiguousarray(p_rank.reshape(-1).numpy(), dtype=np.float32)
        one, eps = np.float32(1.0), np.float32(min_prob)
        block_np = [None] * n_workers
        threads = torch.get_num_threads()
        try:
            if n_workers > 1:
                torch.set_num_threads(1)
            with ThreadPoolExecutor(n_workers) as pool:
                for c0 in range(0, n_concepts, cb):
                    c1 = min(n_concepts, c0 + cb)
                    block = soft if cb == n_concepts else soft[:, c0:c1].contiguous()
                    block_np[:] = [block.numpy()] * n_workers
                    list(pool.map(work, range(n_workers), [block] * n_workers, [c0] * n_workers,
                                  [c1] * n_workers))
        finally:
            torch.set_num_threads(threads)
    return out.numpy()


def soft_wpmi(
    similarity,
    activations,
    top_k: int = 100,
    scale: float = 10.0,
    lam: float = 1.0,
    p_start: float = 0.998,
    p_end: float = 0.97,
    min_prob: float = 1e-7,
    neuron_chunk: int | None = None,
    max_chunk_bytes: float = 256e6,
    concept_chunk: int = 1024,
    n_threads: int | None = None,
) -> np.ndarray:
    """SoftWPMI(k, t) for every neuron and concept (K x C float32); module docstring, steps 1-3.

    ``similarity``: N x C image-concept cosine similarities; ``activations``: N x K.
    ``neuron_chunk`` / ``concept_chunk`` size the reused work buffer of each thread (default at most
    2 neurons x top_k x 1,024 concepts, and never above ``max_chunk_bytes``; ``concept_chunk`` is
    rounded up to a multiple of 128); ``n_threads`` worker threads (default torch's thread count) split
    the neurons. None of them changes the result, bit for bit.
    """
    import torch  # deferred: see _rank_probabilities

    log_p_given = _log_p_concept_given_neuron(
        similarity, activations, top_k, scale, p_start, p_end, min_prob, neuron_chunk, max_chunk_bytes,
        concept_chunk, n_threads,
    )
    t = torch.from_numpy(log_p_given)
    log_prior = torch.logsumexp(t, dim=0, keepdim=True) - math.log(t.shape[0])
    return (t - lam * log_prior).numpy()


def clip_dissect(
    similarity,
    activations,
    concepts: list[str] | None = None,
    n_best: int = 1,
    **kwargs,
) -> dict:
    """CLIP-Dissect explanations: the best concept (or ``n_best`` best) per neuron by SoftWPMI.

    Returns ``{"concept_index": (K, n_best) int, "score": (K, n_best) float32,
    "concepts": (K, n_best) object array of names or None}``, best first. ``kwargs`` go to
    :func:`soft_wpmi` (defaults: top_k=100, scale=10, lam=1, p_start=0.998, p_end=0.97).
    """
    import torch  # deferred: see _rank_probabilities

    scores = torch.from_numpy(soft_wpmi(similarity, activations, **kwargs))
    vals, idx = torch.topk(scores, k=min(n_best, scores.shape[1]), dim=1)
    idx = idx.numpy()
    names = None
    if concepts is not None:
        concepts_arr = np.asarray(concepts, dtype=object)
        if len(concepts_arr) != scores.shape[1]:
            raise ValueError(f"{len(concepts_arr)} concept names for {scores.shape[1]} concepts")
        names = concepts_arr[idx]
    return {"concept_index": idx, "score": vals.numpy(), "concepts": names}


def clip_dissect_table(
    similarity,
    activations,
    concepts: list[str],
    neurons=None,
    method: str = "clip_dissect",
    **kwargs,
) -> pd.DataFrame:
    """CLIP-Dissect explanations as the normalised explanation table (:func:`neuronaudit.explanations.explanation_table`).

    ``source_score`` holds the SoftWPMI of the chosen concept.
    """
    res = clip_dissect(similarity, activations, concepts=concepts, n_best=1, **kwargs)
    params = {**DEFAULTS, **{k: v for k, v in kwargs.items() if k in DEFAULTS}}
    dicts = [{"kind": "simple", "concept": str(c)} for c in res["concepts"][:, 0]]
    n = len(dicts)
    return explanation_table(
        neurons=np.arange(n) if neurons is None else neurons,
        method=method,
        structured=dicts,
        params=json.dumps(params, sort_keys=True),
        source_score=res["score"][:, 0].astype(float),
    )


def soft_wpmi_reference(similarity, activations, neurons=None, **kwargs) -> np.ndarray:
    """Straightforward per-neuron loop (numpy, float64) of SoftWPMI, for tests and benchmarks.

    The prior is computed over the neurons given in ``neurons`` (all by default).
    """
    p = {**DEFAULTS, **kwargs}
    sim = np.asarray(similarity, dtype=np.float64)
    acts = np.asarray(activations, dtype=np.float64)
    neurons = range(acts.shape[1]) if neurons is None else neurons
    z = p["scale"] * sim
    z = z - z.max(axis=1, keepdims=True)
    soft = np.exp(z)
    soft /= soft.sum(axis=1, keepdims=True)
    m = min(p["top_k"], sim.shape[0])
    rows = []
    for k in neurons:
        top = np.argsort(-acts[:, k], kind="stable")[:m]
        total = np.zeros(sim.shape[1])
        for i, x in enumerate(top):
            p_i = p["p_start"] - i / p["top_k"] * (p["p_start"] - p["p_end"])
            total += np.log(1 + p_i * (soft[x] - 1) + p["min_prob"])
        rows.append(total)
    log_given = np.array(rows)
    mx = log_given.max(axis=0)
    log_prior = mx + np.log(np.exp(log_given - mx).sum(axis=0)) - np.log(len(rows))
    return log_given - p["lam"] * log_prior
