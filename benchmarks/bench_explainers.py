"""Benchmark the explanation methods against straightforward per-neuron loops (prints figures, no asserts).

    python benchmarks/bench_explainers.py            # N=10,000 images, C=20,000 concepts, K=1,280 neurons
    python benchmarks/bench_explainers.py --quick    # small sizes, seconds
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from neuronaudit.explainers.clip_dissect import soft_wpmi, soft_wpmi_reference
from neuronaudit.explainers.invert import invert
from neuronaudit.explainers.linear import greedy_search_reference, linear_explanations, random_split


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def bench_clip_dissect(n, c, k, n_loop, rng):
    sim = (0.2 + 0.03 * rng.standard_normal((n, c), dtype=np.float32)).astype(np.float32)
    acts = rng.standard_normal((n, k), dtype=np.float32)
    _, t_fast = timed(soft_wpmi, sim, acts)
    _, t_loop = timed(soft_wpmi_reference, sim, acts, neurons=range(n_loop))
    per_fast, per_loop = t_fast / k, t_loop / n_loop
    print(f"CLIP-Dissect  N={n} C={c} K={k}: vectorised {t_fast:.1f} s ({per_fast * 1e3:.1f} ms/neuron); "
          f"per-neuron loop on {n_loop} neurons {t_loop:.1f} s ({per_loop * 1e3:.1f} ms/neuron); "
          f"ratio {per_loop / per_fast:.1f}x")


def bench_linear(n, c, k, n_loop, rng):
    x = rng.beta(0.3, 1.5, size=(n, c)).astype(np.float32)
    w = rng.normal(size=(c, k)) * (rng.random((c, k)) < 0.1)
    acts = (x @ w + 0.5 * rng.normal(size=(n, k))).astype(np.float32)
    names = [f"c{i}" for i in range(c)]
    tr, va = random_split(n)
    res, t_fast = timed(linear_explanations, x, acts, names, train_idx=tr, val_idx=va)
    ranking = np.argsort(-w, axis=0).T  # any ranking: the loop cost does not depend on it
    t0 = time.perf_counter()
    for j in range(n_loop):
        greedy_search_reference(x, acts[:, j], ranking[j], tr, va)
    t_loop = time.perf_counter() - t0
    mean_len = np.mean([len(d["terms"]) for d in res])
    print(f"LE(concept model)  N={n} C={c} K={k}: vectorised {t_fast:.1f} s incl. preselection "
          f"({t_fast / k * 1e3:.2f} ms/neuron, mean length {mean_len:.2f}); per-neuron greedy loop "
          f"(lstsq) on {n_loop} neurons {t_loop:.1f} s ({t_loop / n_loop * 1e3:.1f} ms/neuron); "
          f"ratio {t_loop / n_loop / (t_fast / k):.1f}x")


def bench_invert(n, c, k, rng):
    labels = rng.integers(0, c, size=n)
    lab = np.zeros((n, c), dtype=bool)
    lab[np.arange(n), labels] = True
    acts = rng.standard_normal((n, k)).astype(np.float32)
    names = [f"class{i}" for i in range(c)]
    _, t1 = timed(invert, lab, acts, names, length=1)
    _, t3 = timed(invert, lab, acts, names, length=3)
    print(f"INVERT  N={n} C={c} K={k} one-hot labels: l=1 {t1:.1f} s, l=3 (beam 10) {t3:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"torch threads: {torch.get_num_threads()}")
    if args.quick:
        bench_clip_dissect(2000, 2000, 128, 8, rng)
        bench_linear(2000, 60, 128, 16, rng)
        bench_invert(2000, 100, 64, rng)
    else:
        bench_clip_dissect(10_000, 20_000, 1280, 8, rng)
        bench_linear(10_000, 60, 1280, 32, rng)
        bench_invert(10_000, 1000, 256, rng)


if __name__ == "__main__":
    main()
