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


# ----------------------------------------------------------------------------------------------
# Standardisation, samplers, weights
# ----------------------------------------------------------------------------------------------
def standardise_activations(acts: np.ndarray, axis: int = 0) -> np.ndarray:
    """a_hat = (a - mean_D a) / std_D a with population statistics (ddof = 0; SPEC sec. 3).

    Constant columns give NaN (their correlation is undefined).
    """
    return standardise(acts, axis=axis)[0]


def _mix_with_p(u: np.ndarray, gamma: float, what: str, axis: int) -> np.ndarray:
    """(1 - gamma) u / sum(u) + gamma / N along ``axis``, in place on ``u`` (a float64 array the caller owns)."""
    total = u.sum(axis=axis, keepdims=True)
    bad = np.flatnonzero(~(np.squeeze(total, axis) > 0))
    if bad.size:
        raise ValueError(f"{what}: the unnormalised sampling weights sum to zero (or NaN) for column {bad[0]}")
    u *= (1.0 - gamma) / total
    u += gamma / u.shape[axis]
    return u


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")


def mg_is_q(a_hat: np.ndarray, c_hat: np.ndarray, gamma: float = 0.2, axis: int = 0) -> np.ndarray:
    """MG-IS: q = (1 - gamma) |a_hat| c_hat / sum(|a_hat| c_hat) + gamma / N  (SPEC sec. 3; seed 001 B.1).

    ``c_hat`` is the concept model's estimate of concept presence (probabilities in [0, 1]).
    Works column-wise (axis=0, inputs along rows) or row-wise (axis=1) for many pairs at once; the
    one place MG-IS's q is computed (``sampler_q`` and the draw engine ``PairDraws`` call it).
    """
    _check_gamma(gamma)
    a = np.asarray(a_hat, dtype=np.float64)
    c = np.asarray(c_hat, dtype=np.float64)
    if c.size and c.min() < 0:
        raise ValueError("c_hat must be non-negative (a presence probability)")
    n = a.shape[axis]
    if gamma == 1.0:
        return np.full(np.broadcast_shapes(a.shape, c.shape), 1.0 / n)
    u = np.multiply(a, c)  # |a_hat| c_hat = |a_hat c_hat| as c_hat >= 0
    np.abs(u, out=u)
    return _mix_with_p(u, gamma, "MG-IS", axis)


def ag_is_q(a_hat: np.ndarray, alpha: float = 2.0, gamma: float = 0.2, axis: int = 0) -> np.ndarray:
    """AG-IS: q = (1 - gamma) |a_hat|^alpha / sum |a_hat|^alpha + gamma / N  (seed 001 eqs. 16-17)."""
    _check_gamma(gamma)
    a = np.asarray(a_hat, dtype=np.float64)
    n = a.shape[axis]
    if gamma == 1.0:
        return np.full(a.shape, 1.0 / n)
    u = np.abs(a)
    u **= float(alpha)
    return _mix_with_p(u, gamma, "AG-IS", axis)


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


def sampler_q(spec: Mapping | str, a_hat: np.ndarray, c_guide: np.ndarray | None = None, axis: int = 0) -> np.ndarray:
    """q for one sampler spec ({"name": "uniform"} / {"name": "mg_is", "gamma": g} / {"name": "ag_is", ...})."""
    s = _sampler_spec(spec)
    a_hat = np.asarray(a_hat)
    if s["name"] == "uniform":
        return np.full(a_hat.shape, 1.0 / a_hat.shape[axis])
    if s["name"] == "mg_is":
        if c_guide is None:
            raise ValueError("MG-IS needs c_guide (the concept model's presence estimates)")
        return mg_is_q(a_hat, c_guide, gamma=s["gamma"], axis=axis)
    return ag_is_q(a_hat, alpha=s["alpha"], gamma=s["gamma"], axis=axis)


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
# the tables, as compiled loops one. nogil: the grid's thread pool runs them in parallel. cache: compiled
# once per machine (into __pycache__), not per process.
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}  # x / 0 = inf, as in NumPy


