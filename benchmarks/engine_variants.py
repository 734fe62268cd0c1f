"""Two variants of the draw engine's per-pair work that were measured and not adopted (docs/evaluation.md,
"What was tried"): each against the engine's own kernels on the same pairs and uniforms, in one process,
with identical draws, sums and distinct counts (asserted).

* fused: one loop per row that searches a batch of draws, gathers their terms and sums them before the
  next batch (instead of a draw loop over the row, then a sum loop);
* compact z: the CDF alone (8 bytes per input, L2-resident) for the batched search, w from a vectorised
  1 / (N q) pass and the terms from the shared moment table in the sum loop (instead of one 32-byte
  record per input).

    PYTHONPATH=src python benchmarks/engine_variants.py
"""

import time
from types import SimpleNamespace

import numba
import numpy as np
from bench_eval import _rows_draws, _rows_sums, synthetic

from neuronaudit import sampling as S
from neuronaudit.sampling import DEFAULT_NS, DEFAULT_SAMPLERS

_U = np.uint64
J = dict(nogil=True, error_model="numpy")


@numba.njit(**J)
def write_segment(s, q, nd_out, b, s0, s1, s2, q00, q01, q02, q11, cnt):
    """One sample size's sums, products and distinct count, binary c, in the engine's layout (t2 = w c
    is w or 0: c^2 = c, t1 t2 = w t1, t2 t2 = w t2)."""
    s[0], s[1], s[2], s[3] = s0, s1, s2, s2
    q[0], q[1], q[2], q[3], q[4] = q00, q01, q02, q02, q11
    q[5], q[6], q[7], q[8], q[9] = q01, q01, q02, q02, q02
    nd_out[b] = cnt


@numba.njit(**J)
def k_row_draw_sums(
    u, d0, scale, weighted, rec, guide, base, out, acc, cc, second, ends, s_out, q_out, nd_out, mark
):
    """One row: each batch of draws is searched as the engine searches it (guide entries, two branch-free
    steps, the rare longer searches), its terms gathered from the records it has just read, and summed
    before the next batch; binary c (as the engine: q12 = q01, q22 = q02)."""
    ub = _U(base)
    ud = _U(d0)
    B = S._DRAW_BATCH
    s0 = s1 = s2 = 0.0
    q00 = q01 = q02 = q11 = 0.0
    cnt = 0
    b = 0
    nt = out.shape[0]
    xs = np.empty(B)
    ps = np.empty(B, dtype=np.uint64)
    bw = np.empty(B)
    b1 = np.empty(B)
    b2 = np.empty(B)
    for t0 in range(0, nt, B):
        m = min(B, nt - t0)
        for j in range(m):
            x = u[ud + _U(t0 + j)] * scale
            xs[j] = x
            ps[j] = _U(guide[_U(int(x))]) if weighted else _U(x)
        if weighted:
            for j in range(m):
                ps[j] += _U(rec[_U(4) * ps[j]] <= xs[j])
            for j in range(m):
                ps[j] += _U(rec[_U(4) * ps[j]] <= xs[j])
        for j in range(m):
            pos = ps[j]
            if weighted:
                while rec[_U(4) * pos] <= xs[j]:
                    pos += _U(1)
                ps[j] = pos
                k = _U(4) * pos
                bw[j] = rec[k + _U(1)]
                b1[j] = rec[k + _U(2)]
                b2[j] = rec[k + _U(3)]
            else:
                bw[j] = 1.0
                b1[j] = acc[_U(2) * (ub + pos)]
                b2[j] = acc[_U(2) * (ub + pos) + _U(1)]
            out[t0 + j] = ub + pos
        for j in range(m):
            pos = ps[j]
            wi = bw[j]
            t1 = b1[j]
            t2 = b2[j]
            s0 += wi
            s1 += t1
            s2 += t2
            q00 += wi * wi
            q01 += wi * t1
            q02 += wi * t2
            q11 += t1 * t1
            cnt += 1 - np.intp(mark[pos])
            mark[pos] = 1
            if t0 + j + 1 == ends[b]:
                write_segment(s_out[b], q_out[b], nd_out, b, s0, s1, s2, q00, q01, q02, q11, cnt)
                b += 1
    for t in range(nt):
        mark[_U(out[t]) - ub] = 0


@numba.njit(**J)
def rows_fused(u, scale, weighted, rec, guide, flat, acc, ends, sums, sq, nd, mark):
    mark[:] = 0  # the engine leaves its row stamps in the shared marks; this variant clears its own
    for row in range(flat.shape[0]):
        k_row_draw_sums(
            u,
            row * flat.shape[1],
            scale,
            weighted,
            rec,
            guide,
            0,
            flat[row],
            acc,
            acc[:0],
            True,
            ends,
            sums[row],
            sq[row],
            nd[row],
            mark,
        )


