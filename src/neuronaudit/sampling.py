"""Estimating the correlation score from a few sampled inputs (SPEC sec. 3; seed 001 B.1, B.3, C.5).

Activations are known on every input, so they are standardised with population statistics,
a_hat = (a - mean_D a) / std_D a, and the score is

    rho = E_p[a_hat c] / sqrt(E_p[c^2] - E_p[c]^2)                     (SPEC sec. 3)

(c^2 = c for binary c; soft c in [0, 1] uses its own square). Inputs x_1..x_n are drawn i.i.d. from
q, with importance weights w_i = p(x_i) / q(x_i) = 1 / (N q(x_i)), and every expectation E_p[h] is
estimated either

    unbiased         (1/n) sum_i w_i h(x_i)                             (seed 001 Theorem 1, C.5)
    self-normalised  sum_i w_i h(x_i) / sum_i w_i

Samplers (each a distribution q over the N inputs, one per (neuron, concept) pair):

    uniform  q = p = 1/N
    MG-IS    q = (1 - gamma) q_model + gamma p,  q_model ∝ |a_hat| c_hat   (gamma = 0.2; seed 001 B.1)
    AG-IS    q = (1 - gamma) q_act + gamma p,    q_act ∝ |a_hat|^alpha     (alpha = 2; seed 001 eqs. 16-17)

MG-IS approximates the variance-optimal q ∝ |h| p with h = a_hat c (seed 001 eq. 32), using the
concept model's estimate c_hat for the unknown c.

Cost: duplicate draws are rated once and reused, so the cost of a sample is its number of distinct
inputs (``n_distinct``).

RCE = |rho_hat - rho| / |rho|, averaged over pairs and seeds, excluding pairs with |rho| < floor
(default 0.05) and reporting how many were excluded (``summarise_rce``).

``PairDraws`` is the one draw engine of Setting 1 and Setting 2: for a block of pairs it builds q
(``sampler_q``), draws max(ns) inputs per (pair, seed) with prefixes reused across sample sizes,
de-duplicates, weights and estimates (unbiased and self-normalised). ``sampling_grid`` is the
vectorised Setting 1 path built on it (see its docstring and docs/evaluation.md for the design);
``sampling_grid_loop`` is the straightforward per-pair reference it is benchmarked against.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from neuronaudit.scoring import standardise

__all__ = [
    "DEFAULT_NS",
    "DEFAULT_SAMPLERS",
    "standardise_activations",
    "mg_is_q",
    "ag_is_q",
    "sampler_q",
    "sampler_label",
    "check_q",
    "importance_weights",
    "draw_samples",
    "estimate_moments",
    "estimate_rho",
    "exact_rho",
    "relative_corr_error",
    "moment_table",
    "DistinctInputs",
    "PairDraws",
    "estimates_from_sums",
    "sampling_grid",
    "sampling_grid_loop",
    "summarise_rce",
]

DEFAULT_NS = (25, 50, 100, 180, 200, 400, 800, 1600)
DEFAULT_SAMPLERS = ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2}, {"name": "ag_is", "alpha": 2, "gamma": 0.2})
ESTIMATORS = ("unbiased", "self_normalised")
_SAMPLER_DEFAULTS = {"uniform": {}, "mg_is": {"gamma": 0.2}, "ag_is": {"alpha": 2.0, "gamma": 0.2}}
# compiled kernels (numba; see the engine's section below): nogil, so the grid's threads run them in
# parallel; cached once per machine (into __pycache__), not compiled per process
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}  # x / 0 = inf, as in NumPy


# ----------------------------------------------------------------------------------------------
# Standardisation, samplers, weights
# ----------------------------------------------------------------------------------------------
def standardise_activations(acts: np.ndarray, axis: int = 0) -> np.ndarray:
    """a_hat = (a - mean_D a) / std_D a with population statistics (ddof = 0; SPEC sec. 3).

    Constant columns give NaN (their correlation is undefined).
    """
    return standardise(acts, axis=axis)[0]


def _check_total(total: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~(np.asarray(total) > 0))
    if bad.size:
        raise ValueError(f"{what}: the unnormalised sampling weights sum to zero (or NaN) for column {bad[0]}")


def _mix_with_p(u: np.ndarray, gamma: float, what: str, axis: int) -> np.ndarray:
    """(1 - gamma) u / sum(u) + gamma / N along ``axis``, in place on ``u`` (a float64 array the caller owns)."""
    total = u.sum(axis=axis, keepdims=True)
    _check_total(np.squeeze(total, axis), what)
    u *= (1.0 - gamma) / total
    u += gamma / u.shape[axis]
    return u


def _rows_fast(a: np.ndarray, c: np.ndarray | None, axis: int) -> bool:
    """The draw engine's case: (pairs, N) rows of float arrays of one shape, q along axis 1."""
    return (axis in (1, -1) and a.ndim == 2 and a.dtype == np.float64 and a.flags.c_contiguous
            and (c is None or (c.shape == a.shape and c.dtype in (np.float32, np.float64) and c.flags.c_contiguous)))


@numba.njit(**_JIT)
def _k_is_q(a, c, mg, alpha, gamma, scale, out):  # pragma: no cover - compiled
    """Row-wise q of MG-IS (mg: u = |a| c) or AG-IS (u = |a|^alpha) into out, as ``_mix_with_p`` computes
    it: (1 - gamma) u / sum(u) + gamma / N, times ``scale`` (1: q; N: the draw engine's N q). Returns each
    row's sum of u and number of negative c (checked by the caller; a row whose sum is not positive is
    left unnormalised)."""
    k, n = a.shape
    tot = np.empty(k)
    neg = np.zeros(k, dtype=np.int64)
    for r in range(k):
        m = 0
        for i in range(n):
            if mg:
                ci = np.float64(c[r, i])
                x = abs(a[r, i] * ci)
                m += ci < 0.0  # counted, not a running minimum: min() compiles to a branch taken at random
            elif alpha == 2.0:
                x = a[r, i] * a[r, i]
            else:
                x = abs(a[r, i]) ** alpha
            out[r, i] = x
        neg[r] = m
        if gamma == 1.0:  # q = 1 / N whatever u is (as the NumPy path), its sum not checked
            tot[r] = 1.0
            for i in range(n):
                out[r, i] = scale / n
            continue
        t = _k_sum4(out[r])
        tot[r] = t
        if t > 0:
            f = (1.0 - gamma) / t
            add = gamma / n
            for i in range(n):
                out[r, i] = (out[r, i] * f + add) * scale
    return tot, neg


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")


def mg_is_q(a_hat: np.ndarray, c_hat: np.ndarray, gamma: float = 0.2, axis: int = 0, *, scale: float = 1.0,
            out: np.ndarray | None = None) -> np.ndarray:
    """MG-IS: q = (1 - gamma) |a_hat| c_hat / sum(|a_hat| c_hat) + gamma / N  (SPEC sec. 3; seed 001 B.1).

    ``c_hat`` is the concept model's estimate of concept presence (probabilities in [0, 1]).
    Works column-wise (axis=0, inputs along rows) or row-wise (axis=1) for many pairs at once; the
    one place MG-IS's q is computed (``sampler_q`` and the draw engine ``PairDraws`` call it).
    Returns ``scale`` * q (the draw engine asks for N q); ``out``: a float64 array of the result's shape to
    write it into (used on the compiled row-wise path, reused by the engine across calls).
    """
    _check_gamma(gamma)
    a = np.asarray(a_hat, dtype=np.float64)
    c = np.asarray(c_hat)
    if _rows_fast(a, c, axis):  # one compiled pass per row (the draw engine's call)
        out = _out_buffer(out, a.shape)
        tot, neg = _k_is_q(a, c, True, 2.0, float(gamma), float(scale), out)
        if neg.any():
            raise ValueError("c_hat must be non-negative (a presence probability)")
        _check_total(tot, "MG-IS")
        return out
    c = np.asarray(c, dtype=np.float64)
    if c.size and c.min() < 0:
        raise ValueError("c_hat must be non-negative (a presence probability)")
    n = a.shape[axis]
    if gamma == 1.0:
        return np.full(np.broadcast_shapes(a.shape, c.shape), scale / n)
    u = np.multiply(a, c)  # |a_hat| c_hat = |a_hat c_hat| as c_hat >= 0
    np.abs(u, out=u)
    return _scaled(_mix_with_p(u, gamma, "MG-IS", axis), scale)


def ag_is_q(a_hat: np.ndarray, alpha: float = 2.0, gamma: float = 0.2, axis: int = 0, *, scale: float = 1.0,
            out: np.ndarray | None = None) -> np.ndarray:
    """AG-IS: q = (1 - gamma) |a_hat|^alpha / sum |a_hat|^alpha + gamma / N  (seed 001 eqs. 16-17).
    ``scale`` and ``out`` as in ``mg_is_q``."""
    _check_gamma(gamma)
    a = np.asarray(a_hat, dtype=np.float64)
    n = a.shape[axis]
    if gamma == 1.0:
        return np.full(a.shape, scale / n)
    if _rows_fast(a, None, axis):
        out = _out_buffer(out, a.shape)
        _check_total(_k_is_q(a, _EMPTY2D, False, float(alpha), float(gamma), float(scale), out)[0], "AG-IS")
        return out
    u = np.abs(a)
    u **= float(alpha)
    return _scaled(_mix_with_p(u, gamma, "AG-IS", axis), scale)


