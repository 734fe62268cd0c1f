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
        gen: np.random.Generator,
        *,
        pairs: np.ndarray | None = None,
    ) -> PairDraws:
        """Draw max(ns) inputs per (pair, seed) for the block's pairs (rows of a_hat, c_guide: (kb, N)).

        ``gen`` supplies kb * n_seeds * max(ns) uniforms in (pair, seed, draw) order. Raises (naming
        the pair: ``pairs``, default 0..kb-1) where q = 0 on an input with p > 0.
        """
        s = _sampler_spec(spec)
        kb, n = a_hat.shape
        ns = np.asarray(ns, dtype=np.int64)
        nmax = int(ns[-1])
        rows = kb * n_seeds
        row_off = np.repeat(n * np.arange(kb, dtype=np.intp), n_seeds * nmax) if kb > 1 else None
        u = gen.random(rows * nmax)
        scale = _scale_below(n)
        if s["name"] == "uniform":
            u *= scale  # floor(N' u) <= N - 1
            flat = u.astype(np.intp)
            if row_off is not None:
                flat += row_off
            nq = None
        else:
            nq = sampler_q(s, a_hat, c_guide, axis=1)
            nq *= n
            if not nq.min() > 0:  # zero or NaN somewhere: let check_q name the pair and input
                check_q(nq.T, names=np.arange(kb) if pairs is None else pairs)
            z, guide = _guide_tables(nq, sums_to_n=True)
            flat = _guided_inverse_cdf(z, guide, n, u, row_off, scale)
        return cls(flat.reshape(rows, nmax), nq, n, ns, n_seeds, pairs)

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

    def _seg_starts(self) -> np.ndarray:
        return np.concatenate(([0], self.ns[:-1])).astype(np.intp)

    def prefix_sums(self, values: np.ndarray) -> np.ndarray:
        """(rows, nmax) values at the draws -> (rows, n_seg) sums over the first ns[b] draws."""
        return _prefix_sums(values, self._seg_starts())

    def _denominator(self, estimator: str, w_sums=None) -> np.ndarray:
        if estimator == "unbiased":
            return self.ns[None, :].astype(np.float64)
        if estimator != "self_normalised":
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        return self.prefix_sums(self.weights()) if w_sums is None else w_sums

    # ---- estimates ---------------------------------------------------------------------------
    def estimate(self, acc: np.ndarray, cc: np.ndarray | None, estimator: str) -> tuple[np.ndarray, np.ndarray]:
        """rho_hat and no_variation, both (kb, S, n_seg), with c known on every input (Setting 1).

        acc = ``moment_table(a_hat, c)`` (kb, N); cc = c * c, or None for binary c (c^2 = c).
        Every moment E_p[h] is estimated from the first ns[b] draws as (1/n) sum w h (unbiased) or
        sum w h / sum w (self-normalised).
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if self.nq is None:
            moments, extra = acc, cc
        else:  # tables w a_hat c + i w c (, w c^2), w = 1 / (N q)
            moments = np.empty(self.nq.shape, dtype=np.complex128)
            np.divide(acc.real, self.nq, out=moments.real)
            np.divide(acc.imag, self.nq, out=moments.imag)
            extra = None if cc is None else cc / self.nq
        s_m = self.prefix_sums(self.gather(moments))
        s_ac, s_c = s_m.real, s_m.imag
        s_cc = s_c if extra is None else self.prefix_sums(self.gather(extra))
        den = self._denominator(estimator)
        rh, nv = _rho_and_no_variation(s_ac / den, s_c / den, s_cc / den)
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
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One chunk of pairs: a_chunk, c_chunk, g_chunk are (kc, N) (pairs along rows).

    Per sampler, one generator (from seed_seq) is consumed block by block of pairs (``PairDraws.draw``),
    and each block's draws give rho_hat, no_variation and the distinct counts.
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
    acc = moment_table(a_hat, c)
    cc = None if binary else c * c
    bp = _block_pairs(n_seeds, nmax)
    rho_hats, no_vars, n_distincts = [], [], []
    for spec, child in zip(specs, seed_seq.spawn(len(specs)), strict=True):
        gen = np.random.Generator(np.random.PCG64DXSM(child))
        rh_all = np.empty((kc, n_seeds, n_seg))
        nv_all = np.empty((kc, n_seeds, n_seg), dtype=bool)
        nd_all = np.empty((kc, n_seeds, n_seg), dtype=np.int32)
        for b0 in range(0, kc, bp):
            sl = slice(b0, min(b0 + bp, kc))
            draws = PairDraws.draw(
                spec, a_hat[sl], None if g_chunk is None else g_chunk[sl], ns, n_seeds, gen,
                pairs=np.arange(pair_offset + sl.start, pair_offset + sl.stop),
            )
            rh_all[sl], nv_all[sl] = draws.estimate(acc[sl], None if cc is None else cc[sl], estimator)
            nd_all[sl] = draws.distinct_counts()
            del draws
        rh_all[~valid] = np.nan
        nv_all[~valid] = False
        rho_hats.append(rh_all)
        no_vars.append(nv_all)
        n_distincts.append(nd_all)
    return rho, rho_hats, no_vars, n_distincts


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
    (True where the sample showed no variation in c, so rho_hat = 0 was reported).
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

    rho_hat, no_variation, n_distinct = stacked(1), stacked(2), stacked(3)
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
            "no_variation": no_variation,
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