@numba.njit(**J)
def rows_old_uniform(u, scale, rec, guide, flat, acc, ends, sums, sq, nd, mark):
    mark[:] = 0
    for row in range(flat.shape[0]):
        S._k_row_draws(u, row * flat.shape[1], scale, False, rec, guide, 0, flat[row])
        S._k_row_sums(flat[row], 0, False, rec, acc, acc[:0], True, ends, sums[row], sq[row], nd[row], mark,
                      np.uint8(row + 1))


@numba.njit(**J)
def tables_b(nq_row, zarr, guide, wtmp):
    n = nq_row.shape[0]
    for i in range(n):
        wtmp[i] = 1.0 / nq_row[i]
    guide[:] = 0
    z = 0.0
    for i in range(n - 1):
        z += nq_row[i]
        zarr[i] = z
        guide[_U(min(int(z) + 1, n))] = i + 1
    zarr[n - 1] = np.inf
    S._k_running_max(guide, n)


@numba.njit(**J)
def draws_b(u, d0, scale, zarr, guide, out):  # the engine's batched search, on the compact CDF
    ud = _U(d0)
    B = S._DRAW_BATCH
    nt = out.shape[0]
    xs = np.empty(B)
    ps = np.empty(B, dtype=np.uint64)
    for t0 in range(0, nt, B):
        m = min(B, nt - t0)
        for j in range(m):
            x = u[ud + _U(t0 + j)] * scale
            xs[j] = x
            ps[j] = _U(guide[_U(int(x))])
        for j in range(m):
            ps[j] += _U(zarr[ps[j]] <= xs[j])
        for j in range(m):
            ps[j] += _U(zarr[ps[j]] <= xs[j])
        for j in range(m):
            pos = ps[j]
            while zarr[pos] <= xs[j]:
                pos += _U(1)
            out[t0 + j] = pos


@numba.njit(**J)
def sums_b(fl, wtmp, acc, ends, s_out, q_out, nd_out, mark):
    s0 = s1 = s2 = 0.0
    q00 = q01 = q02 = q11 = 0.0
    cnt = 0
    b = 0
    for t in range(fl.shape[0]):
        pos = _U(fl[t])
        wi = wtmp[pos]
        t1 = wi * acc[_U(2) * pos]
        t2 = wi * acc[_U(2) * pos + _U(1)]
        s0 += wi
        s1 += t1
        s2 += t2
        q00 += wi * wi
        q01 += wi * t1
        q02 += wi * t2
        q11 += t1 * t1
        cnt += 1 - np.intp(mark[pos])
        mark[pos] = 1
        if t + 1 == ends[b]:
            write_segment(s_out[b], q_out[b], nd_out, b, s0, s1, s2, q00, q01, q02, q11, cnt)
            b += 1
    for t in range(fl.shape[0]):
        mark[_U(fl[t])] = 0


@numba.njit(**J)
def rows_b(u, scale, nq_row, zarr, guide, wtmp, flat, acc, ends, sums, sq, nd, mark):
    mark[:] = 0
    tables_b(nq_row, zarr, guide, wtmp)
    for row in range(flat.shape[0]):
        draws_b(u, row * flat.shape[1], scale, zarr, guide, flat[row])
        sums_b(flat[row], wtmp, acc, ends, sums[row], sq[row], nd[row], mark)


@numba.njit(**J)
def rows_a(u, scale, nq_row, rec, guide, wtmp, flat, acc, ends, sums, sq, nd, mark):
    S._k_row_tables(nq_row, acc, 0, True, True, rec, guide, wtmp)
    mark[:] = 0
    for row in range(flat.shape[0]):
        S._k_row_draws(u, row * flat.shape[1], scale, True, rec, guide, 0, flat[row])
        S._k_row_sums(flat[row], 0, True, rec, acc, acc[:0], True, ends, sums[row], sq[row], nd[row], mark,
                      np.uint8(row + 1))


