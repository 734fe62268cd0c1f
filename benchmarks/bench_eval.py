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
    python benchmarks/bench_eval.py --profile  # also: where the library's time goes, stage by stage

Threads: the library's grid and the baseline get the same number (``--threads``, default 2 = the
cores of the build machine): the grid runs chunks of pairs in a thread pool (its compiled kernels
release the GIL), the baseline runs pairs in a thread pool (NumPy releases the GIL in its kernels).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numba
import numpy as np
from peers.grid_baseline import baseline_grid

from neuronaudit import sampling as _sampling
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


@numba.njit(nogil=True)
def _rows_draws(u, scale, rec, guide, flat):  # the engine's draw loop over a pair's rows
    for row in range(flat.shape[0]):
        _sampling._k_row_draws(u, row * flat.shape[1], scale, True, rec, guide, 0, flat[row])


@numba.njit(nogil=True)
def _rows_sums(flat, rec, acc, ends, sums, sq, nd, mark):  # the engine's sum loop over a pair's rows
    mark[:] = 0
    for row in range(flat.shape[0]):
        _sampling._k_row_sums(flat[row], 0, True, rec, acc, acc[:0], True, ends, sums[row], sq[row], nd[row], mark,
                              np.uint8(row + 1))


def profile_is_sampler(acts, c, guide, spec, n_pairs: int = 64, n_seeds: int = 30) -> None:
    """One IS sampler's share split into its steps (one thread, CPU ms per pair): q (``sampler_q``), the
    per-input tables (``_k_row_tables``), the draws (``_k_row_draws``) and the sums
    (``_k_row_sums``), each run on its own over the same pairs."""
    ns = np.asarray(DEFAULT_NS)
    nmax, n = int(ns[-1]), acts.shape[0]
    cols = np.arange(min(n_pairs, acts.shape[1]))
    a_ch = _sampling._pair_columns(acts, cols, dtype=None)
    c_ch = _sampling._pair_columns(c, cols, dtype=None)
    g_ch = _sampling._pair_columns(guide, cols, dtype=None)
    work = _sampling._Workspace(n)
    flat = np.empty((n_seeds, nmax), dtype=np.intp)
    sums, sq = np.empty((n_seeds, len(ns), 4)), np.empty((n_seeds, len(ns), 10))
    nd = np.empty((n_seeds, len(ns)), dtype=np.int32)
    gen = np.random.Generator(np.random.SFC64(0))
    a_hat, acc = np.empty((1, n)), np.empty((1, n, 2))
    rho, binary = np.empty(1), np.empty(1, dtype=bool)
    t = {"q (sampler_q: N q)": 0.0, "tables (records and guide)": 0.0, "draws (guide-table search)": 0.0,
         "sums (prefix sums, products, distinct)": 0.0}
    keys = list(t)
    for rep in range(2):
        if rep:
            t.update(dict.fromkeys(t, 0.0))
        for p in range(len(cols)):
            _sampling._k_prepare(a_ch[p : p + 1], c_ch[p : p + 1], a_hat, acc, rho, binary)
            u = gen.random(n_seeds * nmax)
            t0 = time.process_time()
            nq = _sampling.sampler_q(spec, a_hat, g_ch[p : p + 1], axis=1, scale=n)
            t1 = time.process_time()
            _sampling._k_row_tables(nq[0], acc.reshape(-1), 0, True, True, work.rec, work.guide, work.wtmp)
            t2 = time.process_time()
            _rows_draws(u, _sampling._scale_below(n), work.rec, work.guide, flat)
            t3 = time.process_time()
            _rows_sums(flat, work.rec, acc.reshape(-1), ns, sums, sq, nd, work.mark)
            t4 = time.process_time()
            for k, dt in zip(keys, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                t[k] += dt
    total = sum(t.values())
    print(f"  {spec['name']} split into its steps ({n_seeds} x {nmax} = {n_seeds * nmax:,} draws per pair, N = {n:,}):")
    for k, v in t.items():
        print(f"    {k:43s} {v / len(cols) * 1e3:6.3f} ms  ({v / total:5.1%})")


def profile_stages(acts, c, guide, n_pairs: int = 64, n_seeds: int = 30) -> None:
    """Where the grid's time goes: CPU time per pair of each step of ``sampling._k_grid_chunk`` (the
    compiled loop over a chunk's pairs), the same kernels called one at a time on one thread (chunks of
    32 pairs, their columns copied as the grid copies them)."""
    ns = np.asarray(DEFAULT_NS)
    nmax, n = int(ns[-1]), acts.shape[0]
    specs = [_sampling._sampler_spec(s) for s in DEFAULT_SAMPLERS]
    t = dict.fromkeys(["columns (3 matrices, float32)", "standardise, exact rho, moment table", "uniforms (SFC64)",
                       *(f"{s['name']}: q, tables, draws, sums" for s in specs), "estimates and SE"], 0.0)
    keys = list(t)

    def timed(key, f, *a, **k):
        c0 = time.process_time()
        out = f(*a, **k)
        t[key] += time.process_time() - c0
        return out

    work = _sampling._Workspace(n)
    a_hat, acc = np.empty((1, n)), np.empty((1, n), dtype=np.complex128)
    acc3 = acc.view(np.float64).reshape(1, n, 2)
    u, nq, scale = np.empty(n_seeds * nmax), work.nq_buffer(1), _sampling._scale_below(n)
    flat = work.flat_buffer(n_seeds, nmax)
    for rep in range(2):  # the first pass compiles / loads the kernels
        if rep:
            t.update(dict.fromkeys(t, 0.0))
        for c0 in range(0, n_pairs, 32):
            cols = np.arange(c0, min(c0 + 32, n_pairs))
            a_ch = timed(keys[0], _sampling._pair_columns, acts, cols, dtype=None)
            c_ch = timed(keys[0], _sampling._pair_columns, c, cols, dtype=None)
            g_ch = timed(keys[0], _sampling._pair_columns, guide, cols, dtype=None)
            sfc = _sampling._sfc64_state(np.random.SeedSequence(c0))
            sums = np.empty((len(specs), len(cols) * n_seeds, len(ns), 4))
            sq = np.empty((len(specs), len(cols) * n_seeds, len(ns), 10))
            nd = np.empty((len(specs), len(cols) * n_seeds, len(ns)), dtype=np.int32)
            rho, binary = np.empty(len(cols)), np.empty(len(cols), dtype=bool)
            for p in range(len(cols)):
                sl, r0, r1 = slice(p, p + 1), p * n_seeds, (p + 1) * n_seeds
                timed(keys[1], _sampling._k_prepare, a_ch[sl], c_ch[sl], a_hat, acc3, rho[sl], binary[sl])
                timed(keys[2], _sampling._k_sfc64_uniforms, sfc, u)
                for i, spec in enumerate(specs):
                    c1 = time.process_time()
                    q = nq[:0] if spec["name"] == "uniform" else _sampling.sampler_q(spec, a_hat, g_ch[sl], axis=1,
                                                                                       scale=n, out=nq)
                    _sampling._k_engine(1, q, u, scale, n_seeds, acc3.reshape(-1), _sampling._EMPTY, ns, True, flat,
                                        sums[i, r0:r1], sq[i, r0:r1], nd[i, r0:r1], work.rec, work.guide, work.mark,
                                        work.wtmp)
                    t[keys[3 + i]] += time.process_time() - c1
            for i in range(len(specs)):
                timed(keys[-1], _sampling.estimates_from_sums, sums[i], sq[i], ns, "unbiased")
    total = sum(t.values())
    print(f"\nwhere the time goes (one thread, CPU ms per pair over {n_pairs} pairs; the output frame is not included):")
    for k, v in t.items():
        print(f"  {k:45s} {v / n_pairs * 1e3:6.3f} ms  ({v / total:5.1%})")
    print(f"  {'total':45s} {total / n_pairs * 1e3:6.3f} ms")
    for spec in specs[1:]:
        profile_is_sampler(acts, c, guide, spec, n_pairs=n_pairs, n_seeds=n_seeds)


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
    ap.add_argument("--profile", action="store_true", help="also time the grid's stages one by one (one thread)")
    args = ap.parse_args()
    k = args.neurons or (64 if args.quick else 2048)
    n, seeds = args.inputs, range(args.seeds)
    acts, c, guide = synthetic(n, k)
    act_mb = acts.nbytes / 2**20
    print(f"inputs N={n}, neurons K={k}, ns={list(DEFAULT_NS)}, seeds={args.seeds}, samplers={len(DEFAULT_SAMPLERS)}")
    print(f"activation matrix: {act_mb:.0f} MiB ({acts.dtype}); c_true and c_guide the same size each")

    print(f"load average before the grid (shared machine): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    n_thr = args.threads or min(2, os.cpu_count() or 1)
    print(f"threads: library {n_thr} (chunks of {args.chunk_size} pairs in a thread pool), baseline {n_thr} "
          "(pairs in a thread pool)")
    grid_kw = dict(seeds=seeds, rng=0, n_threads=n_thr, chunk_size=args.chunk_size)
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

    if args.profile:
        profile_stages(acts, c, guide, n_pairs=min(64, k), n_seeds=args.seeds)

    s = summarise_rce(df, floor=0.05)
    print("\nmean RCE (|rho| >= 0.05) at n = 180:")
    print(s[s.n == 180].to_string(index=False))
    cov = coverage_table(df)
    print("\ncoverage of the 95% intervals (share containing the exact rho; degenerate samples count as misses):")
    print(cov[cov.n.isin([25, 100, 180, 400])].to_string(index=False))


if __name__ == "__main__":
    main()
