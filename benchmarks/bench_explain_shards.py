"""Memory of LE over a large vocabulary, unsharded and per shard (issue 12, item 4; docs/explain_stage.md).

LE on N images x C concepts x K neurons through the explain stage's tiling: the whole layer in one
call (as before tiling), the layer tile by tile as an unsharded explain job runs it (``_run_tiles``:
LE's presence-only setup done once for all tiles), the same tiles as separate calls (the setup
repeated per tile, as before it was shared) and one shard's tiles (shard 1 of ``--shards``). Peak
traced allocations (tracemalloc) beyond the inputs, and CPU seconds. The FISTA preselection is capped at ``--iters`` steps: memory does not depend on the
number of steps, time does.

    python benchmarks/bench_explain_shards.py [--n 10000] [--c 20000] [--k 1280] [--shards 5] [--iters 3]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from neuronaudit.explainers.registry import ExplainInputs, get_explainer
from neuronaudit.explainers.stage import TILE_NEURONS, _run_tiles, generate


def run(x, acts, names, cols_list, iters, shared):
    """LE on the neurons of each ``cols_list`` item, by separate calls, or (``shared``) as the explain
    stage's ``_run_tiles`` runs the tiles of one job (``cols_list`` = ranges of tiles)."""
    entry = {"method": "le", "params": {"glm_iters": iters}}
    tracemalloc.start()
    t = time.process_time()
    rows = 0
    if shared:
        data = ExplainInputs(method="le", entry=entry, activations=acts, presence=x, concepts=names)
        tiles = [(int(c[0]), int(c[-1]) + 1) for c in cols_list]
        rows = len(_run_tiles(get_explainer("le"), data, tiles, np.arange(acts.shape[1]), "le"))
    else:
        for cols in cols_list:
            rows += len(generate("le", entry, acts[:, cols], presence=x, concepts=names))
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
    cases = [("whole layer in one call (untiled)", [np.arange(args.k)], False),
             ("unsharded explain job (every tile)", tiles, True),
             ("every tile, setup repeated per tile", tiles, False),
             (f"one shard of {args.shards} (tiles 1, {1 + args.shards}, ...)", tiles[:: args.shards], True)]
    for label, cols, shared in cases:
        peak, cpu, rows = run(x, acts, names, cols, args.iters, shared)
        print(f"  {label:<42}: peak {peak / gib:5.2f} GiB beyond the inputs, {cpu:6.1f} s CPU, {rows:,} neurons",
              flush=True)


if __name__ == "__main__":
    main()