@numba.njit(**_JIT)
def _k_row_tables(nq_row, z, w, guide):  # pragma: no cover - compiled
    """The tables of one pair's N q (a row summing to N) for inverse-CDF draws: z = cumsum(N q), last
    entry +inf; w = 1 / (N q), the importance weights; guide[j] = #{i < N - 1 : z[i] < j}.

    z_i < j  <=>  floor(z_i) + 1 <= j, and floor(z_i) + 1 is non-decreasing in i (q >= 0), so recording
    the last i + 1 of each bucket and taking the running maximum counts it without data-dependent
    branches.
    """
    n = nq_row.shape[0]
    for i in range(n):  # vectorised by the compiler
        w[i] = 1.0 / nq_row[i]
    guide[:] = 0
    acc = 0.0
    for i in range(n - 1):
        acc += nq_row[i]
        z[i] = acc
        b = int(acc) + 1
        if b < n:
            guide[b] = i + 1
    z[n - 1] = np.inf
    c = 0
    for j in range(n):
        c = max(c, guide[j])
        guide[j] = c


@numba.njit(**_JIT)
def _k_engine(mode, nq, u, scale, n_seeds, acc, cc, ends, second, flat, sums, sq, nd, z, w, guide, mark):  # pragma: no cover
    """The draw engine's one loop over the draws of a block of pairs (rows = pair * S + seed).

    mode 0: draw (write ``flat``); 1: draw and sum; 2: sum the draws given in ``flat``.
    nq (kb, N): N q per pair, or (0, N) for uniform q. u: (rows * nmax,) float64 uniforms in (pair,
    seed, draw) order (modes 0, 1); a draw is the first i with z_i > u N' (``_k_row_tables``; for uniform
    q, floor(u N')), N' = ``scale``. flat (rows, nmax) receives / holds pair * N + input.
    Sums (modes 1, 2), over the first ends[b] draws of each row: ``sums`` (rows, n_seg, 4) of the terms
    t = (w, w a_hat c, w c, w c^2), w = p / q = 1 / (N q) (1 for uniform q), from acc (kb * N, 2) =
    (a_hat c, c) per input and cc (kb * N,) = c^2 (empty: binary c, c^2 = c); ``sq`` (rows, n_seg, 10)
    if ``second``: the sums of t_k t_l, k <= l, in the order 00 01 02 03 11 12 13 22 23 33; ``nd``
    (rows, n_seg): the distinct inputs among the draws (a stamp per input marks the rows that saw it).
    z, w (N,), guide (N,) int32, mark (N,) int32: scratch, reused across calls (fresh buffers of this
    size cost page faults on every call).
    """
    n = nq.shape[1]
    nmax = flat.shape[1]
    kb = flat.shape[0] // n_seeds
    weighted = nq.shape[0] > 0
    soft = cc.shape[0] > 0
    draw = mode != 2
    add = mode != 0
    mark[:] = -1
    for r in range(kb):
        base = r * n
        if weighted:
            if draw:
                _k_row_tables(nq[r], z, w, guide)
            else:
                for i in range(n):
                    w[i] = 1.0 / nq[r, i]
        for row in range(r * n_seeds, (r + 1) * n_seeds):
            if draw:  # the row's draws first, then its sums: the search's hard-to-predict branches
                d0 = row * nmax  # stall nothing else (measured 2x faster than one fused loop)
                if weighted:
                    for t in range(nmax):
                        x = u[d0 + t] * scale
                        pos = guide[int(x)]
                        pos += np.intp(z[pos] <= x)  # two branch-free steps cover most draws
                        pos += np.intp(z[pos] <= x)
                        while z[pos] <= x:
                            pos += 1
                        flat[row, t] = base + pos
                else:
                    for t in range(nmax):
                        flat[row, t] = base + int(u[d0 + t] * scale)
            if not add:
                continue
            s0 = s1 = s2 = s3 = 0.0
            q00 = q01 = q02 = q03 = q11 = q12 = q13 = q22 = q23 = q33 = 0.0
            cnt = 0
            b = 0
            for t in range(nmax):
                f = flat[row, t]
                pos = f - base
                wi = w[pos] if weighted else 1.0
                t1 = wi * acc[f, 0]
                t2 = wi * acc[f, 1]
                s0 += wi
                s1 += t1
                s2 += t2
                if second:
                    q00 += wi * wi
                    q01 += wi * t1
                    q02 += wi * t2
                    q11 += t1 * t1
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
                if mark[pos] != row:
                    mark[pos] = row
                    cnt += 1
                if t + 1 == ends[b]:
                    sums[row, b, 0] = s0
                    sums[row, b, 1] = s1
                    sums[row, b, 2] = s2
                    sums[row, b, 3] = s3 if soft else s2  # binary c: c^2 = c
                    if second:
                        sq[row, b, 0] = q00
                        sq[row, b, 1] = q01
                        sq[row, b, 2] = q02
                        sq[row, b, 3] = q03 if soft else q02
                        sq[row, b, 4] = q11
                        sq[row, b, 5] = q12
                        sq[row, b, 6] = q13 if soft else q12
                        sq[row, b, 7] = q22
                        sq[row, b, 8] = q23 if soft else q22
                        sq[row, b, 9] = q33 if soft else q22
                    nd[row, b] = cnt
                    b += 1


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


