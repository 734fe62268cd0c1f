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

``sampling_grid`` is the vectorised hot path (see its docstring and docs/evaluation.md for the
design); ``sampling_grid_loop`` is the straightforward per-pair reference it is benchmarked against.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neuronaudit.scoring import standardise

__all__ = [
    "DEFAULT_NS",
    "DEFAULT_SAMPLERS",
    "standardise_activations",
    "uniform_q",
    "mg_is_q",
    "ag_is_q",
    "sampler_q",
    "sampler_label",
    "check_q",
    "importance_weights",
    "mg_is_weights",
    "draw_samples",
    "estimate_moments",
    "estimate_rho",
    "exact_rho",
    "relative_corr_error",
    "distinct_counts",
    "GridDraws",
    "grid_draws",
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


def _normalise_rows(x: np.ndarray, what: str, axis: int) -> np.ndarray:
    total = x.sum(axis=axis, keepdims=True)
    bad = np.flatnonzero(~(np.squeeze(total, axis) > 0))
    if bad.size:
        raise ValueError(f"{what}: the unnormalised sampling weights sum to zero (or NaN) for column {bad[0]}")
    return x / total


def uniform_q(n_inputs: int) -> np.ndarray:
    """q = p = 1/N."""
    return np.full(n_inputs, 1.0 / n_inputs)


def mg_is_q(a_hat: np.ndarray, c_hat: np.ndarray, gamma: float = 0.2, axis: int = 0) -> np.ndarray:
    """MG-IS: q = (1 - gamma) |a_hat| c_hat / sum(|a_hat| c_hat) + gamma / N  (SPEC sec. 3; seed 001 B.1).

    ``c_hat`` is the concept model's estimate of concept presence (probabilities in [0, 1]).
    Works column-wise (axis=0, inputs along rows) for many pairs at once.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    a = np.abs(np.asarray(a_hat, dtype=np.float64))
    c = np.asarray(c_hat, dtype=np.float64)
    if np.any(c < 0):
        raise ValueError("c_hat must be non-negative (a presence probability)")
    n = a.shape[axis]
    if gamma == 1.0:
        return np.full(np.broadcast_shapes(a.shape, c.shape), 1.0 / n)
    return (1.0 - gamma) * _normalise_rows(a * c, "MG-IS", axis) + gamma / n


def ag_is_q(a_hat: np.ndarray, alpha: float = 2.0, gamma: float = 0.2, axis: int = 0) -> np.ndarray:
    """AG-IS: q = (1 - gamma) |a_hat|^alpha / sum |a_hat|^alpha + gamma / N  (seed 001 eqs. 16-17)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    a = np.abs(np.asarray(a_hat, dtype=np.float64))
    n = a.shape[axis]
    if gamma == 1.0:
        return np.full(a.shape, 1.0 / n)
    return (1.0 - gamma) * _normalise_rows(a**alpha, "AG-IS", axis) + gamma / n


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


def mg_is_weights(a_hat: np.ndarray, c_hat: np.ndarray, idx: np.ndarray, gamma: float = 0.2) -> np.ndarray:
    """Importance weights p/q of MG-IS at drawn indices ``idx`` (one pair: 1-D a_hat, c_hat)."""
    q = mg_is_q(a_hat, c_hat, gamma=gamma)
    return importance_weights(q[np.asarray(idx)], len(q))


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


def _rho_from_moments(m_ac, m_c, m_cc):
    var = m_cc - m_c * m_c
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = m_ac / np.sqrt(np.where(var > 0, var, np.nan))
    # no variation of c seen in the sample: the estimate is undefined; report 0 (no evidence), RCE = 1
    return np.where(var > 0, rho, np.where(np.isnan(m_ac), np.nan, 0.0))


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
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 1e-15, m_ac / np.sqrt(np.maximum(var, 1e-300)), np.nan)


def relative_corr_error(rho_hat, rho):
    """RCE = |rho_hat - rho| / |rho|  (SPEC sec. 3); NaN where rho is 0 or NaN."""
    rho_hat = np.asarray(rho_hat, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rho != 0, np.abs(rho_hat - rho) / np.abs(rho), np.nan)


