"""A competent per-pair NumPy baseline of the Setting 1 grid (``neuronaudit.sampling.sampling_grid``).

What a careful researcher would write without the library: one (neuron, concept) pair at a time, and
per pair and sampler

* q built once (uniform / MG-IS / AG-IS, the closed forms of SPEC sec. 3), its CDF built once;
* max(ns) draws per seed, all seeds at once: ``np.searchsorted(cdf, u)`` binary-search inverse-CDF
  draws (uniform: integers directly) -- one (seeds, max(ns)) array;
* the estimate for every n from the first n draws of that one long draw (prefix reuse): cumulative
  sums of the weighted moments, read at columns n - 1;
* distinct counts by a stable sort of (seed, input) keys: the first occurrence of each input in
  draw order, counted per sample-size prefix.

Same estimator as the library (unbiased by default, or self-normalised; rho_hat = 0 when the sample
shows no variation of c), same prefix semantics, independent random streams, so the two agree in
distribution (Monte-Carlo equal), not draw for draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

NS = (25, 50, 100, 180, 200, 400, 800, 1600)
SAMPLERS = (("uniform", {}), ("mg_is", {"gamma": 0.2}), ("ag_is", {"alpha": 2.0, "gamma": 0.2}))


def _q(name: str, a_hat: np.ndarray, g: np.ndarray | None, par: dict) -> np.ndarray | None:
    n = a_hat.size
    if name == "uniform":
        return None
    gamma = par["gamma"]
    u = np.abs(a_hat) * g if name == "mg_is" else np.abs(a_hat) ** par["alpha"]
    return (1.0 - gamma) * u / u.sum() + gamma / n


def one_pair(a: np.ndarray, c: np.ndarray, g: np.ndarray | None, ns: Sequence[int], n_seeds: int,
             rng: np.random.Generator, estimator: str = "unbiased", samplers=SAMPLERS):
    """One pair: returns rho, rho_hat (n_samplers, n_seeds, len(ns)), n_distinct (same shape)."""
    a = np.asarray(a, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n = a.size
    sd = a.std()
    ns = np.asarray(ns)
    nmax = int(ns[-1])
    a_hat = (a - a.mean()) / sd
    var_c = (c * c).mean() - c.mean() ** 2
    rho = (a_hat * c).mean() / np.sqrt(var_c) if sd > 0 and var_c > 1e-15 else np.nan
    rho_hat = np.full((len(samplers), n_seeds, len(ns)), np.nan)
    n_dist = np.zeros((len(samplers), n_seeds, len(ns)), dtype=np.int64)
    if not np.isfinite(rho):
        return rho, rho_hat, n_dist
    ac, cc = a_hat * c, c * c
    cols = ns - 1
    for s, (name, par) in enumerate(samplers):
        q = _q(name, a_hat, None if g is None else np.asarray(g, dtype=np.float64), par)
        if q is None:
            idx = rng.integers(0, n, size=(n_seeds, nmax))
            w = None
        else:
            cdf = np.cumsum(q)  # built once per (pair, sampler)
            cdf /= cdf[-1]
            idx = np.searchsorted(cdf, rng.random((n_seeds, nmax)), side="right")
            np.minimum(idx, n - 1, out=idx)
            w = 1.0 / (n * q[idx])
        h_ac, h_c = ac[idx], c[idx]
        h_cc = h_c if np.array_equal(c, cc) else cc[idx]
        if w is not None:
            h_ac, h_c, h_cc = h_ac * w, h_c * w, h_cc * w
        s_ac = np.cumsum(h_ac, axis=1)[:, cols]
        s_c = np.cumsum(h_c, axis=1)[:, cols]
        s_cc = np.cumsum(h_cc, axis=1)[:, cols]
        if estimator == "unbiased" or w is None:
            den = ns.astype(np.float64)
        else:
            den = np.cumsum(w, axis=1)[:, cols]
        m_ac, m_c, m_cc = s_ac / den, s_c / den, s_cc / den
        v = m_cc - m_c * m_c
        with np.errstate(invalid="ignore", divide="ignore"):
            rho_hat[s] = np.where(v > 0, m_ac / np.sqrt(np.where(v > 0, v, 1.0)), 0.0)
        # distinct inputs among the first n draws: first occurrence of each (seed, input) in draw order
        key = (np.arange(n_seeds)[:, None] * n + idx).ravel()
        order = np.argsort(key, kind="stable")
        ks = key[order]
        first = np.empty(ks.size, dtype=bool)
        first[0] = True
        np.not_equal(ks[1:], ks[:-1], out=first[1:])
        pos = order[first]  # flat positions (seed * nmax + t) of first occurrences
        seed_of, t = np.divmod(pos, nmax)
        seg = np.searchsorted(ns, t, side="right")  # first occurrence at t counts for every n > t
        counts = np.bincount(seed_of * (len(ns) + 1) + seg, minlength=n_seeds * (len(ns) + 1))
        n_dist[s] = np.cumsum(counts.reshape(n_seeds, len(ns) + 1)[:, : len(ns)], axis=1)
    return rho, rho_hat, n_dist


def baseline_grid(acts, c_true, c_guide, pairs: Sequence[int], ns: Sequence[int] = NS, n_seeds: int = 30,
                  rng: int = 0, estimator: str = "unbiased", n_threads: int = 1) -> pd.DataFrame:
    """Per-pair baseline over ``pairs`` (column indices; pair j uses column j of all three matrices).

    Returns the library's long format: pair, sampler, n, seed, rho, rho_hat, rce, n_distinct.
    ``n_threads`` > 1 spreads pairs over a thread pool (NumPy releases the GIL), as the library does.
    """
    pairs = list(pairs)
    seqs = np.random.SeedSequence(rng).spawn(len(pairs))

    def work(i):
        j = pairs[i]
        return one_pair(acts[:, j], c_true[:, j], None if c_guide is None else c_guide[:, j], ns, n_seeds,
                        np.random.default_rng(seqs[i]), estimator)

    if n_threads > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            res = list(pool.map(work, range(len(pairs))))
    else:
        res = [work(i) for i in range(len(pairs))]
    names = [s[0] for s in SAMPLERS]
    frames = []
    ns = np.asarray(ns)
    for (rho, rh, nd), j in zip(res, pairs, strict=True):
        ss, sd, nn = np.meshgrid(np.arange(len(names)), np.arange(n_seeds), np.arange(len(ns)), indexing="ij")
        rh_f = rh.ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            rce = np.abs(rh_f - rho) / abs(rho)
        frames.append(pd.DataFrame({"pair": j, "sampler": np.asarray(names)[ss.ravel()], "n": ns[nn.ravel()],
                                    "seed": sd.ravel(), "rho": rho, "rho_hat": rh_f, "rce": rce,
                                    "n_distinct": nd.ravel()}))
    return pd.concat(frames, ignore_index=True)
