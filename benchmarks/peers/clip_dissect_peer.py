"""A faithful re-implementation of the peer CLIP-Dissect's SoftWPMI (Trustworthy-ML-Lab/CLIP-dissect).

Written from the paper (Oikarinen & Weng, ICLR 2023, sec. 3 and App. A) and the semantics of the peer's
``similarity.soft_wpmi`` / ``utils.get_similarity_from_activations`` / ``describe_neurons.py``; no code
copied. The peer's structure is kept, because the benchmark is about what running the peer costs:

1. the image-concept cosine similarities P (N x C) are turned into a concept distribution per image by
   one softmax over the concepts of the whole matrix, ``softmax(a * P)`` with a = 10;
2. the top-k (100) images of every neuron by activation (``torch.topk`` over images);
3. per neuron (a Python loop over the K neurons, as the peer does): gather the k rows of the softmax,
   ``log P(t | k) = sum_i log(1 + p_i (S[x_i, t] - 1) + 1e-7)`` with p_i = p_start - i / k (p_start -
   p_end), p_start = 0.998, p_end = 0.97, written as the peer's sequence of out-of-place tensor ops;
4. ``log P(t) = logsumexp_k log P(t | k) - log K`` and ``SoftWPMI = log P(t | k) - lambda log P(t)``,
   lambda = 1;
5. the description of neuron k is ``argmax_t SoftWPMI(k, t)`` (``describe_neurons.py``).

float32 torch on the CPU throughout, as the peer on a machine without CUDA.
"""

from __future__ import annotations

import math

import numpy as np
import torch

PEER_DEFAULTS = {"top_k": 100, "a": 10.0, "lam": 1.0, "min_prob": 1e-7, "p_start": 0.998, "p_end": 0.97}


def peer_soft_wpmi(similarity, activations, top_k: int = 100, a: float = 10.0, lam: float = 1.0,
                   min_prob: float = 1e-7, p_start: float = 0.998, p_end: float = 0.97) -> torch.Tensor:
    """SoftWPMI (K x C float32 tensor) computed the way the peer computes it (module docstring)."""
    clip = torch.as_tensor(np.asarray(similarity, dtype=np.float32))
    target = torch.as_tensor(np.asarray(activations, dtype=np.float32))
    with torch.no_grad():
        probs = torch.nn.functional.softmax(a * clip, dim=1)  # step 1, over the whole N x C matrix
        top = torch.topk(target, k=top_k, dim=0).indices  # step 2, (top_k, K)
        ranks = torch.arange(top_k, dtype=torch.float32)
        p_rank = (p_start - ranks / top_k * (p_start - p_end)).unsqueeze(1)  # (top_k, 1)
        rows = []
        for k in range(target.shape[1]):  # step 3, one neuron at a time
            idx = top[:, k : k + 1].expand(-1, probs.shape[1])
            s = probs.gather(0, idx)  # (top_k, C)
            term = 1 + p_rank * (s - 1)
            rows.append(torch.sum(torch.log(term + min_prob), dim=0, keepdim=True))
        given = torch.cat(rows, dim=0)  # (K, C)
        prior = torch.logsumexp(given, dim=0, keepdim=True) - math.log(given.shape[0])  # step 4
        return given - lam * prior


def peer_describe(similarity, activations, **kwargs):
    """Best concept index and its SoftWPMI per neuron (step 5)."""
    scores = peer_soft_wpmi(similarity, activations, **kwargs)
    vals, ids = torch.max(scores, dim=1)
    return ids.numpy(), vals.numpy(), scores.numpy()