def distinct_counts(idx: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """Number of distinct inputs among the first n draws, for each n in ns (rows of ``idx`` = samples)."""
    idx = np.atleast_2d(idx)
    return np.array([[len(np.unique(row[:n])) for n in ns] for row in idx])


# ----------------------------------------------------------------------------------------------
# The vectorised grid
# ----------------------------------------------------------------------------------------------
def _inverse_cdf_sorted(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise inverse CDF: for each u[r, t] the first i with cdf[r, i] > u[r, t].

    Chen-Asau guide table with N buckets per row (expected < 2 comparisons per draw whatever q is),
    then a vectorised forward scan; u sorted within rows keeps memory access sequential.
    cdf: (R, N) non-decreasing with cdf[:, -1] == 1; u: (R, L) in [0, 1).
    """
    r, n = cdf.shape
    m = n
    bucket = np.ceil(cdf * m).astype(np.int64)
    np.clip(bucket, 0, m, out=bucket)
    bucket += (m + 1) * np.arange(r)[:, None]
    counts = np.bincount(bucket.ravel(), minlength=r * (m + 1)).reshape(r, m + 1)
    del bucket
    guide = np.cumsum(counts, axis=1)[:, :m]  # guide[r, j] = #{i : cdf[r, i] <= j / m}
    del counts
    j = np.minimum((u * m).astype(np.int64), m - 1)
    pos = np.take_along_axis(guide, j, axis=1) - 1  # one step back guards against rounding in `bucket`
    del guide, j
    np.maximum(pos, 0, out=pos)
    pos += n * np.arange(r)[:, None]
    pos = pos.ravel()
    cdf_flat = cdf.ravel()
    u_flat = u.ravel()
    active = np.flatnonzero(cdf_flat[pos] <= u_flat)
    while active.size:
        pos[active] += 1
        active = active[cdf_flat[pos[active]] <= u_flat[active]]
    pos = pos.reshape(u.shape)
    pos -= n * np.arange(r)[:, None]
    return pos


@dataclass
class GridDraws:
    """Draws for many (pair, seed) rows, stored sorted by input index within each row.

    idx: (P, S, nmax) input indices, sorted within each (pair, seed) row.
    seg: (P, S, nmax) int8, the sample-size segment of each draw: a draw at (random) position t of the
         i.i.d. sequence belongs to segment b = #{n in ns : n <= t}, so the first ns[b] draws are
         exactly the draws with seg <= b.
    group_start: flat indices (into idx.ravel()) of the first draw of each distinct input of a row.
    group_seg: int8 per distinct input, the smallest segment in which it is drawn (where it is rated).
    """

    idx: np.ndarray
    seg: np.ndarray
    group_start: np.ndarray
    group_seg: np.ndarray

    @property
    def first(self) -> np.ndarray:
        """(P, S, nmax) bool: True on the first (sorted) draw of each distinct input."""
        out = np.zeros(self.idx.size, dtype=bool)
        out[self.group_start] = True
        return out.reshape(self.idx.shape)

    @property
    def group_id(self) -> np.ndarray:
        """(P, S, nmax) index of each draw's distinct input into group_start / group_seg."""
        return (np.cumsum(self.first.ravel()) - 1).reshape(self.idx.shape)

    @property
    def first_seg(self) -> np.ndarray:
        """(P, S, nmax) int8: the smallest segment of each draw's input."""
        return self.group_seg[self.group_id]

    def distinct_prefix_counts(self, n_seg: int) -> np.ndarray:
        """(P, S, n_seg) number of distinct inputs among the first ns[b] draws."""
        rows = self.idx.shape[0] * self.idx.shape[1]
        row_of_group = self.group_start // self.idx.shape[2]
        key = row_of_group * n_seg + self.group_seg
        counts = np.bincount(key, minlength=rows * n_seg).reshape(rows, n_seg)
        return np.cumsum(counts, axis=1).reshape(*self.idx.shape[:2], n_seg)


def grid_draws(
    cdf: np.ndarray | None, n_inputs: int, n_seeds: int, ns: Sequence[int], rng: np.random.Generator
) -> GridDraws:
    """Draw max(ns) inputs i.i.d. per (pair, seed) by inverse CDF, ready for prefix reuse over ns.

    The i.i.d. sequence is generated as (sorted uniforms, an independent uniform random permutation of
    positions): an i.i.d. sequence is exchangeable, so its order statistics and its ranks are
    independent and this has exactly the same law. Sorting makes the table look-ups sequential and
    duplicates adjacent. ``cdf`` None means uniform q (integers drawn directly).
    """
    ns = np.asarray(ns, dtype=np.int64)
    nmax = int(ns[-1])
    n_pairs = cdf.shape[0] if cdf is not None else None
    if cdf is None:
        raise ValueError("pass the uniform cdf or use grid_draws_uniform")
    u = rng.random((n_pairs, n_seeds * nmax))
    u = u.reshape(n_pairs, n_seeds, nmax)
    u.sort(axis=2)
    idx = _inverse_cdf_sorted(cdf, u.reshape(n_pairs, -1)).reshape(n_pairs, n_seeds, nmax)
    del u
    return _finish_draws(idx, ns, rng)


def grid_draws_uniform(n_pairs: int, n_inputs: int, n_seeds: int, ns: Sequence[int], rng: np.random.Generator) -> GridDraws:
    """As grid_draws for q = p (uniform integers, sorted)."""
    ns = np.asarray(ns, dtype=np.int64)
    idx = rng.integers(0, n_inputs, size=(n_pairs, n_seeds, int(ns[-1])))
    idx.sort(axis=2)
    return _finish_draws(idx, ns, rng)


def _finish_draws(idx: np.ndarray, ns: np.ndarray, rng: np.random.Generator) -> GridDraws:
    n_pairs, n_seeds, nmax = idx.shape
    seg_of_position = np.searchsorted(ns, np.arange(nmax), side="right").astype(np.int8)
    seg = rng.permuted(np.broadcast_to(seg_of_position, (n_pairs * n_seeds, nmax)), axis=1)
    seg = seg.reshape(idx.shape)
    first = np.empty(idx.shape, dtype=bool)
    first[..., 0] = True
    np.not_equal(idx[..., 1:], idx[..., :-1], out=first[..., 1:])
    starts = np.flatnonzero(first)
    group_seg = np.minimum.reduceat(seg.ravel(), starts)
    return GridDraws(idx=idx, seg=seg, group_start=starts, group_seg=group_seg)


def _segment_keys(seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Flat bincount keys row * n_seg + seg for a (rows, L) segment array."""
    key = seg.astype(np.int64)
    key += n_seg * np.arange(seg.shape[0])[:, None]
    return key.ravel()


def _segment_prefix_sums(key: np.ndarray, values: np.ndarray, rows: int, n_seg: int) -> np.ndarray:
    """Sum of values over draws with seg <= b, per row: (rows, n_seg); ``key`` from _segment_keys."""
    out = np.bincount(key, weights=values.ravel(), minlength=rows * n_seg).reshape(rows, n_seg)
    return np.cumsum(out, axis=1)


def _guide_tables(q: np.ndarray, sums_to_n: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scaled CDFs and guide tables (Chen-Asau, N buckets) for the rows of q (R, N).

    Returns (z, guide), both flat over the R rows: z[r * N + i] = N * cdf[r, i], with the last entry
    of each row set to +inf so that every search stops inside its row, and
    guide[r * N + j] = r * N + #{i : z[r, i] < j}, a first candidate for any scaled uniform t in
    [j, j + 1) (every i counted has z_i < j <= t). The draw is the first i with z[r, i] > t, i.e.
    inverse-CDF sampling; comparing scaled values on both sides keeps table and search consistent
    whatever the rounding. Expected comparisons per draw < 2 whatever q is.
    ``sums_to_n``: the rows of q already sum to N (up to rounding), so z = cumsum(q) is not rescaled.
    """
    r, n = q.shape
    z = np.cumsum(q, axis=1)
    if not sums_to_n:
        z *= n / z[:, -1:]
    z[:, -1] = np.inf
    bucket = z[:, :-1].astype(np.intp)  # floor(z_i) <= N; z_i < j  <=>  floor(z_i) <= j - 1
    guide = np.empty((r, n), dtype=np.intp)
    guide[:, 0] = 0
    for k in range(r):
        counts = np.bincount(bucket[k], minlength=n + 1)
        np.cumsum(counts[: n - 1], out=guide[k, 1:])
        if k:
            guide[k] += k * n
    return z.ravel(), guide.ravel()


def _scale_below(n: int) -> float:
    """The largest double below n: u * _scale_below(n) < n for every u in [0, 1), so floor() < n."""
    return float(np.nextafter(float(n), 0.0))


def _guided_inverse_cdf(
    z: np.ndarray, guide: np.ndarray, n: int, u: np.ndarray, row_of_draw: np.ndarray, scale: float | None = None
) -> np.ndarray:
    """Flat indices r * N + i of inverse-CDF draws for uniforms u (flat, in [0, 1)) on rows row_of_draw.

    z, guide from ``_guide_tables``; row_of_draw holds r * N for each draw (None: all on row 0); ``scale``
    defaults to ``_scale_below(n)``. u is overwritten with the scaled uniforms t = u * N' (N' the largest
    double below N, so floor(t) <= N - 1).
    """
    t = u
    t *= _scale_below(n) if scale is None else scale
    j = t.astype(np.intp)
    if row_of_draw is not None:
        j += row_of_draw
    pos = np.take(guide, j)
    del j
    active = np.flatnonzero(np.take(z, pos) <= t)
    while active.size:
        p_act = np.take(pos, active)
        p_act += 1
        pos[active] = p_act
        active = active[np.take(z, p_act) <= np.take(t, active)]
    return pos


def _prefix_sums(values: np.ndarray, seg_starts: np.ndarray) -> np.ndarray:
    """values (rows, nmax) -> (rows, n_seg) sums over the first ns[b] columns."""
    out = np.add.reduceat(values, seg_starts, axis=1)
    return np.cumsum(out, axis=1, out=out)


def _distinct_prefix_counts(idx: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """(rows, n_seg) number of distinct values among the first ns[b] entries of each row of idx.

    idx (rows, nmax), non-negative integers in draw order. Each draw is keyed (value, segment of its
    position), segment b = #{n in ns : n <= position}; after sorting a row's keys the draws of a value
    are adjacent with the earliest segment first, so every later draw of the group is a repeat in its
    own segment, and n_distinct(b) = ns[b] - #{repeats with segment <= b}. Repeats are few, so only
    they are counted.
    """
    rows, nmax = idx.shape
    n_seg = len(ns)
    bits = max(1, int(n_seg - 1).bit_length())
    big = (int(idx.max(initial=0)) + 1) << bits
    dtype = np.int32 if big < 2**31 else np.int64
    seg_of_position = np.searchsorted(ns, np.arange(nmax), side="right").astype(dtype)
    key = idx.astype(dtype)
    key <<= bits
    key |= seg_of_position
    key.sort(axis=1)
    same = key[:, 1:] ^ key[:, :-1]
    rep = np.flatnonzero(same < (1 << bits))  # same value as the previous key: a repeat
    del same
    r_rep, c_rep = np.divmod(rep, nmax - 1)
    seg_rep = key[r_rep, c_rep + 1] & ((1 << bits) - 1)
    repeats = np.bincount(r_rep * n_seg + seg_rep, minlength=rows * n_seg).reshape(rows, n_seg)
    return ns[None, :] - np.cumsum(repeats, axis=1)


def _standardise_and_rho(a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``standardise_activations`` and ``exact_rho`` (pairs along rows) in fewer passes.

    a is overwritten with a_hat (it must be a float64 array owned by the caller).
    """
    n = a.shape[1]
    mean = a.mean(axis=1)
    a -= mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", a, a) / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        a /= np.where(std > 0, std, np.nan)[:, None]
    m_ac = np.einsum("ij,ij->i", a, c) / n
    m_c = c.mean(axis=1)
    var = np.einsum("ij,ij->i", c, c) / n - m_c**2
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(var > 1e-15, m_ac / np.sqrt(np.maximum(var, 1e-300)), np.nan)
    return a, rho


def _block_q(spec: dict, a_hat: np.ndarray, g: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """N q of an IS sampler for a block of pairs (rows): ``sampler_q`` (axis=1) times N, in fewer passes.

    Pairs that are not ``valid`` (undefined rho) get the uniform q so that drawing never fails on them.
    """
    n = a_hat.shape[1]
    gamma = float(spec["gamma"])
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if gamma == 1.0:
        return np.ones(a_hat.shape)
    if spec["name"] == "mg_is":
        if np.any(g < 0):
            raise ValueError("c_hat must be non-negative (a presence probability)")
        u = np.abs(a_hat)
        u *= g
    elif float(spec["alpha"]) == 2.0:
        u = np.square(a_hat)
    else:
        u = np.abs(a_hat)
        u **= float(spec["alpha"])
    if not valid.all():
        u[~valid] = 1.0
    total = u.sum(axis=1)
    bad = np.flatnonzero(~(total > 0))
    if bad.size:
        what = "MG-IS" if spec["name"] == "mg_is" else "AG-IS"
        raise ValueError(f"{what}: the unnormalised sampling weights sum to zero (or NaN) for column {bad[0]}")
    u *= (n * (1.0 - gamma) / total)[:, None]
    u += gamma
    return u


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
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """One chunk of pairs: a_chunk, c_chunk, g_chunk are (kc, N) (pairs along rows).

    Per sampler, one generator (from seed_seq) is consumed block by block of pairs: nmax = max(ns)
    i.i.d. uniforms per (pair, seed) in draw order, turned into inputs (uniform: floor(N u); IS:
    guide-table inverse CDF), one gather per moment table at the draws, sums over the first ns[b]
    draws (reduceat + cumsum over segments), and distinct counts by sorting (input, segment) keys.
    """
    kc, n = a_chunk.shape
    c = c_chunk.astype(np.float64, copy=False)
    a_hat, rho = _standardise_and_rho(a_chunk, c)
    valid = np.isfinite(rho)
    a_hat[~valid] = 0.0  # undefined pairs are sampled uniformly and reported NaN
    binary = bool(np.all((c == 0) | (c == 1)))
    n_seg = len(ns)
    nmax = int(ns[-1])
    seg_starts = np.concatenate(([0], ns[:-1])).astype(np.intp)
    acc = np.empty(a_hat.shape, dtype=np.complex128)  # a_hat c + i c, the uniform sampler's moments
    np.multiply(a_hat, c, out=acc.real)
    acc.imag = c
    cc = None if binary else c * c
    bp = _block_pairs(n_seeds, nmax)
    row_off_full = None if bp == 1 else np.repeat(n * np.arange(min(bp, kc), dtype=np.intp), n_seeds * nmax)
    scale = _scale_below(n)
    rho_hats, n_distincts = [], []
    for spec, child in zip(specs, seed_seq.spawn(len(specs)), strict=True):
        if spec["name"] == "mg_is" and g_chunk is None:
            raise ValueError("MG-IS needs c_guide")
        gen = np.random.Generator(np.random.PCG64DXSM(child))
        rh_all = np.empty((kc, n_seeds, n_seg))
        nd_all = np.empty((kc, n_seeds, n_seg), dtype=np.int32)
        for b0 in range(0, kc, bp):
            sl = slice(b0, min(b0 + bp, kc))
            kb = sl.stop - sl.start
            rows = kb * n_seeds
            row_off = None if bp == 1 else row_off_full if kb == bp else row_off_full[: rows * nmax]
            u = gen.random(rows * nmax)
            if spec["name"] == "uniform":
                u *= scale  # floor(N' u) <= N - 1
                flat = u.astype(np.intp)
                del u
                if row_off is not None:
                    flat += row_off
                w_tab = None
                moments = acc[sl]
                extra = [] if binary else [cc[sl]]
            else:
                nq = _block_q(spec, a_hat[sl], None if g_chunk is None else g_chunk[sl], valid[sl])  # N q
                if not nq.min() > 0:  # zero or NaN somewhere: let check_q name the pair and input
                    check_q(nq.T, names=np.arange(pair_offset + sl.start, pair_offset + sl.stop))
                z, guide = _guide_tables(nq, sums_to_n=True)
                flat = _guided_inverse_cdf(z, guide, n, u, row_off, scale)
                del z, guide, u
                # w = p / q = 1 / (N q): tables w a_hat c + i w c (, w c^2)
                moments = np.empty(nq.shape, dtype=np.complex128)
                np.divide(acc.real[sl], nq, out=moments.real)
                np.divide(c[sl], nq, out=moments.imag)
                extra = [] if binary else [cc[sl] / nq]
                w_tab = None if estimator == "unbiased" else np.reciprocal(nq)
                del nq
            # one complex gather carries both w a_hat c (real) and w c (imaginary)
            s_m = _prefix_sums(np.take(moments.ravel(), flat).reshape(rows, nmax), seg_starts)
            s_ac, s_c = s_m.real, s_m.imag
            s_cc = s_c if binary else _prefix_sums(np.take(extra[0].ravel(), flat).reshape(rows, nmax), seg_starts)
            if estimator == "unbiased" or w_tab is None:
                denom = ns[None, :].astype(np.float64)
            else:
                denom = _prefix_sums(np.take(w_tab.ravel(), flat).reshape(rows, nmax), seg_starts)
            rh_all[sl] = _rho_from_moments(s_ac / denom, s_c / denom, s_cc / denom).reshape(kb, n_seeds, n_seg)
            # flat = r * N + input: a per-row constant offset, so distinct counts are unchanged
            nd_all[sl] = _distinct_prefix_counts(flat.reshape(rows, nmax), ns).reshape(kb, n_seeds, n_seg)
            del flat, moments, extra, w_tab
        rh_all[~valid] = np.nan
        rho_hats.append(rh_all)
        n_distincts.append(nd_all)
    return rho, rho_hats, n_distincts


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

    Returns a long DataFrame: pair, sampler, n, seed, rho, rho_hat, rce, n_distinct.
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
    rho_hat = np.concatenate([np.concatenate([r[1][s_i] for r in results]).ravel() for s_i in range(n_samp)])
    n_distinct = np.concatenate([np.concatenate([r[2][s_i] for r in results]).ravel() for s_i in range(n_samp)])
    rho_rows = np.tile(np.repeat(rho, n_seeds * n_seg), n_samp)
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

    Returns columns (*by, rce, sem, n_pairs, n_excluded, mean_n_distinct, mean_<extra>...);
    ``n_excluded`` counts the pairs dropped because |rho| < floor or rho is undefined (SPEC sec. 3);
    a group whose pairs are all excluded is kept with n_pairs = 0. Missing values in ``by`` columns
    (e.g. a beta that only some aggregations have) form their own group.
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
    out = out.join(excluded, how="outer").fillna({"n_excluded": 0, "n_pairs": 0})
    out["n_excluded"] = out["n_excluded"].astype(int)
    out["n_pairs"] = out["n_pairs"].astype(int)
    out = out.reset_index()
    out.attrs["floor"] = floor
    out.attrs["n_excluded_pairs"] = int(df.loc[~keep, "pair"].nunique())
    return out[[*by, "rce", "sem", "n_pairs", "n_excluded", "mean_n_distinct", *(f"mean_{e}" for e in extra)]]