def _out_buffer(out: np.ndarray | None, shape: tuple) -> np.ndarray:
    if out is None:
        return np.empty(shape)
    if out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 array of shape {shape}")
    return out


def _scaled(q: np.ndarray, scale: float) -> np.ndarray:
    if scale != 1.0:
        q *= scale
    return q


def _sampler_spec(spec: Mapping | str) -> dict:
    if isinstance(spec, str):
        spec = {"name": spec}
    name = spec.get("name")
    if name not in _SAMPLER_DEFAULTS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(_SAMPLER_DEFAULTS)}")
    out = {"name": name, **_SAMPLER_DEFAULTS[name]}
    unknown = set(spec) - set(out) - {"label"}
    if unknown:
        raise ValueError(f"sampler {name!r} has unknown parameters {sorted(unknown)}")
    out.update(spec)
    return out


def sampler_label(spec: Mapping | str) -> str:
    """'uniform', 'mg_is', 'ag_is' for default parameters; e.g. 'mg_is(gamma=0.1)' otherwise; or spec['label']."""
    s = _sampler_spec(spec)
    if "label" in s:
        return str(s["label"])
    changed = [f"{k}={s[k]:g}" for k in ("alpha", "gamma") if k in s and s[k] != _SAMPLER_DEFAULTS[s["name"]][k]]
    return s["name"] + (f"({','.join(changed)})" if changed else "")


