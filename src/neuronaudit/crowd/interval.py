"""Standard error and 95% confidence interval of the importance-sampling estimate of rho (issue 9, item 5).

The estimate (SPEC sec. 3) is a smooth function of sample means. From n i.i.d. draws x_1..x_n from q,
with weights w_i = p(x_i) / q(x_i) and per-draw terms

    t_i = (w_i, w_i a_hat_i c_i, w_i c_i, w_i c2_i)        (c2 = c^2; = c for binary c)

and their means m = (m0, m1, m2, m3) = mean_i t_i,

    unbiased         rho_hat = g(m1, m2, m3)
    self-normalised  rho_hat = g(m1 / m0, m2 / m0, m3 / m0)
    with             g(M1, M2, M3) = M1 / sqrt(M3 - M2^2).

Delta method: rho_hat ≈ rho + grad G(mu) . (m - mu), so Var(rho_hat) ≈ grad G' Sigma grad G / n, with
Sigma the covariance of one draw's terms t_i. With v = M3 - M2^2, the gradient of g is

    dg/dM1 = 1 / sqrt(v),   dg/dM2 = M1 M2 / v^(3/2),   dg/dM3 = -M1 / (2 v^(3/2));

for the self-normalised form, d/dm_k = g_k / m0 (k = 1..3) and d/dm0 = -sum_k g_k M_k / m0. The
estimated variance plugs the sample means into the gradient and the sample covariance (ddof = 1) into
Sigma, which is computed as the sample variance of the per-draw linearised terms

    z_i = grad G(m) . t_i      (the same number as grad' Sigma_hat grad),

    SE = sd(z) / sqrt(n),   95% interval = rho_hat ± 1.96 SE, clipped to [-1, 1].

Duplicates: the estimator is over the n i.i.d. draws; an input drawn k times is rated once but its
terms count k times, exactly as ``sampling.PairDraws`` counts them, so the per-draw arrays given here
repeat it k times and the i.i.d. covariance formula applies unchanged.

Why the delta method and not a bootstrap: rho_hat is a smooth function of four means of i.i.d. draws,
the setting in which the delta method is first-order correct; it is closed form, costs a few passes over
the draws, and vectorises over thousands of (pair, seed, n) samples at once, whereas a bootstrap over
the rated inputs multiplies that cost by B (~1,000) and needs the same i.i.d.-draw resampling to be
right. Its weakness (as a bootstrap's) is small n with few positive inputs: the linearisation and the
normal quantile then undercover; ``interval_coverage`` measures by how much.

Degenerate samples: where the sample shows no variation in c (estimated v <= 0, e.g. no positive input
drawn), rho_hat = 0 as the library reports it (``sampling.estimate_rho``), the SE and the interval are
NaN and ``degenerate`` is True, so that tables can count them. With fewer than 2 draws the SE is NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from neuronaudit.sampling import ESTIMATORS, PairDraws, exact_rho, moment_table, sampler_label

__all__ = [
    "RhoInterval",
    "rho_of_means",
    "rho_gradient",
    "rho_interval",
    "rho_interval_from_draws",
    "interval_coverage",
    "simulate_pairs",
]


@dataclass
class RhoInterval:
    """rho_hat, its delta-method standard error and confidence interval, all of the same shape.

    ``degenerate``: no variation of c in the sample (rho_hat = 0, se / lo / hi NaN).
    """

    rho_hat: np.ndarray
    se: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    degenerate: np.ndarray

    def contains(self, rho) -> np.ndarray:
        """True where lo <= rho <= hi (False for degenerate samples and NaN rho)."""
        rho = np.asarray(rho, dtype=np.float64)
        return (self.lo <= rho) & (rho <= self.hi)


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def rho_of_means(m: np.ndarray, estimator: str = "unbiased") -> np.ndarray:
    """rho_hat = G(m) from the means m = (m0, m1, m2, m3) on the last axis (see the module docstring).

    NaN where v <= 0 (the caller decides what a degenerate sample reports).
    """
    _check_estimator(estimator)
    m = np.asarray(m, dtype=np.float64)
    big = m[..., 1:4] / m[..., :1] if estimator == "self_normalised" else m[..., 1:4]
    v = big[..., 2] - big[..., 1] ** 2
    return big[..., 0] / np.sqrt(np.where(v > 0, v, np.nan))


def rho_gradient(m: np.ndarray, estimator: str = "unbiased") -> np.ndarray:
    """Gradient of G with respect to (m0, m1, m2, m3), on the last axis (d/dm0 = 0 for unbiased)."""
    _check_estimator(estimator)
    m = np.asarray(m, dtype=np.float64)
    sn = estimator == "self_normalised"
    big = m[..., 1:4] / m[..., :1] if sn else m[..., 1:4]
    m1, m2, m3 = big[..., 0], big[..., 1], big[..., 2]
    v = m3 - m2 * m2
    v = np.where(v > 0, v, np.nan)
    s = np.sqrt(v)
    g = np.stack([1.0 / s, m1 * m2 / (v * s), -m1 / (2.0 * v * s)], axis=-1)
    grad = np.empty(m.shape)
    if sn:
        grad[..., 1:4] = g / m[..., :1]
        grad[..., 0] = -(g * big).sum(axis=-1) / m[..., 0]
    else:
        grad[..., 1:4] = g
        grad[..., 0] = 0.0
    return grad


def _z_value(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def rho_interval(
    a_hat_s: np.ndarray,
    c_s: np.ndarray,
    w: np.ndarray | None = None,
    estimator: str = "unbiased",
    *,
    cc_s: np.ndarray | None = None,
    level: float = 0.95,
) -> RhoInterval:
    """rho_hat, SE and interval from per-draw values; the draws run along the last axis.

    a_hat_s: standardised activations at the draws (population statistics); c_s: concept presence
    (binary or soft) at the draws; w: importance weights p/q (None: 1, i.e. q = p); cc_s: c^2 at the
    draws (default c_s ** 2). Leading axes are independent samples (pairs, seeds, ...), all computed at
    once. A duplicate draw appears as many times as it was drawn.
    """
    _check_estimator(estimator)
    a = np.asarray(a_hat_s, dtype=np.float64)
    c = np.asarray(c_s, dtype=np.float64)
    a, c = np.broadcast_arrays(a, c)
    w = np.ones(a.shape) if w is None else np.broadcast_to(np.asarray(w, dtype=np.float64), a.shape)
    cc = c * c if cc_s is None else np.broadcast_to(np.asarray(cc_s, dtype=np.float64), a.shape)
    n = a.shape[-1]
    t = np.stack([w, w * a * c, w * c, w * cc], axis=-1)  # (..., n, 4)
    m = t.mean(axis=-2)  # (..., 4)
    big = m[..., 1:4] / m[..., :1] if estimator == "self_normalised" else m[..., 1:4]
    v = big[..., 2] - big[..., 1] ** 2
    degenerate = ~(v > 0) & ~np.isnan(big[..., 0])
    rho_raw = rho_of_means(m, estimator)
    rho_hat = np.where(degenerate, 0.0, rho_raw)
    grad = rho_gradient(m, estimator)  # NaN where degenerate
    z = np.einsum("...nk,...k->...n", t, grad)
    se = np.sqrt(z.var(axis=-1, ddof=1) / n) if n > 1 else np.full(rho_hat.shape, np.nan)
    half = _z_value(level) * se
    lo = np.clip(rho_hat - half, -1.0, 1.0)
    hi = np.clip(rho_hat + half, -1.0, 1.0)
    return RhoInterval(rho_hat=rho_hat, se=se, lo=lo, hi=hi, degenerate=degenerate)


def rho_interval_from_draws(
    draws: PairDraws,
    a_hat: np.ndarray,
    c: np.ndarray | None = None,
    estimator: str = "unbiased",
    *,
    c_group: np.ndarray | None = None,
    cc: np.ndarray | None = None,
    level: float = 0.95,
) -> RhoInterval:
    """Intervals for every (pair, seed, n) sample of a ``PairDraws``; fields shaped (kb, S, n_seg).

    a_hat (kb, N) the block's standardised activations; c (kb, N) concept presence per input (Setting
    1), or c_group (G,) / (G, n_seg) per distinct input of ``draws.groups()`` (rated inputs, e.g. BRAgg
    soft presence; a column per sample size allowed); cc (kb, N) c^2 if not c * c (only with ``c``).
    The sample of size ns[b] is the first ns[b] draws, as in ``PairDraws.estimate``; the loop runs over
    the few sample sizes, never over pairs.
    """
    if (c is None) == (c_group is None):
        raise ValueError("give exactly one of c (per input) and c_group (per distinct input)")
    a_d = draws.gather(np.asarray(a_hat, dtype=np.float64))
    w_d = draws.weights()
    cc_d = None
    if c is not None:
        c_d = draws.gather(np.asarray(c, dtype=np.float64))
        if cc is not None:
            cc_d = draws.gather(np.asarray(cc, dtype=np.float64))
        gid = None
    else:
        c_group = np.asarray(c_group, dtype=np.float64)
        gid = draws.groups().gid
    fields = {k: [] for k in ("rho_hat", "se", "lo", "hi", "degenerate")}
    for b, n in enumerate(draws.ns):
        n = int(n)
        if gid is None:
            cb = c_d[:, :n]
        else:
            cb = c_group[gid[:, :n], b] if c_group.ndim == 2 else c_group[gid[:, :n]]
        res = rho_interval(
            a_d[:, :n], cb, w_d[:, :n], estimator, cc_s=None if cc_d is None else cc_d[:, :n], level=level
        )
        for k in fields:
            fields[k].append(getattr(res, k))
    shape = (draws.n_pairs, draws.n_seeds, len(draws.ns))
    return RhoInterval(**{k: np.stack(v, axis=-1).reshape(shape) for k, v in fields.items()})


def simulate_pairs(
    n_pairs: int = 8,
    n_inputs: int = 5000,
    seed: int = 0,
    prevalence: tuple[float, float] = (0.1, 0.3),
    signal: tuple[float, float] = (0.5, 2.0),
    guide_noise: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated (a_hat, c, c_guide), each (n_pairs, n_inputs), for coverage studies.

    c ~ Bernoulli(prevalence), prevalence per pair uniform in ``prevalence``; a = s c + N(0, 1) with
    s per pair uniform in ``signal``, standardised with population statistics; the guide is
    sigmoid(2 (2c - 1) + guide_noise * N(0, 1) + logit(prevalence)), a concept model with AUC < 1.
    """
    rng = np.random.default_rng(seed)
    prev = rng.uniform(*prevalence, size=(n_pairs, 1))
    c = (rng.random((n_pairs, n_inputs)) < prev).astype(np.float64)
    s = rng.uniform(*signal, size=(n_pairs, 1))
    a = s * c + rng.standard_normal((n_pairs, n_inputs))
    a_hat = (a - a.mean(axis=1, keepdims=True)) / a.std(axis=1, keepdims=True)
    logit = 2.0 * (2.0 * c - 1.0) + guide_noise * rng.standard_normal(c.shape) + np.log(prev / (1 - prev))
    guide = 1.0 / (1.0 + np.exp(-logit))
    return a_hat, c, guide


