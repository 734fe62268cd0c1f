"""Memory of LE over a large vocabulary, unsharded and per shard (issue 12, item 4; docs/explain_stage.md).

LE on N images x C concepts x K neurons through the explain stage's tiling: the whole layer in one
call (as before tiling), the layer tile by tile (what an unsharded explain job does now) and one
shard's tiles (shard 1 of ``--shards``). Peak traced allocations (tracemalloc) beyond the inputs, and
CPU seconds. The FISTA preselection is capped at ``--iters`` steps: memory does not depend on the
number of steps, time does.

    python benchmarks/bench_explain_shards.py [--n 10000] [--c 20000] [--k 1280] [--shards 5] [--iters 3]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from neuronaudit.explainers.stage import TILE_NEURONS, generate


def run(x, acts, names, cols_list, iters):
    tracemalloc.start()
    t = time.process_time()
    rows = 0
    for cols in cols_list:
        rows += len(generate("le", {"method": "le", "params": {"glm_iters": iters}}, acts[:, cols], presence=x,
                             concepts=names))
    cpu = time.process_time() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, cpu, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--c", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=1280)
    ap.add_argument("--shards", type=int, default=5)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.beta(0.3, 1.5, size=(args.n, args.c)).astype(np.float32)
    w = rng.normal(size=(args.c, args.k)) * (rng.random((args.c, args.k)) < 0.001)
    acts = (x @ w + 0.5 * rng.normal(size=(args.n, args.k))).astype(np.float32)
    names = [f"c{i}" for i in range(args.c)]
    gib = 2**30
    print(f"LE N={args.n:,} C={args.c:,} K={args.k:,}, inputs {(x.nbytes + acts.nbytes) / gib:.2f} GiB, "
          f"FISTA capped at {args.iters} steps, tiles of {TILE_NEURONS} neurons")
    tiles = [np.arange(a, min(a + TILE_NEURONS, args.k)) for a in range(0, args.k, TILE_NEURONS)]
    cases = [("whole layer in one call (untiled)", [np.arange(args.k)]),
             ("unsharded explain job (every tile)", tiles),
             (f"one shard of {args.shards} (tiles 1, {1 + args.shards}, ...)", tiles[:: args.shards])]
    for label, cols in cases:
        peak, cpu, rows = run(x, acts, names, cols, args.iters)
        print(f"  {label:<42}: peak {peak / gib:5.2f} GiB beyond the inputs, {cpu:6.1f} s CPU, {rows:,} neurons",
              flush=True)


if __name__ == "__main__":
    main()