def sampler_q(spec: Mapping | str, a_hat: np.ndarray, c_guide: np.ndarray | None = None, axis: int = 0, *,
              scale: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """q for one sampler spec ({"name": "uniform"} / {"name": "mg_is", "gamma": g} / {"name": "ag_is", ...}),
    times ``scale``; ``out`` as in ``mg_is_q``."""
    s = _sampler_spec(spec)
    a_hat = np.asarray(a_hat)
    if s["name"] == "uniform":
        return np.full(a_hat.shape, scale / a_hat.shape[axis])
    if s["name"] == "mg_is":
        if c_guide is None:
            raise ValueError("MG-IS needs c_guide (the concept model's presence estimates)")
        return mg_is_q(a_hat, c_guide, gamma=s["gamma"], axis=axis, scale=scale, out=out)
    return ag_is_q(a_hat, alpha=s["alpha"], gamma=s["gamma"], axis=axis, scale=scale, out=out)


def check_q(q: np.ndarray, p: np.ndarray | None = None, axis: int = 0, names: Sequence | None = None) -> None:
    """Raise ValueError if q is zero (or non-finite) where p is not (importance sampling would be biased).

    ``p`` defaults to uniform (p > 0 everywhere). ``names`` labels the columns in the message.
    """
    q = np.asarray(q)
    pos = np.ones(q.shape, dtype=bool) if p is None else np.broadcast_to(np.asarray(p) > 0, q.shape)
    bad = pos & ~(q > 0)
    if bad.any():
        where = np.argwhere(bad)[0]
        col = where[1 - axis] if q.ndim == 2 else None
        inp = where[axis] if q.ndim == 2 else where[0]
        label = f" for pair {names[col] if names is not None else col}" if col is not None else ""
        raise ValueError(
            f"q is zero at input {inp}{label} where p > 0 ({int(bad.sum())} such inputs): importance "
            "sampling needs q > 0 wherever p > 0; use gamma > 0"
        )


def importance_weights(q_at_draws: np.ndarray, n_inputs: int) -> np.ndarray:
    """w = p(x) / q(x) = 1 / (N q(x)) for p uniform over the N inputs."""
    return 1.0 / (n_inputs * np.asarray(q_at_draws, dtype=np.float64))


def draw_samples(q: np.ndarray, n: int, rng: np.random.Generator, replace: bool = True) -> np.ndarray:
    """Draw n input indices from q (1-D). Without replacement only for uniform q (weights stay p/q = 1)."""
    q = np.asarray(q, dtype=np.float64)
    check_q(q)
    if not replace:
        if not np.allclose(q, q[0]):
            raise ValueError("drawing without replacement is only supported for uniform q (weights p/q = 1)")
        return rng.choice(len(q), size=n, replace=False)
    return rng.choice(len(q), size=n, replace=True, p=q / q.sum())


# ----------------------------------------------------------------------------------------------
# Estimators
# ----------------------------------------------------------------------------------------------
def estimate_moments(
    a_hat_s: np.ndarray, c_s: np.ndarray, w: np.ndarray | None = None, estimator: str = "unbiased", axis: int = -1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E[a_hat c], E[c], E[c^2]) estimated from a sample (SPEC sec. 3).

    unbiased: (1/n) sum w h; self_normalised: sum w h / sum w. ``w`` None means w = 1 (q = p).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    a = np.asarray(a_hat_s, dtype=np.float64)
    c = np.asarray(c_s, dtype=np.float64)
    w = np.ones_like(c) if w is None else np.asarray(w, dtype=np.float64)
    denom = a.shape[axis] if estimator == "unbiased" else w.sum(axis=axis)
    m_ac = (w * a * c).sum(axis=axis) / denom
    m_c = (w * c).sum(axis=axis) / denom
    m_cc = (w * c * c).sum(axis=axis) / denom
    return m_ac, m_c, m_cc


def _rho_and_no_variation(m_ac, m_c, m_cc) -> tuple[np.ndarray, np.ndarray]:
    """(rho_hat, no_variation) from estimated moments.

    No variation of c seen in the sample (estimated variance <= 0, e.g. no positive input drawn): the
    estimate is undefined; rho_hat = 0 is reported (no evidence, RCE = 1) and ``no_variation`` is True
    so that the tables can say how often this happened. NaN moments stay NaN (and are not counted).
    """
    var = m_cc - m_c * m_c
    rho = m_ac / np.sqrt(np.where(var > 0, var, np.nan))  # NaN operands raise no floating-point warnings
    no_var = ~(var > 0) & ~np.isnan(m_ac)
    return np.where(var > 0, rho, np.where(no_var, 0.0, np.nan)), no_var


def _rho_from_moments(m_ac, m_c, m_cc):
    return _rho_and_no_variation(m_ac, m_c, m_cc)[0]


def estimate_rho(
    a_hat_s: np.ndarray, c_s: np.ndarray, w: np.ndarray | None = None, estimator: str = "unbiased", axis: int = -1
) -> np.ndarray:
    """rho_hat = E_hat[a_hat c] / sqrt(E_hat[c^2] - E_hat[c]^2)  (SPEC sec. 3).

    a_hat_s must be standardised with population statistics. If the sample shows no variation in c
    (estimated variance <= 0) the estimate is undefined and 0.0 is returned (documented departure).
    """
    return _rho_from_moments(*estimate_moments(a_hat_s, c_s, w, estimator, axis))


def exact_rho(a_hat: np.ndarray, c: np.ndarray, axis: int = 0) -> np.ndarray:
    """rho = E_p[a_hat c] / sqrt(E_p[c^2] - E_p[c]^2) over the whole dataset; NaN where undefined."""
    a = np.asarray(a_hat, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    m_ac = (a * c).mean(axis=axis)
    m_c = c.mean(axis=axis)
    var = (c * c).mean(axis=axis) - m_c**2
    return np.where(var > 1e-15, m_ac / np.sqrt(np.maximum(var, 1e-300)), np.nan)


def relative_corr_error(rho_hat, rho):
    """RCE = |rho_hat - rho| / |rho|  (SPEC sec. 3); NaN where rho is 0 or NaN."""
    rho_hat = np.asarray(rho_hat, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rho != 0, np.abs(rho_hat - rho) / np.abs(rho), np.nan)


# ----------------------------------------------------------------------------------------------
# The vectorised grid
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# Compiled kernels of the draw engine (numba; each a plain loop, see docs/evaluation.md)
# ----------------------------------------------------------------------------------------------
# The engine's per-draw work (table look-ups, the search of the CDF, the prefix sums and the distinct
# counts) is a handful of operations per draw; as NumPy passes it cost ~20 sweeps over the draws and
# the tables, as compiled loops one (``_JIT`` above).

# Indices in the hot loops are unsigned (np.uint64): numba then emits no negative-index wraparound, and
# the record table is a flat array with a constant stride of 4 (about a third fewer instructions per draw).
_U = np.uint64


@numba.njit(**_JIT)
def _k_row_tables(nq_row, acc, base, draw, add, rec, guide, wtmp):  # pragma: no cover - compiled
    """One pair's table of per-input records from its N q (a row summing to N): rec (4 N,) flat, record i
    at 4 i .. 4 i + 3.

    draw: rec[4 i] = z_i = cumsum(N q)_i (z_{N-1} = +inf) and guide[j] = #{i < N - 1 : z_i < j} for
    j < N, for inverse-CDF draws (guide has N + 1 entries, the last a scratch slot). add:
    rec[4 i + 1 ..] = the terms of a draw of input i, (w, w a_hat c, w c) with w = 1 / (N q) the
    importance weight (computed first into wtmp (N,), a vectorised pass), from acc (2 kb N,) =
    (a_hat c, c) of input i at 2 (base + i). One record holds all that a draw reads: the sums read the
    cache line the search has just touched.

    z_i < j  <=>  floor(z_i) + 1 <= j, and floor(z_i) + 1 is non-decreasing in i (q >= 0), so recording
    the last i + 1 of each bucket and taking the running maximum counts it without data-dependent
    branches (buckets beyond N - 1 go to the scratch slot).
    """
    n = nq_row.shape[0]
    if add:
        for i in range(n):  # vectorised by the compiler
            wtmp[i] = 1.0 / nq_row[i]
    if draw:
        guide[:] = 0
    z = 0.0
    for i in range(n):  # one pass writes each record whole
        k = _U(4 * i)
        if add:
            a = _U(2 * (base + i))
            wi = wtmp[i]
            rec[k + _U(1)] = wi
            rec[k + _U(2)] = wi * acc[a]
            rec[k + _U(3)] = wi * acc[a + _U(1)]
        if draw and i < n - 1:
            z += nq_row[i]
            rec[k] = z
            guide[_U(min(int(z) + 1, n))] = i + 1
    if not draw:
        return
    rec[_U(4 * (n - 1))] = np.inf
    _k_running_max(guide, n)


@numba.njit(**_JIT)
def _imax(a, b):  # pragma: no cover - compiled
    """max(a, b) of int32 values of the same sign (|b - a| < 2**31) by arithmetic: a comparison would be
    compiled to a branch, and in ``_k_running_max`` the branch goes either way at random (5x slower)."""
    d = b - a
    return a + (d & ~(d >> np.int32(31)))


@numba.njit(**_JIT)
def _k_running_max(g, n):  # pragma: no cover - compiled
    """g[j] = max(g[0], ..., g[j]) for j < n, in place (g non-negative int32). Two entries per step: the
    pair's own maximum is off the loop-carried chain."""
    c = np.int32(0)
    m = n - n % 2
    for j in range(0, m, 2):
        g0 = g[j]
        p = _imax(g0, g[j + 1])
        g[j] = _imax(c, g0)
        c = _imax(c, p)
        g[j + 1] = c
    for j in range(m, n):
        c = _imax(c, g[j])
        g[j] = c


_DRAW_BATCH = 32


@numba.njit(**_JIT)
def _k_row_draws(u, d0, scale, weighted, rec, guide, base, out):  # pragma: no cover - compiled
    """One row's draws into ``out`` (pair * N + input): the first i with z_i = rec[4 i] > x = u N' (a
    guide-table inverse CDF: guide[floor(x)] is the first candidate, one branch-free step covers most
    draws and a short loop the rest), or floor(x) for uniform q."""
    ub = _U(base)
    ud = _U(d0)
    if weighted:
        # in batches of _DRAW_BATCH draws, stage by stage: every draw's guide entry, then two branch-free
        # steps of the search for every draw, then the rare longer searches; the batch's loads are
        # independent of each other and overlap (1.6x faster than draw by draw, measured)
        nt = out.shape[0]
        xs = np.empty(_DRAW_BATCH)
        ps = np.empty(_DRAW_BATCH, dtype=np.uint64)
        for t0 in range(0, nt, _DRAW_BATCH):
            m = min(_DRAW_BATCH, nt - t0)
            for j in range(m):
                x = u[ud + _U(t0 + j)] * scale
                xs[j] = x
                ps[j] = _U(guide[_U(int(x))])
            for j in range(m):
                ps[j] += _U(rec[_U(4) * ps[j]] <= xs[j])
            for j in range(m):
                ps[j] += _U(rec[_U(4) * ps[j]] <= xs[j])
            for j in range(m):
                pos = ps[j]
                while rec[_U(4) * pos] <= xs[j]:
                    pos += _U(1)
                out[t0 + j] = ub + pos
    else:
        for t in range(out.shape[0]):
            out[t] = ub + _U(u[ud + _U(t)] * scale)


@numba.njit(**_JIT)
def _k_row_sums(fl, base, weighted, rec, acc, cc, second, ends, s_out, q_out, nd_out, mark, stamp):  # pragma: no cover
    """One row's prefix sums (see ``_k_engine``) over the draws ``fl``: the terms from the records
    (weighted) or from acc (uniform q, w = 1), c^2 from cc (soft c). ``mark`` (N,) uint8 holds no
    ``stamp`` on entry (1 .. 255, one per row: the row's inputs are stamped while its distinct inputs are
    counted, so no pass clears them). Binary c: t2 = w c is w or 0, so t1 t2 = w t1 and t2 t2 = w t2
    exactly (q12 = q01, q22 = q02, not summed twice)."""
    soft = cc.shape[0] > 0
    ub = _U(base)
    s0 = s1 = s2 = s3 = 0.0
    q00 = q01 = q02 = q03 = q11 = q12 = q13 = q22 = q23 = q33 = 0.0
    cnt = 0
    b = 0
    t3 = 0.0
    for t in range(fl.shape[0]):
        f = _U(fl[t])
        pos = f - ub
        if weighted:
            k = _U(4) * pos
            wi = rec[k + _U(1)]
            t1 = rec[k + _U(2)]
            t2 = rec[k + _U(3)]
        else:
            wi = 1.0
            t1 = acc[_U(2) * f]
            t2 = acc[_U(2) * f + _U(1)]
        s0 += wi
        s1 += t1
        s2 += t2
        if second:
            q00 += wi * wi
            q01 += wi * t1
            q02 += wi * t2
            q11 += t1 * t1
            if soft:
                q12 += t1 * t2
                q22 += t2 * t2
        if soft:
            t3 = wi * cc[f]
            s3 += t3
            if second:
                q03 += wi * t3
                q13 += t1 * t3
                q23 += t2 * t3
                q33 += t3 * t3
        cnt += np.intp(mark[pos] != stamp)  # branch-free: duplicates are frequent under IS
        mark[pos] = stamp
        if t + 1 == ends[b]:
            s_out[b, 0] = s0
            s_out[b, 1] = s1
            s_out[b, 2] = s2
            s_out[b, 3] = s3 if soft else s2  # binary c: c^2 = c
            if second:
                q_out[b, 0] = q00
                q_out[b, 1] = q01
                q_out[b, 2] = q02
                q_out[b, 3] = q03 if soft else q02
                q_out[b, 4] = q11
                q_out[b, 5] = q12 if soft else q01
                q_out[b, 6] = q13 if soft else q01
                q_out[b, 7] = q22 if soft else q02
                q_out[b, 8] = q23 if soft else q02
                q_out[b, 9] = q33 if soft else q02
            nd_out[b] = cnt
            b += 1


@numba.njit(**_JIT)
def _k_engine(mode, nq, u, scale, n_seeds, acc, cc, ends, second, flat, sums, sq, nd, rec, guide, mark, wtmp):  # pragma: no cover
    """The draw engine's one loop over the draws of a block of pairs (rows = pair * S + seed).

    mode 0: draw (write ``flat``); 1: draw and sum; 2: sum the draws given in ``flat``.
    nq (kb, N): N q per pair, or (0, N) for uniform q. u: (rows * nmax,) float64 uniforms in (pair,
    seed, draw) order (modes 0, 1); a draw is the first i with z_i > u N' (``_k_row_tables``; for uniform
    q, floor(u N')), N' = ``scale``. flat (rows, nmax) receives / holds pair * N + input.
    Sums (modes 1, 2), over the first ends[b] draws of each row: ``sums`` (rows, n_seg, 4) of the terms
    t = (w, w a_hat c, w c, w c^2), w = p / q = 1 / (N q) (1 for uniform q), from acc (2 kb N,) =
    (a_hat c, c) per input and cc (kb N,) = c^2 (empty: binary c, c^2 = c); ``sq`` (rows, n_seg, 10)
    if ``second``: the sums of t_k t_l, k <= l, in the order 00 01 02 03 11 12 13 22 23 33; ``nd``
    (rows, n_seg): the distinct inputs among the draws (a stamp per input, one stamp value per row, the
    marks cleared every 255 rows). rec (4 N,), guide (N + 1,) int32, mark (N,) uint8, wtmp (N,): scratch, reused across calls
    (fresh buffers of this size cost page faults on every call). Each row is drawn, then summed while
    its draws and the records they hit are in cache.
    """
    n = nq.shape[1]
    kb = flat.shape[0] // n_seeds
    weighted = nq.shape[0] > 0
    draw = mode != 2
    add = mode != 0
    for r in range(kb):
        base = r * n
        if weighted:
            _k_row_tables(nq[r], acc, base, draw, add, rec, guide, wtmp)
        for row in range(r * n_seeds, (r + 1) * n_seeds):
            if draw:
                _k_row_draws(u, row * flat.shape[1], scale, weighted, rec, guide, base, flat[row])
            if add:
                stamp = row % 255
                if stamp == 0:  # stamps 1 .. 255, then the marks are cleared
                    mark[:] = 0
                _k_row_sums(flat[row], base, weighted, rec, acc, cc, second, ends, sums[row], sq[row], nd[row], mark,
                            np.uint8(stamp + 1))


@numba.njit(**_JIT)
def _k_distinct(idx, ends, size, out):  # pragma: no cover - compiled
    """out[row, b] = number of distinct values among the first ends[b] entries of idx[row] (values in
    [0, size)): a stamp per value marks the rows that have seen it, so each draw costs O(1)."""
    mark = np.full(size, -1, dtype=np.int64)
    for row in range(idx.shape[0]):
        cnt = 0
        b = 0
        for t in range(ends[-1]):
            v = idx[row, t]
            if mark[v] != row:
                mark[v] = row
                cnt += 1
            if t + 1 == ends[b]:
                out[row, b] = cnt
                b += 1


def _scale_below(n: int) -> float:
    """The largest double below n: u * _scale_below(n) < n for every u in [0, 1), so floor() < n."""
    return float(np.nextafter(float(n), 0.0))


def _distinct_prefix_counts(idx: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """(rows, n_seg) int32 number of distinct values among the first ns[b] entries of each row of idx.

    idx (rows, >= max(ns)), non-negative integers in draw order; one pass over the draws with a stamp
    per value (``_k_distinct``).
    """
    idx = np.ascontiguousarray(idx, dtype=np.intp)
    ns = np.ascontiguousarray(ns, dtype=np.int64)
    out = np.zeros((idx.shape[0], len(ns)), dtype=np.int32)
    if idx.size:
        if idx.min() < 0 or idx.shape[1] < ns[-1]:
            raise ValueError(f"idx must hold non-negative values and >= {ns[-1]} columns")
        _k_distinct(idx, ns, int(idx.max()) + 1, out)
    return out


@numba.njit(**_JIT)
def _k_sum4(x):  # pragma: no cover - compiled
    """sum(x) with four interleaved partial sums (a single running sum is one long chain of dependent
    additions, four times slower; the rounding is as good)."""
    n = x.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    m = n - n % 4
    for i in range(0, m, 4):
        s0 += x[i]
        s1 += x[i + 1]
        s2 += x[i + 2]
        s3 += x[i + 3]
    for i in range(m, n):
        s0 += x[i]
    return (s0 + s1) + (s2 + s3)


@numba.njit(**_JIT)
def _k_prepare(a, c, a_hat, acc, rho, binary):  # pragma: no cover - compiled
    """The exact score and the moment table of a block of pairs, in a few passes over each row while it
    is in cache (the first converts it to float64). a, c: (kb, N), any float dtype. a_hat (kb, N) float64 receives the population
    standardisation (a - mean) / std (``standardise_activations``), rho (kb,) ``exact_rho`` (NaN for a
    constant a or c), acc (kb, N, 2) = (a_hat c, c) (``moment_table``), binary (kb,) = all c in {0, 1}.
    A row with undefined rho gets a_hat = 1, so that its draws are made (uniformly, with the others)
    and reported NaN.
    """
    kb, n = a.shape
    for r in range(kb):
        for i in range(n):
            a_hat[r, i] = a[r, i]
        mean = _k_sum4(a_hat[r]) / n
        for i in range(n):
            a_hat[r, i] -= mean
        ss0 = ss1 = 0.0
        m = n - n % 2
        for i in range(0, m, 2):
            ss0 += a_hat[r, i] * a_hat[r, i]
            ss1 += a_hat[r, i + 1] * a_hat[r, i + 1]
        if m < n:
            ss0 += a_hat[r, n - 1] * a_hat[r, n - 1]
        std = np.sqrt((ss0 + ss1) / n)
        inv = 1.0 / std if std > 0 else np.nan
        ac0 = ac1 = c0 = c1 = cc0 = cc1 = 0.0
        is_bin = True
        for i in range(n):
            x = a_hat[r, i] * inv
            ci = np.float64(c[r, i])
            a_hat[r, i] = x
            acc[r, i, 0] = x * ci
            acc[r, i, 1] = ci
            is_bin &= (ci == 0.0) | (ci == 1.0)
            if i % 2 == 0:
                ac0 += x * ci
                c0 += ci
                cc0 += ci * ci
            else:
                ac1 += x * ci
                c1 += ci
                cc1 += ci * ci
        m_c = (c0 + c1) / n
        var = (cc0 + cc1) / n - m_c * m_c
        rho[r] = (ac0 + ac1) / n / np.sqrt(max(var, 1e-300)) if var > 1e-15 else np.nan
        binary[r] = is_bin
        if not np.isfinite(rho[r]):
            for i in range(n):
                a_hat[r, i] = 1.0
                acc[r, i, 0] = np.float64(c[r, i])


def moment_table(a_hat: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The complex table a_hat c + i c (pairs along rows) that ``PairDraws.estimate`` gathers at the draws:
    one complex gather carries both E[a_hat c] (real part) and E[c] (imaginary part)."""
    acc = np.empty(np.broadcast_shapes(a_hat.shape, c.shape), dtype=np.complex128)
    np.multiply(a_hat, c, out=acc.real)
    acc.imag = c
    return acc


class _Workspace:
    """Scratch buffers of the draw engine for N inputs, reused across calls by one thread: the scaled
    records (CDF z and the terms of a draw), the guide table, the distinct-input marks and a buffer for the draws."""

    def __init__(self, n_inputs: int):
        self.n_inputs = int(n_inputs)
        self.rec = np.empty(4 * self.n_inputs)
        self.wtmp = np.empty(self.n_inputs)
        self.guide = np.empty(self.n_inputs + 1, dtype=np.int32)
        self.mark = np.zeros(self.n_inputs, dtype=np.uint8)
        self._flat = np.empty(0, dtype=np.intp)
        self._nq = np.empty((0, self.n_inputs))

    def nq_buffer(self, rows: int) -> np.ndarray:
        if self._nq.shape[0] < rows:
            self._nq = np.empty((rows, self.n_inputs))
        return self._nq[:rows]

    def flat_buffer(self, rows: int, nmax: int) -> np.ndarray:
        if self._flat.size < rows * nmax:
            self._flat = np.empty(rows * nmax, dtype=np.intp)
        return self._flat[: rows * nmax].reshape(rows, nmax)


@dataclass
class DistinctInputs:
    """The distinct inputs of every (pair, seed) sample of a ``PairDraws`` (the inputs to rate).

    Groups are ordered by row (pair * S + seed), then by input. ``flat``: pair * N + input;
    ``row``: the row; ``seg``: the smallest segment b in which the input is drawn, i.e. it belongs to
    the samples of size ns[b], ns[b + 1], ...; ``gid``: (rows, nmax) the group of every draw, in draw
    order (duplicates share a group: an input is rated once and its rating reused).
    """

    flat: np.ndarray
    row: np.ndarray
    seg: np.ndarray
    gid: np.ndarray

    def __len__(self) -> int:
        return len(self.flat)


class PairDraws:
    """The draw engine of Setting 1 and Setting 2: i.i.d. draws for a block of (neuron, concept) pairs.

    For each of the block's kb pairs and each of S seeds, nmax = max(ns) inputs are drawn i.i.d. from
    the pair's q; the sample of size ns[b] is the first ns[b] draws (prefix reuse: samples along n are
    nested, like a growing study). Rows are (pair, seed), row = pair * S + seed.

    - ``PairDraws.draw(spec, a_hat, c_guide, ns, n_seeds, gen)``: q from ``sampler_q`` (uniform /
      ``mg_is_q`` / ``ag_is_q``, the only place q is computed), one float64 uniform per draw from
      ``gen``, turned into inputs by floor(N u) (uniform) or a guide-table inverse CDF (IS);
    - ``PairDraws.from_indices(idx, q, ns)``: fixed draws (tests, or draws made elsewhere);
    - ``weights()``: importance weights w = p / q = 1 / (N q) at the draws;
    - ``estimate(acc, cc, estimator)``: rho_hat with c known per input (Setting 1);
    - ``groups()`` and ``estimate_grouped(a_hat, c_group, groups, estimator)``: rho_hat with c given per
      distinct input of each sample, e.g. aggregated simulated ratings (Setting 2);
    - ``distinct_counts()``: the cost, distinct inputs among the first ns[b] draws.

    Both estimators of SPEC sec. 3: ``unbiased`` (1/n) sum w h and ``self_normalised``
    sum w h / sum w.

    Attributes: ``flat`` (rows, nmax) intp, pair * N + input of each draw in draw order; ``nq`` (kb, N)
    N q, or None for uniform q; ``n_inputs`` N; ``ns``; ``n_seeds`` S; ``pairs`` labels of the kb pairs
    (global pair indices, used in error messages).
    """

    def __init__(self, flat: np.ndarray, nq: np.ndarray | None, n_inputs: int, ns: np.ndarray, n_seeds: int,
                 pairs: np.ndarray | None = None):
        self.flat = flat
        self.nq = nq
        self.n_inputs = int(n_inputs)
        self.ns = np.asarray(ns, dtype=np.int64)
        self.n_seeds = int(n_seeds)
        self.n_pairs = flat.shape[0] // self.n_seeds
        self.pairs = np.arange(self.n_pairs) if pairs is None else np.asarray(pairs)

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def draw(
        cls,
        spec: Mapping | str,
        a_hat: np.ndarray,
        c_guide: np.ndarray | None,
        ns: np.ndarray,
        n_seeds: int,
        gen: np.random.Generator | None,
        *,
        pairs: np.ndarray | None = None,
        u: np.ndarray | None = None,
    ) -> PairDraws:
        """Draw max(ns) inputs per (pair, seed) for the block's pairs (rows of a_hat, c_guide: (kb, N)).

        ``gen`` supplies kb * n_seeds * max(ns) float64 uniforms in (pair, seed, draw) order, or ``u``
        gives them (then gen is not used): the grid passes the same uniforms to every sampler (common
        random numbers; each sampler's draws are still i.i.d. from its own q). Raises (naming the pair:
        ``pairs``, default 0..kb-1) where q = 0 on an input with p > 0.
        """
        return cls._make(spec, a_hat, c_guide, ns, n_seeds, gen, pairs, u, None, None, False)[0]

    @classmethod
    def draw_and_sum(
        cls,
        spec: Mapping | str,
        a_hat: np.ndarray,
        c_guide: np.ndarray | None,
        ns: np.ndarray,
        n_seeds: int,
        u: np.ndarray,
        acc: np.ndarray,
        cc: np.ndarray | None = None,
        *,
        pairs: np.ndarray | None = None,
        second: bool = True,
        work: _Workspace | None = None,
    ) -> tuple[PairDraws, np.ndarray, np.ndarray | None, np.ndarray]:
        """``draw`` and ``moment_sums`` in one call (Setting 1): each row's terms are summed right after
        its draws, while the tables are in cache. Returns (draws, sums, sq, nd), exactly those of
        ``draw(..., u=u)`` followed by ``moment_sums(acc, cc, second)``. ``work``: scratch buffers
        reused across calls (``_Workspace``; the draws are then written into its ``flat``, valid until
        the next call with the same workspace).
        """
        return cls._make(spec, a_hat, c_guide, ns, n_seeds, None, pairs, u, acc, cc, second, work)

    @classmethod
    def _make(cls, spec, a_hat, c_guide, ns, n_seeds, gen, pairs, u, acc, cc, second, work=None):
        s = _sampler_spec(spec)
        kb, n = a_hat.shape
        ns = np.asarray(ns, dtype=np.int64)
        nmax = int(ns[-1])
        rows = kb * n_seeds
        if u is None:
            u = gen.random(rows * nmax)
        elif np.shape(u) != (rows * nmax,):
            raise ValueError(f"expected {rows * nmax} uniforms, got shape {np.shape(u)}")
        if n >= 2**31:
            raise ValueError(f"at most 2**31 - 1 inputs are supported, got {n}")
        if s["name"] == "uniform":
            nq = None
        else:
            nq = sampler_q(s, a_hat, c_guide, axis=1, scale=n, out=None if work is None else work.nq_buffer(kb))
            if not nq.min() > 0:  # zero or NaN somewhere: let check_q name the pair and input
                check_q(nq.T, names=np.arange(kb) if pairs is None else pairs)
        flat = np.empty((rows, nmax), dtype=np.intp) if work is None else work.flat_buffer(rows, nmax)
        draws = cls(flat, nq, n, ns, n_seeds, pairs)
        out = draws._run(0 if acc is None else 1, np.ascontiguousarray(u, dtype=np.float64), acc, cc, second, work)
        return (draws,) if out is None else (draws, *out)

    def _run(self, mode: int, u: np.ndarray, acc, cc, second: bool, work: _Workspace | None = None):
        """Call ``_k_engine``; returns (sums, sq, nd), None for mode 0."""
        if mode not in (0, 1, 2):
            raise ValueError(f"engine mode {mode!r}: 0 draw, 1 draw and sum, 2 sum given draws")
        rows, _ = self.flat.shape
        n = self.n_inputs
        n_seg = len(self.ns)
        if mode:
            sums = np.zeros((rows, n_seg, 4))
            sq = np.zeros((rows, n_seg, 10))  # written only if second, returned only then
            nd = np.zeros((rows, n_seg), dtype=np.int32)
            acc2 = np.ascontiguousarray(acc, dtype=np.complex128).reshape(-1).view(np.float64)
            cc1 = _EMPTY if cc is None else np.ascontiguousarray(cc, dtype=np.float64).reshape(-1)
        else:
            sums, sq, nd = _EMPTY3, _EMPTY3, _EMPTY2I
            acc2, cc1 = _EMPTY, _EMPTY
        nq = np.empty((0, n)) if self.nq is None else np.ascontiguousarray(self.nq, dtype=np.float64)
        # the compiled loop does not check bounds: check the shapes (and given draws) it relies on
        size = self.n_pairs * n
        if self.flat.shape[1] != self.ns[-1] or rows != self.n_pairs * self.n_seeds:
            raise ValueError(f"draws of shape {self.flat.shape}; expected ({self.n_pairs * self.n_seeds}, {self.ns[-1]})")
        if nq.shape[0] not in (0, self.n_pairs) or nq.shape[1] != n:
            raise ValueError(f"nq has shape {nq.shape}; expected ({self.n_pairs}, {n})")
        if mode and (acc2.shape[0] != 2 * size or cc1.shape[0] not in (0, size)):
            raise ValueError(f"tables of {acc2.shape[0] // 2} (and {cc1.shape[0]}) entries for {self.n_pairs} pairs x {n} inputs")
        if mode == 2 and self.flat.size and not (self.flat.min() >= 0 and self.flat.max() < size):
            raise ValueError(f"draws must lie in [0, {size}); got {self.flat.min()} .. {self.flat.max()}")
        if rows and self.flat.shape[1]:
            work = work if work is not None and work.n_inputs == n else _Workspace(n)
            _k_engine(mode, nq, u, _scale_below(n), self.n_seeds, acc2, cc1, self.ns, bool(second), self.flat,
                      sums, sq, nd, work.rec, work.guide, work.mark, work.wtmp)
        return (sums, sq if second else None, nd) if mode else None

    @classmethod
    def from_indices(
        cls, idx: np.ndarray, q: np.ndarray | None, ns: Sequence[int], n_inputs: int | None = None, pairs=None
    ) -> PairDraws:
        """Fixed draws: idx (kb, S, >= max(ns)) input indices in draw order; q (kb, N), or None for
        uniform q (then give ``n_inputs``)."""
        idx = np.asarray(idx, dtype=np.intp)
        ns = np.asarray(ns, dtype=np.int64)
        kb, n_seeds = idx.shape[:2]
        idx = idx[:, :, : int(ns[-1])]
        nq = None if q is None else np.asarray(q, dtype=np.float64) * np.shape(q)[1]
        n = int(n_inputs) if q is None else np.shape(q)[1]
        if idx.size and not (idx.min() >= 0 and idx.max() < n):
            raise ValueError(f"draw indices must lie in [0, {n}); got {idx.min()} .. {idx.max()}")
        flat = (idx + n * np.arange(kb)[:, None, None]).reshape(kb * n_seeds, -1)
        return cls(flat, nq, n, ns, n_seeds, pairs)

    # ---- views -------------------------------------------------------------------------------
    @property
    def idx(self) -> np.ndarray:
        """(kb, S, nmax) input indices in draw order."""
        rows, nmax = self.flat.shape
        return (self.flat - self.n_inputs * np.repeat(np.arange(self.n_pairs), self.n_seeds)[:, None]).reshape(
            self.n_pairs, self.n_seeds, nmax
        )

    def gather(self, table: np.ndarray) -> np.ndarray:
        """(rows, nmax) values of a (kb, N) table at the draws."""
        return np.take(table.ravel(), self.flat)

    def weights(self) -> np.ndarray:
        """(rows, nmax) importance weights w = p(x) / q(x) = 1 / (N q(x)) at the draws (1 for uniform q)."""
        if self.nq is None:
            return np.ones(self.flat.shape)
        return np.reciprocal(self.gather(self.nq))

    def _denominator(self, estimator: str, w_sums: np.ndarray) -> np.ndarray:
        """n (unbiased) or the sums of the weights ``w_sums`` (self-normalised), per segment."""
        if estimator == "unbiased":
            return self.ns[None, :].astype(np.float64)
        if estimator != "self_normalised":
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        return w_sums

    # ---- estimates ---------------------------------------------------------------------------
    def moment_sums(
        self, acc: np.ndarray, cc: np.ndarray | None, second: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Sums over the first ns[b] draws of every row (pair, seed) with c known on every input.

        acc = ``moment_table(a_hat, c)`` (kb, N); cc = c * c, or None for binary c (c^2 = c). Returns
        ``sums`` (rows, n_seg, 4) of the per-draw terms t = (w, w a_hat c, w c, w c^2) with
        w = p / q = 1 / (N q); ``sq`` (rows, n_seg, 10) the sums of t_k t_l for k <= l (order 00 01 02
        03 11 12 13 22 23 33; None unless ``second``), for the delta-method standard error; ``nd``
        (rows, n_seg) int32, the distinct inputs among the draws (the cost). One compiled pass
        (``_k_engine``).
        """
        self.flat = np.ascontiguousarray(self.flat, dtype=np.intp)
        return self._run(2, _EMPTY, acc, cc, second)

    def estimate(self, acc: np.ndarray, cc: np.ndarray | None, estimator: str) -> tuple[np.ndarray, np.ndarray]:
        """rho_hat and no_variation, both (kb, S, n_seg), with c known on every input (Setting 1).

        acc = ``moment_table(a_hat, c)`` (kb, N); cc = c * c, or None for binary c (c^2 = c).
        Every moment E_p[h] is estimated from the first ns[b] draws as (1/n) sum w h (unbiased) or
        sum w h / sum w (self-normalised).
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        sums, _, _ = self.moment_sums(acc, cc)
        rh, nv, _ = estimates_from_sums(sums, None, self.ns, estimator)
        shape = (self.n_pairs, self.n_seeds, len(self.ns))
        return rh.reshape(shape), nv.reshape(shape)

    def groups(self) -> DistinctInputs:
        """The distinct inputs of every sample (``DistinctInputs``), found by a stable sort of each row."""
        rows, nmax = self.flat.shape
        order = np.argsort(self.flat, axis=1, kind="stable")  # equal inputs: earliest draw first
        srt = np.take_along_axis(self.flat, order, axis=1)
        first = np.empty(srt.shape, dtype=bool)
        first[:, 0] = True
        np.not_equal(srt[:, 1:], srt[:, :-1], out=first[:, 1:])
        gid_sorted = np.cumsum(first.ravel()).reshape(rows, nmax) - 1
        gid = np.empty_like(gid_sorted)
        np.put_along_axis(gid, order, gid_sorted, axis=1)
        seg_of_position = np.searchsorted(self.ns, np.arange(nmax), side="right")
        return DistinctInputs(
            flat=srt[first], row=np.nonzero(first)[0], seg=seg_of_position[order[first]], gid=gid
        )

    def estimate_grouped(
        self, a_hat: np.ndarray, c_group: np.ndarray, groups: DistinctInputs, estimator: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """rho_hat and no_variation (rows, n_seg) with c given per distinct input (Setting 2).

        a_hat (kb, N); c_group (G,) or (G, n_seg) per group of ``groups`` (a column per sample size,
        e.g. when the aggregation's eta is re-estimated as the sample grows). Every draw of an input
        counts with that input's c.
        """
        rows, nmax = self.flat.shape
        w = self.weights()
        wa = w * self.gather(a_hat)
        n_seg = len(self.ns)
        c_group = np.asarray(c_group, dtype=np.float64)
        per_n = c_group.ndim == 2
        s = np.empty((4, rows, n_seg))
        for b, n in enumerate(self.ns):
            n = int(n)
            cd = c_group[groups.gid[:, :n], b] if per_n else c_group[groups.gid[:, :n]]
            wc = w[:, :n] * cd
            s[0, :, b] = np.einsum("ij,ij->i", wa[:, :n], cd)
            s[1, :, b] = wc.sum(axis=1)
            s[2, :, b] = np.einsum("ij,ij->i", wc, cd)
            s[3, :, b] = w[:, :n].sum(axis=1)
        den = self._denominator(estimator, s[3])
        return _rho_and_no_variation(s[0] / den, s[1] / den, s[2] / den)

    def distinct_counts(self) -> np.ndarray:
        """(kb, S, n_seg) number of distinct inputs among the first ns[b] draws (the cost)."""
        nd = _distinct_prefix_counts(self.flat, self.ns)
        return nd.reshape(self.n_pairs, self.n_seeds, len(self.ns))


_EMPTY = np.empty(0)
_EMPTY2D = np.empty((0, 0))
_EMPTY3 = np.empty((0, 0, 0))
_EMPTY2I = np.empty((0, 0), dtype=np.int32)
Z95 = 1.959963984540054  # the standard normal's 0.975 quantile: 95% intervals
_SQ_INDEX = np.array([[0, 1, 2, 3], [1, 4, 5, 6], [2, 5, 7, 8], [3, 6, 8, 9]])  # (k, l) -> packed k <= l
_SQ_INDEX_NB = _SQ_INDEX.astype(np.int64)


def estimates_from_sums(
    sums: np.ndarray, sq: np.ndarray | None, ns: np.ndarray, estimator: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """rho_hat, no_variation and (with ``sq``) the delta-method standard error from ``moment_sums``.

    sums (..., n_seg, 4), sq (..., n_seg, 10) or None; ns the sample size of each segment.
    rho_hat = m_ac / sqrt(m_cc - m_c^2) with m = sums / n (unbiased) or sums / sum w (self-normalised);
    0 where the sample shows no variation in c (``no_variation``).

    Standard error (the same formula as ``crowd.interval.rho_interval``, fused with the sums): with the
    per-draw means m = sums / n and G the estimator as a function of m, SE^2 = grad G(m)' Sigma grad G(m)
    / n, Sigma the sample covariance (ddof = 1) of the per-draw terms, (sq - sums_k sums_l / n) / (n - 1).
    NaN where the sample shows no variation or n < 2. Intervals: rho_hat -/+ Z95 SE, clipped to [-1, 1].
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    sums = np.asarray(sums, dtype=np.float64)
    shape = sums.shape[:-1]
    n_seg = shape[-1] if shape else 0
    s2 = np.ascontiguousarray(sums).reshape(-1, n_seg, 4)
    q2 = _EMPTY3 if sq is None else np.ascontiguousarray(sq, dtype=np.float64).reshape(-1, n_seg, 10)
    rh = np.empty(s2.shape[:2])
    nv = np.empty(s2.shape[:2], dtype=np.bool_)
    se = np.empty(s2.shape[:2])
    _k_estimates(s2, q2, np.asarray(ns, dtype=np.float64).reshape(n_seg), estimator == "self_normalised",
                 sq is not None, rh, nv, se)
    return rh.reshape(shape), nv.reshape(shape), None if sq is None else se.reshape(shape)


@numba.njit(**_JIT)
def _k_estimates(sums, sq, ns, sn, second, rh, nv, se):  # pragma: no cover - compiled
    """The loop of ``estimates_from_sums`` over (row, segment); sums (R, n_seg, 4), sq (R, n_seg, 10)."""
    for r in range(sums.shape[0]):
        for b in range(sums.shape[1]):
            n = ns[b]
            s = sums[r, b]
            den = s[0] if sn else n
            m_ac = s[1] / den
            m_c = s[2] / den
            var = s[3] / den - m_c * m_c
            if var > 0:
                rh[r, b] = m_ac / np.sqrt(var)
                nv[r, b] = False
            else:  # no variation in c: rho_hat = 0, flagged (NaN moments stay NaN, unflagged)
                nv[r, b] = not np.isnan(m_ac)
                rh[r, b] = 0.0 if nv[r, b] else np.nan
            if not second:
                continue
            m0 = s[0] / n
            k = m0 if sn else 1.0
            m1 = s[1] / n / k
            m2 = s[2] / n / k
            m3 = s[3] / n / k
            v = m3 - m2 * m2
            if not v > 0:
                v = np.nan
            sv = v * np.sqrt(v)
            g1 = 1.0 / np.sqrt(v)
            g2 = m1 * m2 / sv
            g3 = -0.5 * m1 / sv
            g0 = 0.0
            if sn:
                g0 = -(g1 * m1 + g2 * m2 + g3 * m3) / m0
                g1 /= m0
                g2 /= m0
                g3 /= m0
            g = (g0, g1, g2, g3)
            q = sq[r, b]
            tot = 0.0
            for i in range(4):
                row = 0.0
                for j in range(4):
                    kk = _SQ_INDEX_NB[i, j]
                    row += (q[kk] - s[i] * s[j] / n) * g[j]
                tot += g[i] * row
            var_se = tot / (n - 1.0)
            if n < 2 or nv[r, b] or np.isnan(var_se):
                se[r, b] = np.nan
            else:
                se[r, b] = np.sqrt(max(var_se, 0.0) / n)


def _sfc64_state(seed_seq: np.random.SeedSequence) -> np.ndarray:
    """The state (a, b, c, counter) of NumPy's SFC64 bit generator seeded from ``seed_seq`` (NumPy seeds it
    and discards its first outputs), for ``_k_sfc64_uniforms``."""
    return np.array(np.random.SFC64(seed_seq).state["state"]["state"], dtype=np.uint64)


@numba.njit(**_JIT)
def _k_sfc64_uniforms(state, out):  # pragma: no cover - compiled
    """Fill ``out`` with the next float64 uniforms in [0, 1) of the SFC64 generator whose state (a, b, c,
    counter) is ``state`` (advanced in place): bit for bit the numbers that
    ``np.random.Generator(np.random.SFC64(seed_seq)).random()`` gives (53 high bits / 2**53), made
    compiled at 0.8 ns a number instead of NumPy's 2.2 (the uniforms were 7% of the grid's time)."""
    a = state[0]
    b = state[1]
    c = state[2]
    w = state[3]
    for i in range(out.shape[0]):
        tmp = a + b + w
        w += np.uint64(1)
        a = b ^ (b >> np.uint64(11))
        b = c + (c << np.uint64(3))
        c = ((c << np.uint64(24)) | (c >> np.uint64(40))) + tmp
        out[i] = np.float64(np.int64(tmp >> np.uint64(11))) * (1.0 / 9007199254740992.0)
    state[0] = a
    state[1] = b
    state[2] = c
    state[3] = w


# sampling_grid copies the columns of up to _GROUP_COLUMNS pairs at a time, at most _GROUP_BYTES per thread
_GROUP_COLUMNS = 128
_GROUP_BYTES = 96 * 2**20


@numba.njit(**_JIT)
def _k_grid_chunk(a_chunk, c_chunk, g_chunk, kinds, alphas, gammas, ns, n_seeds, second, sfc, scale, sums, sq, nd,
                  rho, binary, a_hat, acc3, acc_flat, u, nq, cc_buf, ones_row, flat, rec, guide, mark, wtmp):  # pragma: no cover
    """The loop of ``_chunk_grid`` over its pairs, compiled (no Python between the kernels): per pair
    ``_k_prepare``, its uniforms (``_k_sfc64_uniforms``, shared by the samplers), then per sampler
    (kinds: 0 uniform, 1 MG-IS, 2 AG-IS) its N q (``_k_is_q``, the kernel of ``mg_is_q`` / ``ag_is_q``)
    and ``_k_engine`` (mode 1: tables, draws, sums) into sums, sq, nd[sampler, pair * S + seed].
    Pairs with undefined rho use the guide ``ones_row`` (q uniform, as ``_k_prepare`` set a_hat = 1).
    Returns -1, or the index p * len(kinds) + sampler of the first pair and sampler whose q is not
    valid (u summing to zero, a negative guide, q = 0 somewhere): the caller raises, naming it."""
    kc = a_chunk.shape[0]
    n = a_chunk.shape[1]
    n_samp = kinds.shape[0]
    for p in range(kc):
        _k_prepare(a_chunk[p : p + 1], c_chunk[p : p + 1], a_hat, acc3, rho[p : p + 1], binary[p : p + 1])
        if n_seeds == 0:
            continue
        cc = cc_buf[:0]
        if not binary[p]:
            for i in range(n):
                ci = np.float64(c_chunk[p, i])
                cc_buf[i] = ci * ci
            cc = cc_buf
        _k_sfc64_uniforms(sfc, u)
        r0 = p * n_seeds
        r1 = r0 + n_seeds
        for s in range(n_samp):
            if kinds[s] == 0:
                _k_engine(1, nq[:0], u, scale, n_seeds, acc_flat, cc, ns, second, flat, sums[s, r0:r1],
                          sq[s, r0:r1], nd[s, r0:r1], rec, guide, mark, wtmp)
                continue
            g = g_chunk[p : p + 1] if np.isfinite(rho[p]) else ones_row
            tot, neg = _k_is_q(a_hat, g, kinds[s] == 1, alphas[s], gammas[s], np.float64(n), nq)
            nonpos = 0
            for i in range(n):  # counted, not a running minimum (min() compiles to a branch taken at random)
                nonpos += not nq[0, i] > 0.0
            if not (tot[0] > 0 and neg[0] == 0 and nonpos == 0):
                return p * n_samp + s
            _k_engine(1, nq, u, scale, n_seeds, acc_flat, cc, ns, second, flat, sums[s, r0:r1], sq[s, r0:r1],
                      nd[s, r0:r1], rec, guide, mark, wtmp)
    return -1


_KINDS = {"uniform": 0, "mg_is": 1, "ag_is": 2}


def _chunk_grid(
    a_chunk: np.ndarray,
    c_chunk: np.ndarray,
    g_chunk: np.ndarray | None,
    specs: list[dict],
    ns: np.ndarray,
    n_seeds: int,
    estimator: str,
    seed_seq: np.random.SeedSequence,
    pair_offset: int,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One chunk of pairs: a_chunk, c_chunk, g_chunk are (kc, N) (pairs along rows; float32 stays float32).

    Pair by pair, from the columns to the sums while the pair is in cache, in one compiled loop
    (``_k_grid_chunk``): ``_k_prepare`` (a_hat, exact rho, the moment table), the pair's uniforms, then
    for each sampler its N q (``_k_is_q``, the kernel of ``mg_is_q`` / ``ag_is_q``), tables, draws and
    sums (``_k_engine``, the engine of ``PairDraws.draw_and_sum``). One SFC64 stream (from seed_seq,
    ``_k_sfc64_uniforms``) is consumed pair by pair in (pair, seed, draw) order; a pair's uniforms are
    shared by every sampler (common random numbers: each sampler's draws are i.i.d. from its own q, and
    samplers are compared on the same randomness). A q that cannot be sampled (it raises in
    ``PairDraws``) is raised through ``PairDraws.draw_and_sum``, which names the pair.
    The sums become rho_hat, no_variation and the standard error for the whole chunk at once
    (``estimates_from_sums``).
    Returns rho (kc,) and, per sampler, rho_hat, no_variation, n_distinct and se, each (kc, S, n_seg).
    """
    kc, n = a_chunk.shape
    n_seg = len(ns)
    nmax = int(ns[-1])
    shape = (kc, n_seeds, n_seg)
    n_samp = len(specs)
    sums = np.empty((n_samp, kc * n_seeds, n_seg, 4))
    sq = np.empty((n_samp, kc * n_seeds, n_seg, 10))
    nd = np.empty((n_samp, kc * n_seeds, n_seg), dtype=np.int32)
    rho = np.empty(kc)
    binary = np.empty(kc, dtype=np.bool_)
    sfc = _sfc64_state(seed_seq)
    work = _Workspace(n)
    a_hat = np.empty((1, n))
    acc = np.empty((1, n), dtype=np.complex128)
    acc3 = acc.view(np.float64).reshape(1, n, 2)
    u = np.empty(n_seeds * nmax)
    g_chunk = np.empty((kc, 0)) if g_chunk is None else g_chunk  # read only by MG-IS, which needs it
    kinds = np.array([_KINDS[s["name"]] for s in specs], dtype=np.int64)
    alphas = np.array([float(s.get("alpha", 2.0)) for s in specs])
    gammas = np.array([float(s.get("gamma", 0.0)) for s in specs])
    bad = _k_grid_chunk(a_chunk, c_chunk, g_chunk, kinds, alphas, gammas, ns, n_seeds, True, sfc, _scale_below(n),
                        sums, sq, nd, rho, binary, a_hat, acc3, acc3.reshape(-1), u, work.nq_buffer(1), np.empty(n),
                        np.ones((1, g_chunk.shape[1]), dtype=g_chunk.dtype), work.flat_buffer(n_seeds, nmax),
                        work.rec, work.guide, work.mark, work.wtmp)
    if bad >= 0:  # the buffers hold that pair's a_hat and uniforms: the checked path says what is wrong
        p, i = divmod(int(bad), n_samp)
        g = g_chunk[p : p + 1] if np.isfinite(rho[p]) else np.ones((1, n))
        try:
            PairDraws.draw_and_sum(specs[i], a_hat, g, ns, n_seeds, u, acc, None, pairs=np.array([pair_offset + p]))
        except ValueError as e:
            raise ValueError(f"pair {pair_offset + p}, sampler {sampler_label(specs[i])}: {e}") from e
        raise AssertionError  # not reached: the kernel refuses the q that PairDraws refuses
    valid = np.isfinite(rho)
    rho_hats, no_vars, n_distincts, ses = [], [], [], []
    for i in range(n_samp):
        rh_all, nv_all, se_all = (x.reshape(shape) for x in estimates_from_sums(sums[i], sq[i], ns, estimator))
        rh_all[~valid] = np.nan
        nv_all[~valid] = False
        se_all[~valid] = np.nan
        rho_hats.append(rh_all)
        no_vars.append(nv_all)
        n_distincts.append(nd[i].reshape(shape))
        ses.append(se_all)
    return rho, rho_hats, no_vars, n_distincts, ses


def _pair_columns(x: np.ndarray, cols: np.ndarray, block: int = 1024, dtype=np.float64) -> np.ndarray:
    """x[:, cols] as a (len(cols), N) array of ``dtype`` (pairs along rows); dtype None keeps a float32
    or float64 x as it is (half the memory traffic for float32 inputs; the grid converts a block of
    pairs at a time, while it is in cache) and makes anything else float64.

    The columns are read in blocks of ``block`` rows (a slice view when cols is a contiguous range),
    each block copied contiguously and then transposed into the float64 output while it is in cache;
    several times faster than numpy's plain transposing copy of a tall array.
    """
    x = np.asarray(x)
    cols = np.asarray(cols, dtype=np.intp)
    if cols.size > 1 and np.all(np.diff(cols) == 1):
        sub = x[:, int(cols[0]) : int(cols[-1]) + 1]
    else:
        sub = x[:, cols]
    n = sub.shape[0]
    if dtype is None:
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    out = np.empty((len(cols), n), dtype=dtype)
    for i in range(0, n, block):
        out[:, i : i + block] = np.ascontiguousarray(sub[i : i + block]).T
    return out


def sampling_grid(
    acts: np.ndarray,
    c_true: np.ndarray,
    c_guide: np.ndarray | None = None,
    samplers: Sequence[Mapping | str] = DEFAULT_SAMPLERS,
    ns: Sequence[int] = DEFAULT_NS,
    seeds: Iterable[int] = range(30),
    estimator: str = "unbiased",
    rng: int = 0,
    neuron_index: np.ndarray | None = None,
    concept_index: np.ndarray | None = None,
    chunk_size: int = 32,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """RCE grid over pairs x samplers x sample sizes x seeds (Setting 1 of seed 001, SPEC sec. 5).

    acts: (N, K) activations. c_true: (N, K) presence (0/1 ground truth or soft) of the concept paired
    with each neuron; c_guide: (N, K) the concept model's estimate (needed by MG-IS). With
    ``neuron_index`` / ``concept_index`` (length P) pair j is (acts[:, neuron_index[j]],
    c_true[:, concept_index[j]], c_guide[:, concept_index[j]]) and no (N, P) copy is made.

    For every (pair, sampler, seed) max(ns) inputs are drawn once; the estimate for each n uses the
    first n draws (prefix reuse), so estimates along n are nested like a growing study. Duplicate
    inputs are rated once: n_distinct is the number of distinct inputs among the first n draws.
    Pairs are processed in chunks of ``chunk_size`` (threads: ``n_threads``, default 2); random
    streams derive from (rng, chunk, sampler), so results depend on ``chunk_size`` but not on the
    number of threads. Pairs with undefined rho (constant activations or concept) get NaN rows.
    The draws, weights and estimates are made by the draw engine ``PairDraws`` (shared with Setting 2).

    Returns a long DataFrame: pair, sampler, n, seed, rho, rho_hat, rce, n_distinct, no_variation
    (True where the sample showed no variation in c, so rho_hat = 0 was reported), se (the
    delta-method standard error of rho_hat, ``estimates_from_sums``; NaN where no_variation or n < 2)
    and lo, hi (the 95% interval rho_hat -/+ 1.96 se clipped to [-1, 1]; NaN with se).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    acts = np.asarray(acts)
    c_true = np.asarray(c_true)
    if acts.ndim != 2 or c_true.ndim != 2 or acts.shape[0] != c_true.shape[0]:
        raise ValueError(f"acts and c_true must be (N, K) and (N, M) with equal N; got {acts.shape}, {c_true.shape}")
    if c_guide is not None:
        c_guide = np.asarray(c_guide)
        if c_guide.shape != c_true.shape:
            raise ValueError(f"c_guide shape {c_guide.shape} differs from c_true shape {c_true.shape}")
    if neuron_index is None and concept_index is None:
        if acts.shape[1] != c_true.shape[1]:
            raise ValueError("acts and c_true have different column counts: give neuron_index/concept_index")
        neuron_index = concept_index = np.arange(acts.shape[1])
    elif neuron_index is None or concept_index is None:
        raise ValueError("give both neuron_index and concept_index (or neither)")
    else:
        neuron_index = np.asarray(neuron_index, dtype=np.int64)
        concept_index = np.asarray(concept_index, dtype=np.int64)
        if neuron_index.shape != concept_index.shape:
            raise ValueError("neuron_index and concept_index must have the same length")
    specs = [_sampler_spec(s) for s in samplers]
    labels = [sampler_label(s) for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sampler labels must be unique; got {labels}")
    if any(s["name"] == "mg_is" for s in specs) and c_guide is None:
        raise ValueError("MG-IS needs c_guide (the concept model's presence estimates)")
    for s in specs:
        if "gamma" in s:
            _check_gamma(s["gamma"])
    ns_arr = np.asarray(sorted(set(int(n) for n in ns)), dtype=np.int64)
    if ns_arr[0] < 1:
        raise ValueError("sample sizes must be >= 1")
    if len(ns_arr) > 127:
        raise ValueError("at most 127 sample sizes")
    seeds = list(seeds)
    n_seeds = len(seeds)
    n_pairs = len(neuron_index)
    root = np.random.SeedSequence(rng)
    starts = list(range(0, n_pairs, chunk_size))
    chunk_seqs = root.spawn(len(starts))
    # the columns are copied a group of chunks at a time (longer runs of each row are read at once: the
    # copy of a tall matrix's columns is bound by the rows' cache lines); each chunk still draws from its
    # own stream, so the results do not depend on the grouping
    per_chunk = 3 * chunk_size * acts.shape[0] * max(acts.itemsize, c_true.itemsize)
    group = max(1, min(_GROUP_COLUMNS // chunk_size, _GROUP_BYTES // max(1, per_chunk)))
    groups = [starts[i : i + group] for i in range(0, len(starts), group)]

    def work(gi: int):
        first = gi * group
        sl = slice(groups[gi][0], groups[gi][-1] + chunk_size)
        a_g = _pair_columns(acts, neuron_index[sl], dtype=None)
        c_g = _pair_columns(c_true, concept_index[sl], dtype=None)
        g_g = None if c_guide is None else _pair_columns(c_guide, concept_index[sl], dtype=None)
        out = []
        for k, start in enumerate(groups[gi]):
            rs = slice(start - sl.start, start - sl.start + chunk_size)
            out.append(_chunk_grid(a_g[rs], c_g[rs], None if g_g is None else g_g[rs], specs, ns_arr, n_seeds,
                                   estimator, chunk_seqs[first + k], start))
        return out

    n_threads = n_threads or min(2, os.cpu_count() or 1)
    if n_threads > 1 and len(groups) > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            results = [r for rs in pool.map(work, range(len(groups))) for r in rs]
    else:
        results = [r for gi in range(len(groups)) for r in work(gi)]

    rho = np.concatenate([r[0] for r in results])
    n_seg = len(ns_arr)
    n_samp = len(labels)
    per = n_pairs * n_seeds * n_seg  # rows per sampler; sampler-major, then pair, seed, n

    def stacked(i: int) -> np.ndarray:
        return np.concatenate([np.concatenate([r[i][s_i] for r in results]).ravel() for s_i in range(n_samp)])

    rho_hat, no_variation, n_distinct, se = stacked(1), stacked(2), stacked(3), stacked(4)
    rho_rows = np.tile(np.repeat(rho, n_seeds * n_seg), n_samp)
    half = Z95 * se
    df = pd.DataFrame(
        {
            "pair": np.tile(np.repeat(np.arange(n_pairs), n_seeds * n_seg), n_samp),
            "sampler": pd.Categorical.from_codes(np.repeat(np.arange(n_samp, dtype=np.int8), per), categories=labels),
            "n": np.tile(ns_arr, n_pairs * n_seeds * n_samp),
            "seed": np.tile(np.repeat(np.asarray(seeds), n_seg), n_pairs * n_samp),
            "rho": rho_rows,
            "rho_hat": rho_hat,
            "rce": relative_corr_error(rho_hat, rho_rows),
            "n_distinct": n_distinct,
            "no_variation": no_variation,
            "se": se,
            "lo": np.clip(rho_hat - half, -1.0, 1.0),
            "hi": np.clip(rho_hat + half, -1.0, 1.0),
        }
    )
    return df


def sampling_grid_loop(
    acts: np.ndarray,
    c_true: np.ndarray,
    c_guide: np.ndarray | None = None,
    samplers: Sequence[Mapping | str] = DEFAULT_SAMPLERS,
    ns: Sequence[int] = DEFAULT_NS,
    seeds: Iterable[int] = range(30),
    estimator: str = "unbiased",
    rng: int = 0,
) -> pd.DataFrame:
    """Straightforward reference of ``sampling_grid``: Python loops over pairs, samplers, seeds and n,
    with an independent ``rng.choice`` draw of n inputs for every (pair, sampler, seed, n) and no
    prefix reuse (slow; for tests and benchmarks).

    Same columns and the same estimator; random streams differ, so agreement is distributional.
    """
    acts = np.asarray(acts, dtype=np.float64)
    c_true = np.asarray(c_true, dtype=np.float64)
    gen = np.random.default_rng(rng)
    ns = sorted(set(int(n) for n in ns))
    rows = []
    for k in range(acts.shape[1]):
        a_hat = standardise_activations(acts[:, k])
        c = c_true[:, k]
        rho = float(exact_rho(a_hat, c))
        for spec in samplers:
            label = sampler_label(spec)
            if not np.isfinite(rho):
                for seed in seeds:
                    for n in ns:
                        rows.append((k, label, n, seed, rho, np.nan, np.nan, 0))
                continue
            q = sampler_q(spec, a_hat, None if c_guide is None else np.asarray(c_guide)[:, k])
            check_q(q)
            for seed in seeds:
                for n in ns:
                    idx = gen.choice(len(q), size=n, replace=True, p=q)
                    w = importance_weights(q[idx], len(q))
                    rh = float(estimate_rho(a_hat[idx], c[idx], w, estimator))
                    rows.append((k, label, n, seed, rho, rh, abs(rh - rho) / abs(rho), len(np.unique(idx))))
    return pd.DataFrame(rows, columns=["pair", "sampler", "n", "seed", "rho", "rho_hat", "rce", "n_distinct"])


def summarise_rce(
    df: pd.DataFrame, floor: float = 0.05, by: Sequence[str] = ("sampler", "n"), extra: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean RCE (and SEM over pairs, after averaging seeds) per group, excluding |rho| < floor.

    Returns columns (*by, rce, sem, n_pairs, n_excluded, mean_n_distinct, mean_<extra>...), plus
    n_no_variation and share_no_variation when ``df`` has a ``no_variation`` column: how many of the
    group's samples (pair x seed rows of the kept pairs) showed no variation in c, so that rho_hat = 0
    was reported, and their share. ``n_excluded`` counts the pairs dropped because |rho| < floor or rho
    is undefined (SPEC sec. 3); a group whose pairs are all excluded is kept with n_pairs = 0. Missing
    values in ``by`` columns (e.g. a beta that only some aggregations have) form their own group.
    """
    by = list(by)
    keep = df["rho"].abs() >= floor
    excluded = df.loc[~keep].groupby(by, observed=True, dropna=False)["pair"].nunique().rename("n_excluded")
    kept = df.loc[keep]
    per_pair = kept.groupby([*by, "pair"], observed=True, dropna=False).agg(
        rce=("rce", "mean"), nd=("n_distinct", "mean"), **{e: (e, "mean") for e in extra}
    )
    out = per_pair.groupby(by, observed=True, dropna=False).agg(
        rce=("rce", "mean"), sem=("rce", "sem"), n_pairs=("rce", "size"), mean_n_distinct=("nd", "mean"),
        **{f"mean_{e}": (e, "mean") for e in extra},
    )
    no_var = []
    if "no_variation" in df:
        no_var = ["n_no_variation", "share_no_variation"]
        flag = kept["no_variation"].astype(bool)
        out = out.join(flag.groupby([kept[b] for b in by], observed=True, dropna=False).agg(
            n_no_variation="sum", share_no_variation="mean"))
    out = out.join(excluded, how="outer").fillna({"n_excluded": 0, "n_pairs": 0, **dict.fromkeys(no_var[:1], 0)})
    for col in ("n_excluded", "n_pairs", *no_var[:1]):
        out[col] = out[col].astype(int)
    out = out.reset_index()
    out.attrs["floor"] = floor
    out.attrs["n_excluded_pairs"] = int(df.loc[~keep, "pair"].nunique())
    return out[[*by, "rce", "sem", "n_pairs", "n_excluded", "mean_n_distinct", *(f"mean_{e}" for e in extra), *no_var]]
