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

Cost: K * m * C logarithms, each the peer's ``torch.log`` of a float32 argument (about 0.75 ns on one
core here; the rest of the computation is cheap beside them). They are not computed one by one but looked
up: the argument is a function of the rank i (through p_i) and of the float32 value of ``s - 1``, and for
s <= 1/2 that value is -1 + j 2^-24 with j = round(s 2^24) an integer, so a table T[i, j] of torch's log
of the peer's argument, built once per call for the j that occur (at most 100 x 65,535 entries, under
6.6 M logarithms however large K and N), has exactly the bits the peer computes. Most softmax entries are
small (they sum to 1 over C concepts: at most 256 entries of an image's row exceed 65,535 / 2^24 = 0.0039,
and on the default study's ConSE similarities 0.01 % do); those, and any s > 1/2 or NaN, are not in the
table, and their argument is computed with the peer's four float32 operations in its order and passed
to torch's log. Per image (rows of the softmax computed in blocks of 128 that stay in cache, only for
images in some neuron's top set), the table index j is stored as 2 bytes per concept (half the memory of
the probabilities, which are kept only for the images with entries outside the table). Per neuron, one
compiled pass (numba, ``_rank_terms``) reads T[i, j] for each of its top images and concepts into a small
reused buffer (2 neurons x m images x 1,024 concepts, 800 KB) that stays in the core's cache, and torch's
sum over the m images (the peer's sum, the same order of additions) writes the result. One worker thread
per core (torch's thread count) owns a range of neurons; all work on the same 1,024 concepts at a time, so
their table indices (N x 1,024 x 2 bytes) stay in the shared cache. torch's intra-op threads are set to
1 while the workers run (restored after). The output is bit-identical to a per-neuron float32 loop
(tests/test_explainer_perf_paths.py; benchmarks/peers/clip_dissect_peer.py), whatever the table size,
chunk sizes and threads (``soft_wpmi``'s ``table_size``, ``neuron_chunk``, ``concept_chunk``,
``n_threads``).
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


_TWO24 = 16777216.0  # 2^24: the float32 spacing of S - 1 for S in [0, 1/2] is 2^-24
_NOT_IN_TABLE = 65535  # table index meaning "not memoised": the largest uint16


def _table_index(block, lim, idx, over):  # compiled by _kernel("table_index")
    """idx[r, t] = j with fl(S[r, t] - 1) = -1 + j 2^-24 where 0 <= j < lim, else 65535; over[r] = whether
    row r has any entry outside the table. Returns the largest j stored (-1 if none).

    For S in [0, 1/2] (every entry of a softmax over more than two concepts but a few), fl(S - 1) lies in
    [-1, -1/2] where float32 numbers are spaced 2^-24, so (fl(S - 1) + 1) is exact and j an integer
    below 2^23: j names the float32 value of the peer's ``s - 1`` exactly."""
    one, two24 = np.float32(1.0), np.float32(_TWO24)
    j_max = -1
    for r in range(block.shape[0]):
        src, dst = block[r], idx[r]
        n_over = 0
        for t in range(src.shape[0]):
            k = ((src[t] - one) + one) * two24
            ok = (k >= 0) & (k < lim)  # False for NaN
            j = np.int32(k) if ok else np.int32(_NOT_IN_TABLE)
            dst[t] = np.uint16(j)
            n_over += 0 if ok else 1
            j_max = max(j_max, j if ok else -1)
        over[r] = n_over > 0
    return j_max


def _rank_terms(idx, c0, c1, rows, table, fb_row, soft_fb, p_rank, one, eps, out, fb_args, fb_pos):
    """out[a, i, t] = log((1 + p_i (S[x, c0 + t] - 1)) + eps) with x = rows[a, i], read from the memo table
    (table[i, j] for idx[x, c0 + t] = j). Entries outside the table get their argument, the peer's four
    float32 operations in its order, written to fb_args and their flat position in ``out`` to fb_pos (the
    caller takes torch's log of those); returns how many."""
    nt = c1 - c0
    m = rows.shape[1]
    n_fb = 0
    for a in range(rows.shape[0]):
        for i in range(m):
            x = rows[a, i]
            src = idx[x, c0:c1]
            tab = table[i]
            dst = out[a, i]
            for t in range(nt):
                dst[t] = tab[src[t]]
            f = fb_row[x]
            if f >= 0:  # this image has entries outside the table
                s_row = soft_fb[f, c0:c1]
                p = p_rank[i]
                base = (a * m + i) * nt
                for t in range(nt):
                    if src[t] == _NOT_IN_TABLE:
                        y = s_row[t] - one
                        y = y * p
                        y = y + one
                        fb_args[n_fb] = y + eps
                        fb_pos[n_fb] = base + t
                        n_fb += 1
    return n_fb


_KERNELS: dict = {}


def _kernel(name: str):
    """A kernel of this module compiled (numba, cached on disk), on first use: numba is imported only by
    the explain jobs, not by everything that imports the explainer registry."""
    if name not in _KERNELS:
        import numba

        _KERNELS[name] = numba.njit(cache=True, nogil=True)(globals()[f"_{name}"])
    return _KERNELS[name]


def _log_table(p_rank: torch.Tensor, width: int, min_prob: float) -> np.ndarray:
    """The memo table: row i holds log((1 + p_i v_j) + eps) for v_j = -1 + j 2^-24, j < ``width`` (the
    float32 values the peer's ``s - 1`` takes for s <= 1/2), computed by the peer's torch expression, so
    each entry has the bits the peer gets for that value. Column 65535 (never a valid index) is left for
    entries outside the table; columns between ``width`` and 65535 are never read (and never touched)."""
    import torch

    table = torch.from_numpy(np.empty((p_rank.shape[0], _NOT_IN_TABLE + 1), dtype=np.float32))
    if width > 0:
        v = (-1.0 + torch.arange(width, dtype=torch.float64) / _TWO24).to(torch.float32)  # exact
        table[:, :width] = torch.log((1 + p_rank.view(-1, 1) * v.view(1, -1)) + min_prob)
    table[:, _NOT_IN_TABLE] = float("nan")  # overwritten by the caller wherever it is read
    return table.numpy()


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
    table_size: int = _NOT_IN_TABLE,
) -> np.ndarray:
    """log P(t | k) for all neurons (K x C float32). See the module docstring, step 2."""
    import torch  # deferred: see _rank_probabilities

    sim = torch.as_tensor(np.ascontiguousarray(similarity, dtype=np.float32))
    acts = torch.as_tensor(np.ascontiguousarray(activations, dtype=np.float32))
    n_images, n_concepts = sim.shape
    if acts.shape[0] != n_images:
        raise ValueError(f"similarity has {n_images} images but activations have {acts.shape[0]}")
    if not 0 <= int(table_size) <= _NOT_IN_TABLE:
        raise ValueError(f"table_size must be in [0, {_NOT_IN_TABLE}], got {table_size}")
    k_top = min(top_k, n_images)
    n_neurons = acts.shape[1]
    table_index, rank_terms = _kernel("table_index"), _kernel("rank_terms")
    with torch.no_grad():
        top_idx = torch.topk(acts, k=k_top, dim=0).indices  # (k_top, K), decreasing activation
        # Only images in some neuron's top set need the softmax over concepts.
        used, local_idx = torch.unique(top_idx, return_inverse=True)
    n_used = used.numel()
    all_rows = n_used == n_images  # then used = 0..N-1: no gather
    if n_threads is None:
        n_threads = torch.get_num_threads()
    n_workers = max(1, min(int(n_threads), n_neurons))
    lim = np.float32(table_size)
    idx = np.empty((n_used, n_concepts), dtype=np.uint16)  # table index of each (top image, concept)
    over = np.empty(n_used, dtype=np.bool_)
    block_rows = 128
    blocks = list(range(0, n_used, block_rows))

    def index_rows(w: int) -> list:
        """The softmax of worker w's blocks of rows (128 rows, about 10 MB at C = 20,000: they stay in
        cache), each turned at once into table indices; returns per block (start, largest index, the
        probabilities of its rows with an entry outside the table)."""
        with torch.no_grad():
            tmp = torch.empty((min(block_rows, n_used), n_concepts), dtype=torch.float32)
            soft = torch.empty_like(tmp)
            res = []
            for s in blocks[w::n_workers]:
                e = min(n_used, s + block_rows)
                src = sim[s:e] if all_rows else sim[used[s:e]]
                torch.mul(src, scale, out=tmp[: e - s])
                torch.softmax(tmp[: e - s], 1, out=soft[: e - s])  # into a reused block: no page faults
                j = table_index(soft[: e - s].numpy(), lim, idx[s:e], over[s:e])
                rows_over = np.flatnonzero(over[s:e])
                res.append((s, j, soft[torch.from_numpy(rows_over)].clone() if rows_over.size else None))
            return res

    # blocks of a multiple of 128 concepts: every concept then takes the same (vectorised or tail)
    # path through torch's sum as in a full-width per-neuron computation, so results are bit-identical
    cb = min(n_concepts, max(128, -(-int(concept_chunk) // 128) * 128))
    if neuron_chunk is None:
        neuron_chunk = max(1, min(2, int(max_chunk_bytes // (4 * k_top * cb))))
    rows = local_idx.T.contiguous().numpy()  # (K, k_top): row of `idx` for each neuron's top images
    out = torch.empty((n_neurons, n_concepts), dtype=torch.float32)
    # each worker thread owns a range of neurons and one reused buffer (no page faults) small enough to
    # stay in its core's cache
    bounds = np.linspace(0, n_neurons, n_workers + 1).astype(int)
    size = neuron_chunk * k_top * cb
    bufs = [torch.empty(size, dtype=torch.float32) for _ in range(n_workers)]
    reds = [torch.empty((neuron_chunk, cb), dtype=torch.float32) for _ in range(n_workers)]
    fb_args = [np.empty(size, dtype=np.float32) for _ in range(n_workers)]
    fb_pos = [np.empty(size, dtype=np.int64) for _ in range(n_workers)]
    p_rank = _rank_probabilities(top_k, p_start, p_end)[:k_top]
    p_np = np.ascontiguousarray(p_rank.numpy(), dtype=np.float32)
    one, eps = np.float32(1.0), np.float32(min_prob)

    def work(w: int, c0: int, c1: int) -> None:
        with torch.no_grad():
            buf, red = bufs[w], reds[w]
            for s in range(int(bounds[w]), int(bounds[w + 1]), neuron_chunk):
                e = min(int(bounds[w + 1]), s + neuron_chunk)
                g = buf[: (e - s) * k_top * (c1 - c0)].view(e - s, k_top, c1 - c0)
                n_fb = rank_terms(idx, c0, c1, rows[s:e], table, fb_row, soft_fb, p_np, one, eps, g.numpy(),
                                  fb_args[w], fb_pos[w])
                if n_fb:  # entries outside the table: torch's log of the peer's argument
                    logs = torch.log(torch.from_numpy(fb_args[w][:n_fb]))
                    g.view(-1)[torch.from_numpy(fb_pos[w][:n_fb])] = logs
                if c1 - c0 == n_concepts:
                    torch.sum(g, dim=1, out=out[s:e])
                else:
                    r = red[: e - s, : c1 - c0]
                    torch.sum(g, dim=1, out=r)
                    out[s:e, c0:c1] = r

    # torch's own intra-op threads are set to 1 while the workers run (restored after): each worker's
    # small passes then run on its core in cache, instead of being split and synchronised per operation
    threads = torch.get_num_threads()
    try:
        if n_workers > 1:
            torch.set_num_threads(1)
        with ThreadPoolExecutor(n_workers) as pool:
            per_block = [r for res in pool.map(index_rows, range(n_workers)) for r in res]
            per_block.sort(key=lambda r: r[0])
            fb_row = np.full(n_used, -1, dtype=np.int64)  # row of soft_fb for images with entries outside
            kept = [k for _, _, k in per_block if k is not None]
            soft_fb = torch.cat(kept).numpy() if kept else np.empty((1, n_concepts), dtype=np.float32)
            fb_row[np.flatnonzero(over)] = np.arange(len(soft_fb) if kept else 0)
            j_max = max((j for _, j, _ in per_block), default=-1)
            with torch.no_grad():
                table = _log_table(p_rank, j_max + 1, min_prob)
            # all workers on the same block of concepts at a time: its table indices (N x 1,024 x 2
            # bytes, 20 MB at N = 10,000) stay in the shared cache
            for c0 in range(0, n_concepts, cb):
                c1 = min(n_concepts, c0 + cb)
                list(pool.map(work, range(n_workers), [c0] * n_workers, [c1] * n_workers))
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
    table_size: int = _NOT_IN_TABLE,
) -> np.ndarray:
    """SoftWPMI(k, t) for every neuron and concept (K x C float32); module docstring, steps 1-3.

    ``similarity``: N x C image-concept cosine similarities; ``activations``: N x K.
    ``neuron_chunk`` / ``concept_chunk`` size the reused work buffer of each thread (default at most
    2 neurons x top_k x 1,024 concepts, and never above ``max_chunk_bytes``; ``concept_chunk`` is
    rounded up to a multiple of 128); ``n_threads`` worker threads (default torch's thread count) split
    the neurons; ``table_size`` (0 to 65,535) is the width of the memo table of logarithms (softmax
    values below ``table_size`` / 2^24 are looked up, 0 computes every logarithm). None of them
    changes the result, bit for bit.
    """
    import torch  # deferred: see _rank_probabilities

    log_p_given = _log_p_concept_given_neuron(
        similarity, activations, top_k, scale, p_start, p_end, min_prob, neuron_chunk, max_chunk_bytes,
        concept_chunk, n_threads, table_size,
    )
    t = torch.from_numpy(log_p_given)
    log_prior = torch.logsumexp(t, dim=0, keepdim=True) - math.log(t.shape[0])
    return t.sub_(lam * log_prior).numpy()  # in place: the same bits as t - lam * log_prior, no new 100 MB


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