def _compare(specs, run_old, run_new, before=None, n_pairs=64, n_seeds=30, reps=3):
    """Time ``run_old(ctx, out)`` and ``run_new(ctx, out)`` on the same pairs, samplers and uniforms, one
    process, one thread; ``before(ctx)`` runs untimed first. Outputs (draws, sums, products, distinct
    counts) must be identical (asserted on the first repetition, which also compiles and is not counted).
    Returns {sampler: (old s, new s)} summed over the other repetitions."""
    acts, c, guide = synthetic(50_000, n_pairs)
    ns = np.asarray(DEFAULT_NS)
    nmax, n = int(ns[-1]), acts.shape[0]
    cols = np.arange(n_pairs)
    a_ch, c_ch, g_ch = (S._pair_columns(m, cols, dtype=None) for m in (acts, c, guide))
    ctx = SimpleNamespace(ns=ns, n=n, scale=S._scale_below(n), work=S._Workspace(n), zarr=np.empty(n))
    a_hat, acc = np.empty((1, n)), np.empty((1, n, 2))
    rho, binary = np.empty(1), np.empty(1, dtype=bool)
    gen = np.random.Generator(np.random.SFC64(0))

    def outputs():
        return SimpleNamespace(flat=np.empty((n_seeds, nmax), dtype=np.intp), sums=np.zeros((n_seeds, len(ns), 4)),
                               sq=np.zeros((n_seeds, len(ns), 10)), nd=np.zeros((n_seeds, len(ns)), np.int32))

    times = {}
    for rep in range(reps):
        for p in range(n_pairs):
            S._k_prepare(a_ch[p : p + 1], c_ch[p : p + 1], a_hat, acc, rho, binary)
            ctx.u, ctx.acc = gen.random(n_seeds * nmax), acc.reshape(-1)
            for spec in specs:
                ctx.weighted = spec["name"] != "uniform"
                ctx.nq = S.sampler_q(spec, a_hat, g_ch[p : p + 1], axis=1, scale=n)[0] if ctx.weighted else None
                old, new = outputs(), outputs()
                if before is not None:
                    before(ctx)
                t0 = time.process_time()
                run_old(ctx, old)
                t1 = time.process_time()
                run_new(ctx, new)
                t2 = time.process_time()
                if rep == 0:
                    assert all((getattr(old, k) == getattr(new, k)).all() for k in ("flat", "sums", "sq", "nd"))
                else:
                    t = times.setdefault(spec["name"], [0.0, 0.0])
                    t[0] += t1 - t0
                    t[1] += t2 - t1
    return {k: (a / (reps - 1) / n_pairs * 1e3, b / (reps - 1) / n_pairs * 1e3) for k, (a, b) in times.items()}


def fused_loop():
    """Draws and sums only (the tables are built before the clock starts)."""

    def tables(ctx):
        if ctx.weighted:
            S._k_row_tables(ctx.nq, ctx.acc, 0, True, True, ctx.work.rec, ctx.work.guide, ctx.work.wtmp)

    def old(ctx, o):
        w = ctx.work
        if ctx.weighted:
            _rows_draws(ctx.u, ctx.scale, w.rec, w.guide, o.flat)
            _rows_sums(o.flat, w.rec, ctx.acc, ctx.ns, o.sums, o.sq, o.nd, w.mark)
        else:
            rows_old_uniform(ctx.u, ctx.scale, w.rec, w.guide, o.flat, ctx.acc, ctx.ns, o.sums, o.sq, o.nd, w.mark)

    def new(ctx, o):
        w = ctx.work
        rows_fused(ctx.u, ctx.scale, ctx.weighted, w.rec, w.guide, o.flat, ctx.acc, ctx.ns, o.sums, o.sq, o.nd, w.mark)

    specs = [S._sampler_spec(s) for s in DEFAULT_SAMPLERS]
    for k, (a, b) in _compare(specs, old, new, before=tables).items():
        print(f"{k:8s} old {a:.3f} ms/pair  fused {b:.3f} ms/pair  ratio {a / b:.2f}")


def compact_z():
    """Tables, draws and sums of the two IS samplers."""

    def old(ctx, o):
        w = ctx.work
        rows_a(ctx.u, ctx.scale, ctx.nq, w.rec, w.guide, w.wtmp, o.flat, ctx.acc, ctx.ns, o.sums, o.sq, o.nd, w.mark)

    def new(ctx, o):
        w = ctx.work
        rows_b(ctx.u, ctx.scale, ctx.nq, ctx.zarr, w.guide, w.wtmp, o.flat, ctx.acc, ctx.ns, o.sums, o.sq, o.nd, w.mark)

    specs = [S._sampler_spec(s) for s in DEFAULT_SAMPLERS][1:]
    for k, (a, b) in _compare(specs, old, new).items():
        print(f"{k:8s} tables+draws+sums: records {a:.3f}  compact z {b:.3f} ms/pair  ratio {a / b:.2f}")


if __name__ == "__main__":
    print("fused draw-and-sum loop against the engine's two loops (draws and sums only, tables built before):")
    fused_loop()
    print("compact CDF + moment table against per-input records (tables, draws and sums):")
    compact_z()