def interval_coverage(
    a_hat: np.ndarray,
    c: np.ndarray,
    c_guide: np.ndarray | None = None,
    samplers: Sequence[Mapping | str] = ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2},
                                         {"name": "ag_is", "alpha": 2, "gamma": 0.2}),
    ns: Sequence[int] = (25, 50, 100, 180, 400),
    n_seeds: int = 200,
    seed: int = 0,
    estimator: str = "unbiased",
    level: float = 0.95,
) -> pd.DataFrame:
    """Coverage of the interval on data whose exact rho is known: one row per (sampler, n).

    a_hat, c, c_guide: (K, N) per pair (``simulate_pairs`` makes them; c binary or soft). For every
    sampler, ``PairDraws.draw`` makes n_seeds nested samples per pair (a fresh generator from ``seed``
    per sampler). Columns: sampler, n, intervals (K x seeds), degenerate (count), coverage (share of
    all intervals containing the exact rho; a degenerate sample counts as a miss), coverage_defined
    (among non-degenerate samples), mean_se, sd_rho_hat (the empirical sd of rho_hat over seeds,
    averaged over pairs; compare with mean_se), mean_width.
    """
    a_hat = np.asarray(a_hat, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    ns = np.sort(np.asarray(ns, dtype=np.int64))
    rho = exact_rho(a_hat, c, axis=1)  # (K,)
    binary = bool(np.all((c == 0) | (c == 1)))
    acc = moment_table(a_hat, c) if binary else None
    rows = []
    for i, spec in enumerate(samplers):
        gen = np.random.default_rng([seed, i])
        draws = PairDraws.draw(spec, a_hat, c_guide, ns, n_seeds, gen)
        res = rho_interval_from_draws(draws, a_hat, c, estimator, level=level)
        if acc is not None:  # the interval's rho_hat is the engine's estimate
            ref, _ = draws.estimate(acc, None, estimator)
            if not np.allclose(ref, res.rho_hat, rtol=1e-9, atol=1e-12):
                raise AssertionError("rho_hat differs from PairDraws.estimate")
        hit = res.contains(rho[:, None, None])
        defined = ~res.degenerate
        for b, n in enumerate(ns):
            d = defined[:, :, b]
            rows.append({
                "sampler": sampler_label(spec),
                "n": int(n),
                "intervals": int(hit[:, :, b].size),
                "degenerate": int((~d).sum()),
                "coverage": float(hit[:, :, b].mean()),
                "coverage_defined": float(hit[:, :, b][d].mean()) if d.any() else np.nan,
                "mean_se": float(np.nanmean(res.se[:, :, b])) if d.any() else np.nan,
                "sd_rho_hat": float(np.mean(res.rho_hat[:, :, b].std(axis=1, ddof=1))),
                "mean_width": float(np.nanmean(res.hi[:, :, b] - res.lo[:, :, b])) if d.any() else np.nan,
            })
    return pd.DataFrame(rows)


if __name__ == "__main__":  # python -m neuronaudit.crowd.interval: print the coverage table
    a_, c_, g_ = simulate_pairs(n_pairs=20, n_inputs=5000, seed=0)
    for est in ESTIMATORS:
        print(f"estimator = {est}")
        print(interval_coverage(a_, c_, g_, n_seeds=500, seed=1, estimator=est).to_string(index=False))
