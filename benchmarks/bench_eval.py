"""Benchmark of the evaluation core: sampling_grid at the paper's scale vs a competent per-pair baseline.

Prints figures, asserts nothing. Paper scale (seed 001 Setting 1): N = 50,000 inputs x 2,048 neurons,
8 sample sizes (25 .. 1600), 30 seeds, 3 samplers (uniform, MG-IS, AG-IS). The library's time includes
what the pipeline runs and the baseline does not: the delta-method SE and 95% interval of every
estimate (the ``se``, ``lo``, ``hi`` columns) and the output frame. The baseline is
``peers/grid_baseline.py`` (CDF built once per pair and sampler, binary-search draws, prefixes of one
long draw reused across sample sizes, vectorised over seeds), run on a subset of pairs with the same
number of threads, alternated with the library, best of --repeats, and extrapolated linearly to all
pairs; wall and CPU times are both printed because the build machine is shared.

    python benchmarks/bench_eval.py            # full scale (~1.3 GB of synthetic inputs)
    python benchmarks/bench_eval.py --quick    # 50,000 x 64 neurons
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np
from peers.grid_baseline import baseline_grid

from neuronaudit.sampling import (
    DEFAULT_NS,
    DEFAULT_SAMPLERS,
    sampling_grid,
    summarise_rce,
)
from neuronaudit.studies.setting1 import coverage_table


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
    ap.add_argument("--baseline-pairs", type=int, default=64, help="pairs for the competent per-pair baseline")
    ap.add_argument("--repeats", type=int, default=2, help="alternated runs of library and baseline (best of)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=32)
    ap.add_argument("--no-memory", action="store_true", help="skip the second (traced) run that measures memory")
    args = ap.parse_args()
    k = args.neurons or (64 if args.quick else 2048)
    n, seeds = args.inputs, range(args.seeds)
    acts, c, guide = synthetic(n, k)
    act_mb = acts.nbytes / 2**20
    print(f"inputs N={n}, neurons K={k}, ns={list(DEFAULT_NS)}, seeds={args.seeds}, samplers={len(DEFAULT_SAMPLERS)}")
    print(f"activation matrix: {act_mb:.0f} MiB ({acts.dtype}); c_true and c_guide the same size each")

    print(f"load average before the grid (shared machine): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    grid_kw = dict(seeds=seeds, rng=0, n_threads=args.threads, chunk_size=args.chunk_size)
    # timed run without tracemalloc (tracing every allocation slows the Python-level loop markedly)
    t0, c0 = time.perf_counter(), time.process_time()
    df = sampling_grid(acts, c, guide, **grid_kw)
    t_grid, cpu_grid = time.perf_counter() - t0, time.process_time() - c0
    print(f"\nsampling_grid: {t_grid:.2f} s wall ({cpu_grid:.2f} s CPU, all threads) for {k} pairs ({len(df):,} rows; "
          f"estimates, distinct counts and the delta-method SE and 95% interval of each)")
    print(f"  = {t_grid / k * 1e3:.2f} ms wall, {cpu_grid / k * 1e3:.2f} ms CPU per pair")
    if k != 2048:
        print(f"  extrapolated to 2,048 pairs: {t_grid / k * 2048:.1f} s wall")

    # competent per-pair NumPy baseline (peers/grid_baseline.py) on a subset of pairs, extrapolated
    # linearly (its cost is the same for every pair: a fixed number of draws and one N-sized table per
    # sampler); alternated with the library's full grid, best of --repeats, same number of threads
    kb = min(args.baseline_pairs, k)
    n_thr = args.threads or min(2, os.cpu_count() or 1)
    print(f"\ncompetent per-pair baseline (CDF built once per pair and sampler, np.searchsorted draws, prefixes of "
          f"one long draw, vectorised over seeds; {n_thr} threads over pairs) on {kb} pairs, extrapolated x{k / kb:.0f}:")
    walls, cpus = [t_grid], [cpu_grid]
    b_walls, b_cpus = [], []
    for rep in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        base = baseline_grid(acts, c, guide, range(kb), n_seeds=args.seeds, rng=1, n_threads=n_thr)
        b_walls.append(time.perf_counter() - t0)
        b_cpus.append(time.process_time() - c0)
        print(f"  baseline run {rep + 1}: {b_walls[-1]:.2f} s wall, {b_cpus[-1]:.2f} s CPU for {kb} pairs")
        if rep + 1 < args.repeats:
            t0, c0 = time.perf_counter(), time.process_time()
            sampling_grid(acts, c, guide, **grid_kw)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            print(f"  library run {rep + 2}: {walls[-1]:.2f} s wall, {cpus[-1]:.2f} s CPU for {k} pairs")
    t_grid, cpu_grid = min(walls), min(cpus)
    per_pair_loop, per_pair_loop_cpu = min(b_walls) / kb, min(b_cpus) / kb
    per_pair_grid, per_pair_grid_cpu = t_grid / k, cpu_grid / k
    print(f"  baseline {per_pair_loop * 1e3:.1f} ms wall per pair -> {per_pair_loop * 2048:.0f} s for 2,048 pairs; "
          f"library {per_pair_grid * 1e3:.2f} ms per pair")
    speedup = per_pair_loop / per_pair_grid
    speedup_cpu = per_pair_loop_cpu / per_pair_grid_cpu
    print(f"speed-up of sampling_grid over the competent baseline (same process, best of {args.repeats}): "
          f"{speedup:.1f}x wall, {speedup_cpu:.1f}x CPU time")
    # agreement: same exact rho, and the same estimator (Monte-Carlo equal: paired z over the subset's pairs)
    lib = df[df["pair"] < kb]
    rho_l = lib.groupby("pair")["rho"].first().to_numpy()
    rho_b = base.groupby("pair")["rho"].first().to_numpy()
    keep = np.abs(rho_l) >= 0.05
    zs = []
    for (smp, n_), g in lib[lib["pair"].isin(np.flatnonzero(keep))].groupby(["sampler", "n"], observed=True):
        b = base[(base["sampler"] == str(smp)) & (base["n"] == n_) & base["pair"].isin(np.flatnonzero(keep))]
        d = g.groupby("pair")["rce"].mean().to_numpy() - b.groupby("pair")["rce"].mean().to_numpy()
        zs.append(abs(d.mean()) / (d.std(ddof=1) / np.sqrt(len(d))))
    print(f"agreement on the {kb} baseline pairs: exact rho allclose: {np.allclose(rho_l, rho_b, rtol=1e-9, equal_nan=True)}; "
          f"mean RCE per (sampler, n), paired over {int(keep.sum())} pairs: max |z| = {max(zs):.2f} over {len(zs)} cells "
          f"(Monte-Carlo equal if below ~3)")
    print(f"load average after the baseline: {os.getloadavg()[0]:.1f}")
    if args.no_memory:
        traced_peak = float("nan")
    else:
        # separate run for memory: peak of traced allocations (numpy registers its buffers with tracemalloc)
        rss_before = rss_mb()
        tracemalloc.start()
        df2 = sampling_grid(acts, c, guide, **grid_kw)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = max(rss_mb() - rss_before, 0)
        same = "identical" if df2.equals(df) else "DIFFERENT"
        del df2
        print(f"\nmemory (second, traced run of the same grid; results {same} to the timed run)")
        print(f"  peak traced allocations during the grid: {traced_peak / 2**20:.0f} MiB = {traced_peak / 2**20 / act_mb:.2f}x the activation matrix")
        print(f"  max RSS growth beyond the timed run's high-water mark: {rss_growth:.0f} MiB (RSS is coarse; use the traced peak)")
    t_full = t_grid / k * 2048
    print("\nacceptance (issue 8): >= 20x the competent per-pair baseline; (issue 2) full grid <= 60 s, peak <= 2x the activation matrix")
    print(f"  grid at 2,048 pairs: {t_full:.1f} s{'' if k == 2048 else ' (extrapolated)'} -> {'ok' if t_full <= 60 else 'MISSED'}")
    print(f"  speed-up over the competent baseline: {speedup:.1f}x wall, {speedup_cpu:.1f}x CPU -> {'ok' if speedup >= 20 else 'MISSED'}")
    ratio = traced_peak / 2**20 / act_mb
    verdict = "not measured" if args.no_memory else "ok" if ratio <= 2 else "MISSED" if k == 2048 else "n/a below full scale"
    print(f"  peak traced allocations: {ratio:.2f}x -> {verdict}")

    s = summarise_rce(df, floor=0.05)
    print("\nmean RCE (|rho| >= 0.05) at n = 180:")
    print(s[s.n == 180].to_string(index=False))
    cov = coverage_table(df)
    print("\ncoverage of the 95% intervals (share containing the exact rho; degenerate samples count as misses):")
    print(cov[cov.n.isin([25, 100, 180, 400])].to_string(index=False))


if __name__ == "__main__":
    main()