def _standardise_and_rho(a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``standardise_activations`` and ``exact_rho`` (pairs along rows) in fewer passes.

    a is overwritten with a_hat (it must be a float64 array owned by the caller).
    """
    n = a.shape[1]
    mean = a.mean(axis=1)
    a -= mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", a, a) / n)
    a /= np.where(std > 0, std, np.nan)[:, None]  # constant rows: NaN (dividing by NaN raises no warning)
    m_ac = np.einsum("ij,ij->i", a, c) / n
    m_c = c.mean(axis=1)
    var = np.einsum("ij,ij->i", c, c) / n - m_c**2
    rho = np.where(var > 1e-15, m_ac / np.sqrt(np.maximum(var, 1e-300)), np.nan)
    return a, rho


def moment_table(a_hat: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The complex table a_hat c + i c (pairs along rows) that ``PairDraws.estimate`` gathers at the draws:
    one complex gather carries both E[a_hat c] (real part) and E[c] (imaginary part)."""
    acc = np.empty(np.broadcast_shapes(a_hat.shape, c.shape), dtype=np.complex128)
    np.multiply(a_hat, c, out=acc.real)
    acc.imag = c
    return acc


class _Workspace:
    """Scratch buffers of the draw engine for N inputs, reused across calls by one thread: the scaled
    CDF z, the weights w, the guide table, the distinct-input stamps and a buffer for the draws."""

    def __init__(self, n_inputs: int):
        self.n_inputs = int(n_inputs)
        self.z = np.empty(self.n_inputs)
        self.w = np.empty(self.n_inputs)
        self.guide = np.empty(self.n_inputs, dtype=np.int32)
        self.mark = np.empty(self.n_inputs, dtype=np.int32)
        self._flat = np.empty(0, dtype=np.intp)

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
            nq = sampler_q(s, a_hat, c_guide, axis=1)
            nq *= n
            if not nq.min() > 0:  # zero or NaN somewhere: let check_q name the pair and input
                check_q(nq.T, names=np.arange(kb) if pairs is None else pairs)
        flat = np.empty((rows, nmax), dtype=np.intp) if work is None else work.flat_buffer(rows, nmax)
        draws = cls(flat, nq, n, ns, n_seeds, pairs)
        out = draws._run(0 if acc is None else 1, np.ascontiguousarray(u, dtype=np.float64), acc, cc, second, work)
        return (draws,) if out is None else (draws, *out)

    def _run(self, mode: int, u: np.ndarray, acc, cc, second: bool, work: _Workspace | None = None):
        """Call ``_k_engine``; returns (sums, sq, nd), None for mode 0."""
        rows, _ = self.flat.shape
        n = self.n_inputs
        n_seg = len(self.ns)
        if mode:
            sums = np.zeros((rows, n_seg, 4))
            sq = np.zeros((rows, n_seg, 10))  # written only if second, returned only then
            nd = np.zeros((rows, n_seg), dtype=np.int32)
            acc2 = np.ascontiguousarray(acc, dtype=np.complex128).reshape(-1).view(np.float64).reshape(-1, 2)
            cc1 = _EMPTY if cc is None else np.ascontiguousarray(cc, dtype=np.float64).reshape(-1)
        else:
            sums, sq, nd = _EMPTY3, _EMPTY3, _EMPTY2I
            acc2, cc1 = _EMPTY2, _EMPTY
        nq = np.empty((0, n)) if self.nq is None else np.ascontiguousarray(self.nq, dtype=np.float64)
        # the compiled loop does not check bounds: check the shapes (and given draws) it relies on
        size = self.n_pairs * n
        if self.flat.shape[1] != self.ns[-1] or rows != self.n_pairs * self.n_seeds:
            raise ValueError(f"draws of shape {self.flat.shape}; expected ({self.n_pairs * self.n_seeds}, {self.ns[-1]})")
        if nq.shape[0] not in (0, self.n_pairs) or nq.shape[1] != n:
            raise ValueError(f"nq has shape {nq.shape}; expected ({self.n_pairs}, {n})")
        if mode and (acc2.shape[0] != size or cc1.shape[0] not in (0, size)):
            raise ValueError(f"tables of {acc2.shape[0]} (and {cc1.shape[0]}) entries for {self.n_pairs} pairs x {n} inputs")
        if mode == 2 and self.flat.size and not (self.flat.min() >= 0 and self.flat.max() < size):
            raise ValueError(f"draws must lie in [0, {size}); got {self.flat.min()} .. {self.flat.max()}")
        if rows and self.flat.shape[1]:
            work = work if work is not None and work.n_inputs == n else _Workspace(n)
            _k_engine(mode, nq, u, _scale_below(n), self.n_seeds, acc2, cc1, self.ns, bool(second), self.flat,
                      sums, sq, nd, work.z, work.w, work.guide, work.mark)
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
_EMPTY2 = np.empty((0, 2))
_EMPTY3 = np.empty((0, 0, 0))
_EMPTY2I = np.empty((0, 0), dtype=np.int32)
Z95 = 1.959963984540054  # the standard normal's 0.975 quantile: 95% intervals
_SQ_INDEX = np.array([[0, 1, 2, 3], [1, 4, 5, 6], [2, 5, 7, 8], [3, 6, 8, 9]])  # (k, l) -> packed k <= l


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
    n = np.asarray(ns, dtype=np.float64)
    den = n if estimator == "unbiased" else sums[..., 0]
    rh, nv = _rho_and_no_variation(sums[..., 1] / den, sums[..., 2] / den, sums[..., 3] / den)
    if sq is None:
        return rh, nv, None
    m = sums / n[:, None]
    sn = estimator == "self_normalised"
    big = m[..., 1:] / m[..., :1] if sn else m[..., 1:]
    m1, m2, m3 = big[..., 0], big[..., 1], big[..., 2]
    v = m3 - m2 * m2
    v = np.where(v > 0, v, np.nan)
    sv = v * np.sqrt(v)
    g = np.empty(m.shape)
    g[..., 1] = 1.0 / np.sqrt(v)
    g[..., 2] = m1 * m2 / sv
    g[..., 3] = -0.5 * m1 / sv
    if sn:
        g[..., 0] = -(g[..., 1] * m1 + g[..., 2] * m2 + g[..., 3] * m3) / m[..., 0]
        g[..., 1:] /= m[..., :1]
    else:
        g[..., 0] = 0.0
    cov = sq[..., _SQ_INDEX] - sums[..., :, None] * sums[..., None, :] / n[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.einsum("...k,...kl,...l->...", g, cov, g) / (n - 1.0)
    se = np.sqrt(np.maximum(var, 0.0) / n)
    se = np.where((n >= 2) & ~nv, se, np.nan)
    return rh, nv, se


_BLOCK_DRAWS = 50_000


def _block_pairs(n_seeds: int, nmax: int) -> int:
    """Pairs per block of draws: about _BLOCK_DRAWS draws (one pair at the paper scale, 30 x 1,600),
    so the working arrays stay in cache (measured: 50,000 per block was the fastest of 50k-400k)."""
    return max(1, _BLOCK_DRAWS // max(1, n_seeds * nmax))


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
    """One chunk of pairs: a_chunk, c_chunk, g_chunk are (kc, N) (pairs along rows).

    One generator (from seed_seq) is consumed block by block of pairs; a block's uniforms are shared by
    every sampler (common random numbers: each sampler's draws are i.i.d. from its own q, and samplers
    are compared on the same randomness). Each sampler's draws (``PairDraws.draw``) give the moment
    sums (``PairDraws.moment_sums``), turned into rho_hat, no_variation and the standard error for the
    whole chunk at once (``estimates_from_sums``).
    Returns rho (kc,) and, per sampler, rho_hat, no_variation, n_distinct and se, each (kc, S, n_seg).
    """
    kc = a_chunk.shape[0]
    c = c_chunk  # float64 (from _pair_columns)
    a_hat, rho = _standardise_and_rho(a_chunk, c)
    valid = np.isfinite(rho)
    if not valid.all():  # undefined pairs are sampled uniformly and reported NaN
        a_hat[~valid] = 1.0
        if g_chunk is not None:
            g_chunk = np.where(valid[:, None], g_chunk, 1.0)
    binary = bool(np.all((c == 0) | (c == 1)))
    n_seg = len(ns)
    nmax = int(ns[-1])
    bp = _block_pairs(n_seeds, nmax)
    shape = (kc, n_seeds, n_seg)
    n_samp = len(specs)
    sums = np.empty((n_samp, kc * n_seeds, n_seg, 4))
    sq = np.empty((n_samp, kc * n_seeds, n_seg, 10))
    nd = np.empty((n_samp, kc * n_seeds, n_seg), dtype=np.int32)
    gen = np.random.Generator(np.random.PCG64DXSM(seed_seq))
    work = _Workspace(a_hat.shape[1])
    for b0 in range(0, kc, bp):
        # block by block: the block's tables are built right before the samplers use them (in cache),
        # and its uniforms are shared by the samplers (common random numbers)
        sl = slice(b0, min(b0 + bp, kc))
        rows = slice(sl.start * n_seeds, sl.stop * n_seeds)
        acc = moment_table(a_hat[sl], c[sl])
        cc = None if binary else c[sl] * c[sl]
        u = gen.random((sl.stop - sl.start) * n_seeds * nmax)
        for i, spec in enumerate(specs):
            _, sums[i, rows], sq[i, rows], nd[i, rows] = PairDraws.draw_and_sum(
                spec, a_hat[sl], None if g_chunk is None else g_chunk[sl], ns, n_seeds, u, acc, cc,
                pairs=np.arange(pair_offset + sl.start, pair_offset + sl.stop), work=work,
            )
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


def _pair_columns(x: np.ndarray, cols: np.ndarray, block: int = 1024) -> np.ndarray:
    """x[:, cols] as a (len(cols), N) float64 array (pairs along rows).

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
    out = np.empty((len(cols), n), dtype=np.float64)
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

    def work(i: int):
        sl = slice(starts[i], starts[i] + chunk_size)
        a_chunk = _pair_columns(acts, neuron_index[sl])
        c_chunk = _pair_columns(c_true, concept_index[sl])
        g_chunk = None if c_guide is None else _pair_columns(c_guide, concept_index[sl])
        return _chunk_grid(a_chunk, c_chunk, g_chunk, specs, ns_arr, n_seeds, estimator, chunk_seqs[i], starts[i])

    n_threads = n_threads or min(2, os.cpu_count() or 1)
    if n_threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            results = list(pool.map(work, range(len(starts))))
    else:
        results = [work(i) for i in range(len(starts))]

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
