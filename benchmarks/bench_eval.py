"""Benchmark of the evaluation core: sampling_grid at the paper's scale vs a per-pair Python loop.

Prints figures, asserts nothing. Paper scale (seed 001 Setting 1): N = 50,000 inputs x 2,048 neurons,
8 sample sizes (25 .. 1600), 30 seeds, 3 samplers (uniform, MG-IS, AG-IS).

    python benchmarks/bench_eval.py            # full scale (~1.3 GB of synthetic inputs)
    python benchmarks/bench_eval.py --quick    # 50,000 x 64 neurons
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from neuronaudit.sampling import (
    DEFAULT_NS,
    DEFAULT_SAMPLERS,
    sampling_grid,
    sampling_grid_loop,
    summarise_rce,
)


def synthetic(n: int, k: int, seed: int = 0):
    """ReLU-like activations, one sparse ground-truth concept per neuron, and a noisy concept model."""
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.001, 0.05, size=k).astype(np.float32)
    c = (rng.random((n, k), dtype=np.float32) < prevalence).astype(np.float32)
    acts = rng.standard_normal((n, k), dtype=np.float32)
    acts += rng.uniform(0.2, 3.0, size=k).astype(np.float32) * c
    np.maximum(acts, 0, out=acts)
    guide = rng.random((n, k), dtype=np.float32)
    guide *= 0.4
    guide += 0.6 * c
    return acts, c, guide


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="64 neurons instead of 2,048")
    ap.add_argument("--neurons", type=int, default=None)
    ap.add_argument("--inputs", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--loop-neurons", type=int, default=2, help="neurons for the per-pair loop reference")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=32)
    args = ap.parse_args()
    k = args.neurons or (64 if args.quick else 2048)
    n, seeds = args.inputs, range(args.seeds)
    acts, c, guide = synthetic(n, k)
    act_mb = acts.nbytes / 2**20
    print(f"inputs N={n}, neurons K={k}, ns={list(DEFAULT_NS)}, seeds={args.seeds}, samplers={len(DEFAULT_SAMPLERS)}")
    print(f"activation matrix: {act_mb:.0f} MiB ({acts.dtype}); c_true and c_guide the same size each")

    rss_before = rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    df = sampling_grid(acts, c, guide, seeds=seeds, rng=0, n_threads=args.threads, chunk_size=args.chunk_size)
    t_grid = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = rss_mb()
    print(f"\nsampling_grid: {t_grid:.2f} s for {k} pairs ({len(df):,} rows) = {t_grid / k * 1e3:.2f} ms per pair")
    print(f"  extrapolated to 2,048 pairs: {t_grid / k * 2048:.1f} s (measured, not extrapolated, when K = 2048)")
    print(f"  peak traced allocations during the grid: {traced_peak / 2**20:.0f} MiB = {traced_peak / 2**20 / act_mb:.2f}x the activation matrix")
    print(f"  max RSS growth during the grid: {max(rss_peak - rss_before, 0):.0f} MiB = {max(rss_peak - rss_before, 0) / act_mb:.2f}x the activation matrix")

    kl = min(args.loop_neurons, k)
    t0 = time.perf_counter()
    sampling_grid_loop(acts[:, :kl], c[:, :kl], guide[:, :kl], seeds=seeds, rng=0)
    t_loop = time.perf_counter() - t0
    per_pair_loop = t_loop / kl
    per_pair_grid = t_grid / k
    print(f"\nper-pair loop reference: {t_loop:.2f} s for {kl} pairs = {per_pair_loop * 1e3:.0f} ms per pair")
    print(f"  extrapolated to {k} pairs: {per_pair_loop * k:.0f} s; to 2,048 pairs: {per_pair_loop * 2048:.0f} s")
    print(f"speed-up of sampling_grid over the loop: {per_pair_loop / per_pair_grid:.0f}x")

    s = summarise_rce(df, floor=0.05)
    print("\nmean RCE (|rho| >= 0.05) at n = 180:")
    print(s[s.n == 180].to_string(index=False))


if __name__ == "__main__":
    main()
