"""Explanation methods against the peers' published algorithms, same inputs, same threads, one process.

    python benchmarks/bench_explainers.py            # the sizes of issue 8 (~5 minutes on 2 cores)
    python benchmarks/bench_explainers.py --quick    # small sizes, under a minute
    python benchmarks/bench_explainers.py --clip-only  # the CLIP-Dissect comparison alone (~1 minute)

* CLIP-Dissect (N = 10,000 images, C = 20,000 concepts, K = 1,280 neurons): ``soft_wpmi`` against
  ``peers/clip_dissect_peer.py`` (the peer's per-neuron torch loop with its one-off softmax), timed
  alternately ``--repeats`` times (5); best-of and median ratios of wall and of CPU time, with the load
  average; output checked identical (same best concept, scores equal).
* LE end to end (N = 10,000, C = 60, K = 1,280; rows split train / val / held-out test): ours on all K
  against ``peers/le_peer.py`` (GLM-SAGA preselection per batch of 128 neurons, Adam greedy search per
  neuron). The peer is run on one preselection batch (128 neurons) and the greedy search on
  ``--le-peer-neurons`` neurons and extrapolated linearly to K (both are per-batch / per-neuron loops
  whose cost does not depend on the other neurons). Quality: mean correlation of the explanations'
  predictions with the activations on the held-out test rows, on the neurons both explained.
* LE with a 20,000-concept vocabulary: time and peak traced memory (tracemalloc) of
  ``linear_explanations`` at N = 10,000, C = 20,000, K = ``--le-big-neurons`` (16), with the FISTA
  preselection capped at ``--le-big-iters`` (100) steps to keep ``make bench`` short: at C > N the
  preselection converges slowly (about 0.5 s per step on 2 cores at this size) and memory does not
  depend on the number of steps.
* INVERT (no peer re-implementation here; absolute times for context).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np
import torch
from peers.clip_dissect_peer import peer_soft_wpmi
from peers.le_peer import concept_filter, greedy_search, peer_preselect

from neuronaudit.explainers.clip_dissect import soft_wpmi
from neuronaudit.explainers.invert import invert
from neuronaudit.explainers.linear import linear_explanations, random_split


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def timed_cpu(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process: all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_clip_dissect(n, c, k, repeats, rng):
    """Ours against the peer algorithm, alternated ``repeats`` times in this process (the machine may be
    shared): best-of and median ratios of wall time, and of CPU time (all threads of this process), which
    other processes on the machine disturb less; the load average before and after."""
    sim = (0.2 + 0.03 * rng.standard_normal((n, c), dtype=np.float32)).astype(np.float32)
    acts = rng.standard_normal((n, k), dtype=np.float32)
    soft_wpmi(sim[:200, :256], acts[:200, :4])  # compile (or load) the numba kernels outside the timing
    load0 = os.getloadavg()[0]
    t_ours, t_peer, c_ours, c_peer = [], [], [], []
    for _ in range(repeats):
        peer, dt, dc = timed_cpu(peer_soft_wpmi, sim, acts)
        t_peer.append(dt)
        c_peer.append(dc)
        ours, dt, dc = timed_cpu(soft_wpmi, sim, acts)
        t_ours.append(dt)
        c_ours.append(dc)
    load1 = os.getloadavg()[0]
    peer = peer.numpy()
    same_best = bool(np.array_equal(ours.argmax(1), peer.argmax(1)))
    identical = bool(np.array_equal(ours, peer))
    best = min(t_peer) / min(t_ours)
    med = float(np.median(t_peer) / np.median(t_ours))
    print(f"CLIP-Dissect N={n:,} C={c:,} K={k:,} ({repeats} alternated runs; load average {load0:.1f} -> "
          f"{load1:.1f} on {os.cpu_count()} cores):")
    print(f"  wall: ours best {min(t_ours):.2f} s / median {np.median(t_ours):.2f} s, peer algorithm best "
          f"{min(t_peer):.2f} s / median {np.median(t_peer):.2f} s -> ours is {best:.1f}x the peer (best-of), "
          f"{med:.1f}x (median)")
    print(f"  CPU time: ours best {min(c_ours):.2f} s / median {np.median(c_ours):.2f} s, peer best "
          f"{min(c_peer):.2f} s / median {np.median(c_peer):.2f} s -> {min(c_peer) / min(c_ours):.1f}x (best-of), "
          f"{np.median(c_peer) / np.median(c_ours):.1f}x (median)")
    print(f"  same best concept for every neuron: {same_best}; scores bit-identical: {identical}")
    return best, med


def _le_data(n, c, k, rng):
    x = rng.beta(0.3, 1.5, size=(n, c)).astype(np.float32)
    w = rng.normal(size=(c, k)) * (rng.random((c, k)) < 0.1)
    acts = (x @ w + 0.5 * rng.normal(size=(n, k))).astype(np.float32)
    perm = rng.permutation(n)
    test, rest = np.sort(perm[: n // 5]), np.sort(perm[n // 5 :])
    tr_r, va_r = random_split(len(rest))
    return x, acts, rest[tr_r], rest[va_r], test


def _test_corr(x, y, concept_ids, weights, bias):
    pred = x[:, concept_ids].astype(np.float64) @ np.asarray(weights, dtype=np.float64) + bias
    return np.corrcoef(pred, y)[0, 1] if pred.std() > 0 else 0.0


def bench_linear(n, c, k, n_peer, rng):
    x, acts, tr, va, test = _le_data(n, c, k, rng)
    names = [f"c{i}" for i in range(c)]
    index = {nm: i for i, nm in enumerate(names)}
    ours, t_ours = timed(linear_explanations, x, acts, names, train_idx=tr, val_idx=va)
    # the peer: preselection on one batch of 128 neurons, greedy search on n_peer neurons
    torch.manual_seed(0)
    xt, yt = torch.as_tensor(x), torch.as_tensor(acts)
    keep = concept_filter(xt)
    cols = torch.nonzero(keep)[:, 0].numpy()
    xk = xt[:, keep]
    batch = list(range(min(128, k)))
    (ranking, epochs), t_pre = timed(peer_preselect, xk, yt, torch.as_tensor(tr), batch)
    t0 = time.perf_counter()
    peer = []
    for j in range(n_peer):
        sel, w, b, _ = greedy_search(xk[tr], xk[va], yt[tr, j : j + 1], yt[va, j : j + 1], ranking[j])
        peer.append((cols[sel], w, b))
    t_greedy = time.perf_counter() - t0
    t_peer = t_pre * k / len(batch) + t_greedy * k / n_peer
    q_peer = np.mean([_test_corr(x[test], acts[test, j], *peer[j]) for j in range(n_peer)])
    q_ours_sub = np.mean([_test_corr(x[test], acts[test, j], [index[t[1]] for t in d["terms"]],
                                     [t[0] for t in d["terms"]], d["bias"]) for j, d in enumerate(ours[:n_peer])])
    q_ours = np.mean([_test_corr(x[test], acts[test, j], [index[t[1]] for t in d["terms"]],
                                 [t[0] for t in d["terms"]], d["bias"]) for j, d in enumerate(ours)])
    len_o = np.mean([len(d["terms"]) for d in ours[:n_peer]])
    len_p = np.mean([len(p[0]) for p in peer])
    print(f"LE N={n:,} C={c} K={k:,} end to end: ours {t_ours:.2f} s for all {k:,} neurons; peer algorithm "
          f"{t_peer:.0f} s extrapolated (GLM-SAGA {t_pre:.1f} s per batch of {len(batch)} neurons, {epochs[0]} "
          f"epochs; greedy {t_greedy / n_peer:.2f} s per neuron, measured on {n_peer}) -> ours is "
          f"{t_peer / t_ours:.0f}x the peer")
    print(f"  quality, mean held-out test correlation on the {n_peer} neurons both explained: ours "
          f"{q_ours_sub:.3f} (mean length {len_o:.1f}), peer {q_peer:.3f} (mean length {len_p:.1f}); "
          f"ours on all {k:,}: {q_ours:.3f}")
    return t_peer / t_ours, q_ours_sub, q_peer


def bench_linear_big(n, c, k, rng, glm_iters=500):
    x = rng.beta(0.3, 1.5, size=(n, c)).astype(np.float32)
    w = rng.normal(size=(c, k)) * (rng.random((c, k)) < 0.001)
    acts = (x @ w + 0.5 * rng.normal(size=(n, k))).astype(np.float32)
    names = [f"c{i}" for i in range(c)]
    tr, va = random_split(n)
    inputs_mb = (x.nbytes + acts.nbytes) / 2**20
    tracemalloc.start()
    res, dt = timed(linear_explanations, x, acts, names, train_idx=tr, val_idx=va, glm_iters=glm_iters)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"LE N={n:,} C={c:,} K={k} (FISTA capped at {glm_iters} steps): {dt:.1f} s, peak traced allocations {peak / 2**30:.2f} GiB beyond the "
          f"{inputs_mb / 1024:.2f} GiB inputs (limit 4 GB; the C x C float64 Gram and moment matrices alone "
          f"would need {8 * c * c / 1e9:.1f} GB each), mean length {np.mean([len(d['terms']) for d in res]):.1f}")
    return peak


def bench_invert(n, c, k, rng):
    labels = rng.integers(0, c, size=n)
    lab = np.zeros((n, c), dtype=bool)
    lab[np.arange(n), labels] = True
    acts = rng.standard_normal((n, k)).astype(np.float32)
    names = [f"class{i}" for i in range(c)]
    _, t1 = timed(invert, lab, acts, names, length=1)
    _, t3 = timed(invert, lab, acts, names, length=3)
    print(f"INVERT  N={n} C={c} K={k} one-hot labels: l=1 {t1:.1f} s, l=3 (beam 10) {t3:.1f} s (no peer; context)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="alternated CLIP-Dissect runs (ours, peer)")
    ap.add_argument("--clip-only", action="store_true", help="only the CLIP-Dissect comparison (about a minute)")
    ap.add_argument("--le-peer-neurons", type=int, default=8)
    ap.add_argument("--le-big-neurons", type=int, default=16)
    ap.add_argument("--le-big-iters", type=int, default=100, help="FISTA step cap at C = 20,000 (time only)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"torch threads: {torch.get_num_threads()} (ours and the peers alike)")
    if args.quick:
        bench_clip_dissect(2000, 2000, 128, min(args.repeats, 3), rng)
        bench_linear(2000, 60, 128, 4, rng)
        bench_linear_big(2000, 4000, 8, rng)
        bench_invert(2000, 100, 64, rng)
        return
    ratio, ratio_med = bench_clip_dissect(10_000, 20_000, 1280, args.repeats, rng)
    if args.clip_only:
        return
    le_ratio, q_o, q_p = bench_linear(10_000, 60, 1280, args.le_peer_neurons, rng)
    peak = bench_linear_big(10_000, 20_000, args.le_big_neurons, rng, args.le_big_iters)
    bench_invert(10_000, 1000, 256, rng)
    print("\ntargets (issue 8):")
    print(f"  CLIP-Dissect >= 3x the peer algorithm: {ratio:.1f}x best of, {ratio_med:.1f}x median -> "
          f"{'ok' if min(ratio, ratio_med) >= 3 else 'MISSED'}")
    print(f"  LE at C = 20,000 within 4 GB: peak {peak / 1e9:.2f} GB -> {'ok' if peak < 4e9 else 'MISSED'}")
    print(f"  LE vs the peer at equal quality: {le_ratio:.0f}x, held-out corr ours {q_o:.3f} vs peer {q_p:.3f}")


if __name__ == "__main__":
    main()
