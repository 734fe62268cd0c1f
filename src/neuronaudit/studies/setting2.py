"""Setting 2: rating aggregation with noisy (simulated) raters on MG-IS samples (SPEC sec. 5;
seed 001 Sec. 4, A.3 Fig. 6, B.2 Fig. 8, B.4 Fig. 10, B.5 Fig. 11).

For every (pair, seed) max(ns) inputs are drawn by MG-IS (gamma = 0.2) and each distinct input is
rated once by max(n_raters) simulated raters; the first r raters give the r-rater design, and the
first n draws the n-input design (nested designs, as in a growing study). Ratings are aggregated per
input and the soft [c] enters the estimator of SPEC sec. 3 in place of c. Error = RCE against the exact
rho of the ground truth over the whole dataset.

Aggregations (column ``aggregation``):
- ``majority``                        majority vote, ties 0.5
- ``bragg_uniform``                   BRAgg, uniform error model, uniform prior beta (one row per beta)
- ``bragg_model``                     BRAgg, uniform error model, concept-model prior ("hybrid")
- ``bragg_uniform_per_input``         BRAgg, per-input error model Beta(0.75, 2.5), uniform prior beta
- ``bragg_model_per_input``           BRAgg, per-input error model, concept-model prior
- ``model_only``                      the concept model's probabilities alone (n_raters = 0, cost 0)

eta for the uniform error model is estimated by EM for each (pair, seed, n, r) from the ratings of that
design (one-coin model with free prevalence); with one rater per input EM cannot separate eta from
the prevalence and ``eta_single_rater`` (default 0.2) is used; ``eta`` overrides both.

Cost = n_distinct * n_raters * $0.004 (seed 001 A.3: $0.06 per 15-image task).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special

from neuronaudit.aggregation import (
    BRAGG_BETA,
    PER_INPUT_ERROR_PRIOR,
    bragg_posterior,
    bragg_posterior_per_input,
    clip_prior,
    majority_vote,
)
from neuronaudit.sampling import (
    DEFAULT_NS,
    _rho_from_moments,
    exact_rho,
    grid_draws,
    mg_is_q,
    relative_corr_error,
    standardise_activations,
)
from neuronaudit.studies.setting1 import select_pairs, summary_table

__all__ = ["COST_PER_RATING", "run_setting2", "em_eta_from_histogram", "select_pairs", "summary_table"]

COST_PER_RATING = 0.06 / 15  # seed 001 A.3


def em_eta_from_histogram(counts: np.ndarray, m: int, n_iter: int = 200, eta0: float = 0.2, prevalence0: float = 0.3):
    """Vectorised EM for eta from histograms of yes-counts: counts[..., a] = #inputs with a yes of m.

    One-coin model with free prevalence (as ``aggregation.estimate_eta_em`` with prior=None).
    Returns (eta, prevalence) with the leading shape of ``counts``; NaN where a histogram is empty.
    """
    counts = np.asarray(counts, dtype=np.float64)
    a = np.arange(m + 1, dtype=np.float64)
    tot = counts.sum(axis=-1)
    eta = np.full(tot.shape, eta0)
    pi = np.full(tot.shape, prevalence0)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(n_iter):
            le, l1e = np.log(eta)[..., None], np.log1p(-eta)[..., None]
            logit = (np.log(pi) - np.log1p(-pi))[..., None] + (2 * a - m) * (l1e - le)
            post = special.expit(logit)
            eta = np.sum(counts * (post * (m - a) + (1 - post) * a), axis=-1) / (m * tot)
            eta = np.clip(eta, 1e-4, 0.5 - 1e-4)
            pi = np.clip(np.sum(counts * post, axis=-1) / tot, 1e-3, 1 - 1e-3)
    eta = np.where(tot > 0, eta, np.nan)
    return eta, np.where(tot > 0, pi, np.nan)


class _DrawContext:
    """Per-chunk draw arrays for turning per-input soft c into rho_hat (rows, n_seg)."""

    def __init__(self, rows, n_groups, n_seg, seg_d, gid, w, row_d, a_d, ns, estimator):
        self.rows, self.n_groups, self.n_seg = rows, n_groups, n_seg
        self.seg_d, self.gid, self.w, self.row_d, self.a_d = seg_d, gid, w, row_d, a_d
        self.ns, self.estimator = ns, estimator

    def estimate(self, c_values: np.ndarray) -> np.ndarray:
        """rho_hat (rows, n_seg) from per-input soft c, (G,) or (G, n_seg) varying with n."""
        rows = self.rows
        out = np.empty((rows, self.n_seg))
        if c_values.ndim == 1:
            c_values = np.broadcast_to(c_values[:, None], (self.n_groups, self.n_seg))
        for b in range(self.n_seg):
            m = self.seg_d <= b
            cd = c_values[self.gid[m], b]
            wd = self.w[m]
            rd = self.row_d[m]
            s_ac = np.bincount(rd, wd * self.a_d[m] * cd, minlength=rows)
            s_c = np.bincount(rd, wd * cd, minlength=rows)
            s_cc = np.bincount(rd, wd * cd * cd, minlength=rows)
            den = float(self.ns[b]) if self.estimator == "unbiased" else np.bincount(rd, wd, minlength=rows)
            out[:, b] = _rho_from_moments(s_ac / den, s_c / den, s_cc / den)
        return out


def run_setting2(
    acts: np.ndarray,
    c_true: np.ndarray,
    c_guide: np.ndarray,
    pairs: pd.DataFrame,
    *,
    model: str = "",
    layer: str = "",
    concept_model: str = "",
    ns: Sequence[int] = DEFAULT_NS,
    seeds: Sequence[int] = range(30),
    n_raters: Sequence[int] = (1, 3, 5, 7),
    rater_model: str = "per_input",
    eta_true: float = 0.2,
    rater_beta: tuple[float, float] = PER_INPUT_ERROR_PRIOR,
    betas: Sequence[float] = (BRAGG_BETA,),
    eta: float | None = None,
    eta_single_rater: float = 0.2,
    gamma: float = 0.2,
    estimator: str = "unbiased",
    rng: int = 0,
    cost_per_rating: float = COST_PER_RATING,
    chunk_size: int = 8,
    prior_eps: float = 1e-3,
) -> pd.DataFrame:
    """Error vs cost of the aggregations (module docstring) for pairs x seeds x n x n_raters.

    acts (N, K); c_true (N, T) binary ground truth; c_guide (N, T) concept-model probabilities (MG-IS
    guide and model prior); pairs from select_pairs. Simulated raters err uniformly with eta_true
    (rater_model="uniform") or per input with eta_i ~ Beta(*rater_beta) ("per_input", the model
    seed 001 B.4 fitted to MTurk). Returns one row per (pair, seed, n, n_raters, aggregation, beta):
    model, layer, neuron, concept, concept_model, sampler, n, seed, n_raters, aggregation, prior,
    error_model, beta, eta_hat, n_distinct, cost, rho, rho_hat, rce.
    """
    if rater_model not in ("uniform", "per_input"):
        raise ValueError(f"rater_model must be 'uniform' or 'per_input', got {rater_model!r}")
    acts = np.asarray(acts)
    c_true = np.asarray(c_true)
    c_guide = np.asarray(c_guide)
    if not np.all((c_true == 0) | (c_true == 1)):
        raise ValueError("Setting 2 needs binary ground truth c_true")
    pairs = pairs.reset_index(drop=True)
    ns_arr = np.asarray(sorted(set(int(n) for n in ns)), dtype=np.int64)
    n_raters = sorted(set(int(r) for r in n_raters))
    r_max = n_raters[-1]
    seeds = list(seeds)
    n_seeds, n_seg, nmax = len(seeds), len(ns_arr), int(ns_arr[-1])
    root = np.random.SeedSequence(rng)
    frames = []
    starts = list(range(0, len(pairs), chunk_size))
    for start, seq in zip(starts, root.spawn(len(starts)), strict=True):
        gen = np.random.default_rng(seq)
        sub = pairs.iloc[start : start + chunk_size]
        kc = len(sub)
        a_hat = standardise_activations(acts[:, sub["neuron_idx"].to_numpy()], axis=0).T.copy()
        c = c_true[:, sub["concept_idx"].to_numpy()].T.astype(np.float64)
        g = c_guide[:, sub["concept_idx"].to_numpy()].T.astype(np.float64)
        n_inputs = a_hat.shape[1]
        rho = exact_rho(a_hat, c, axis=1)
        valid = np.isfinite(rho)
        a_hat[~valid] = 1.0
        q = mg_is_q(a_hat, g, gamma=gamma, axis=1)
        cdf = np.cumsum(q, axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        draws = grid_draws(cdf, n_inputs, n_seeds, ns_arr, gen)
        rows = kc * n_seeds
        flat = (draws.idx.reshape(rows, nmax) + n_inputs * np.repeat(np.arange(kc), n_seeds)[:, None]).ravel()
        w = 1.0 / (n_inputs * q.ravel()[flat])
        a_d = a_hat.ravel()[flat]
        seg_d = draws.seg.ravel().astype(np.int64)
        row_d = np.repeat(np.arange(rows), nmax)
        gid = draws.group_id.ravel()
        g_flat = flat[draws.group_start]
        row_g = draws.group_start // nmax
        seg_g = draws.group_seg.astype(np.int64)
        truth_g = c.ravel()[g_flat].astype(np.int8)
        prior_g = clip_prior(g.ravel()[g_flat], prior_eps)
        n_groups = len(g_flat)
        if rater_model == "uniform":
            eta_g = np.full(n_groups, eta_true)
        else:
            eta_g = gen.beta(*rater_beta, size=n_groups)
        ratings = truth_g[:, None] ^ (gen.random((n_groups, r_max)) < eta_g[:, None])
        yes_cum = np.cumsum(ratings, axis=1)
        n_distinct = draws.distinct_prefix_counts(n_seg).reshape(rows, n_seg)

        ctx = _DrawContext(rows, n_groups, n_seg, seg_d, gid, w, row_d, a_d, ns_arr, estimator)
        estimate = ctx.estimate

        results = [("model_only", "model", "", np.nan, 0, estimate(g.ravel()[g_flat]), np.full((rows, n_seg), np.nan))]
        for r in n_raters:
            yes = yes_cum[:, r - 1].astype(np.float64)
            if eta is not None:
                eta_rb = np.full((rows, n_seg), float(eta))
            elif r == 1:
                eta_rb = np.full((rows, n_seg), float(eta_single_rater))
            else:
                key = (row_g * n_seg + seg_g) * (r + 1) + yes.astype(np.int64)
                hist = np.bincount(key, minlength=rows * n_seg * (r + 1)).reshape(rows, n_seg, r + 1)
                eta_rb, _ = em_eta_from_histogram(np.cumsum(hist, axis=1), r)
                eta_rb = np.where(np.isfinite(eta_rb), eta_rb, eta_single_rater)
            eta_gb = eta_rb[row_g]  # (G, n_seg)
            results.append(("majority", "", "", np.nan, r, estimate(majority_vote(yes, r)), eta_rb * np.nan))
            for beta in betas:
                post = bragg_posterior(yes[:, None], r, eta_gb, prior=beta)
                results.append(("bragg_uniform", "uniform", "uniform", beta, r, estimate(post), eta_rb))
                post = bragg_posterior_per_input(yes, r, prior=beta)
                results.append(("bragg_uniform_per_input", "uniform", "per_input", beta, r, estimate(post), eta_rb * np.nan))
            post = bragg_posterior(yes[:, None], r, eta_gb, prior=prior_g[:, None], eps=prior_eps)
            results.append(("bragg_model", "model", "uniform", np.nan, r, estimate(post), eta_rb))
            post = bragg_posterior_per_input(yes, r, prior=prior_g, eps=prior_eps)
            results.append(("bragg_model_per_input", "model", "per_input", np.nan, r, estimate(post), eta_rb * np.nan))

        pair_r = np.repeat(np.arange(kc), n_seeds * n_seg)
        for agg, prior, error_model, beta, r, rh, eta_hat in results:
            rh = rh.reshape(kc, n_seeds, n_seg)
            rh[~valid] = np.nan
            frames.append(
                pd.DataFrame(
                    {
                        "pair": start + pair_r,
                        "n": np.tile(ns_arr, kc * n_seeds),
                        "seed": np.tile(np.repeat(np.asarray(seeds), n_seg), kc),
                        "n_raters": r,
                        "aggregation": agg,
                        "prior": prior,
                        "error_model": error_model,
                        "beta": beta,
                        "eta_hat": eta_hat.ravel(),
                        "n_distinct": n_distinct.ravel(),
                        "rho": rho[pair_r],
                        "rho_hat": rh.ravel(),
                    }
                )
            )
    df = pd.concat(frames, ignore_index=True)
    df["cost"] = df["n_distinct"] * df["n_raters"] * cost_per_rating
    df["rce"] = relative_corr_error(df["rho_hat"].to_numpy(), df["rho"].to_numpy())
    idx = df["pair"].to_numpy()
    head = pd.DataFrame(
        {
            "model": model,
            "layer": layer,
            "neuron": pairs["neuron"].to_numpy()[idx],
            "concept": pairs["concept"].to_numpy()[idx],
            "concept_model": concept_model,
            "sampler": "mg_is" if gamma == 0.2 else f"mg_is(gamma={gamma:g})",
        }
    )
    cols = ["n", "seed", "n_raters", "aggregation", "prior", "error_model", "beta", "eta_hat", "n_distinct", "cost", "rho", "rho_hat", "rce", "pair"]
    return pd.concat([head, df[cols]], axis=1)
