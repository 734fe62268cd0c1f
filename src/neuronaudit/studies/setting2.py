"""Setting 2: rating aggregation with noisy (simulated) raters on MG-IS samples (SPEC sec. 5;
seed 001 Sec. 4, A.3 Fig. 6, B.2 Fig. 8, B.4 Fig. 10, B.5 Fig. 11).

For every (pair, seed) max(ns) inputs are drawn by MG-IS (gamma = 0.2) with the draw engine of
Setting 1 (``sampling.PairDraws``) and each distinct input is rated once by max(n_raters) simulated
raters (``raters.uniform_error_ratings`` / ``raters.per_input_error_ratings``); the first r raters give
the r-rater design, and the first n draws the n-input design (nested designs, as in a growing study).
Ratings are aggregated per input and the soft [c] enters the same estimator (SPEC sec. 3, importance
weights p / q, unbiased or self-normalised) in place of c. Error = RCE against the exact rho of the
ground truth over the whole dataset.

Aggregations (column ``aggregation``):
- ``majority``                        majority vote, ties 0.5
- ``bragg_uniform``                   BRAgg, uniform error model, uniform prior beta (one row per beta)
- ``bragg_model``                     BRAgg, uniform error model, concept-model prior ("hybrid")
- ``bragg_uniform_per_input``         BRAgg, per-input error model Beta(0.75, 2.5), uniform prior beta
- ``bragg_model_per_input``           BRAgg, per-input error model, concept-model prior
- ``model_only``                      the concept model's probabilities alone (n_raters = 0, cost 0)

eta for the uniform error model is estimated by EM (``aggregation.estimate_eta_em``, one-coin model with
free prevalence) for each (pair, seed, n, r) from the ratings of that design, i.e. of the distinct
inputs among the first n draws (a histogram of yes-counts); with one rater per input EM cannot separate eta from
the prevalence and ``eta_single_rater`` (default 0.2) is used; ``eta`` overrides both.

Cost = n_distinct * n_raters * $0.004 (seed 001 A.3: $0.06 per 15-image task).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from neuronaudit.aggregation import (
    BRAGG_BETA,
    PER_INPUT_ERROR_PRIOR,
    bragg_posterior,
    bragg_posterior_per_input,
    clip_prior,
    estimate_eta_em,
    majority_vote,
)
from neuronaudit.raters import per_input_error_ratings, uniform_error_ratings
from neuronaudit.sampling import (
    DEFAULT_NS,
    PairDraws,
    exact_rho,
    relative_corr_error,
    standardise_activations,
)
from neuronaudit.studies.setting1 import select_pairs, summary_table

__all__ = ["COST_PER_RATING", "run_setting2", "eta_from_histograms", "select_pairs", "summary_table"]

COST_PER_RATING = 0.06 / 15  # seed 001 A.3


def eta_from_histograms(hist: np.ndarray, m: int) -> np.ndarray:
    """eta by EM (``aggregation.estimate_eta_em``, free prevalence) from histograms of yes-counts:
    hist[..., a] = number of inputs with a yes of m; NaN where a histogram is empty."""
    return estimate_eta_em(np.arange(m + 1), m, weight=hist).eta


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
    error_model, beta, eta_hat, n_distinct, cost, rho, rho_hat, rce, pair, no_variation (True where
    the aggregated c showed no variation in the sample, so rho_hat = 0 was reported).
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
    if ns_arr[0] < 1:
        raise ValueError("sample sizes must be >= 1")
    n_raters = sorted(set(int(r) for r in n_raters))
    r_max = n_raters[-1]
    seeds = list(seeds)
    n_seeds, n_seg = len(seeds), len(ns_arr)
    sampler = {"name": "mg_is", "gamma": gamma}
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
        rho = exact_rho(a_hat, c, axis=1)
        valid = np.isfinite(rho)
        a_hat[~valid] = 1.0  # undefined pairs are sampled uniformly and reported NaN
        g_q = g if valid.all() else np.where(valid[:, None], g, 1.0)
        draws = PairDraws.draw(sampler, a_hat, g_q, ns_arr, n_seeds, gen, pairs=np.arange(start, start + kc))
        groups = draws.groups()
        rows = kc * n_seeds
        truth_g = c.ravel()[groups.flat]
        prior_g = clip_prior(g.ravel()[groups.flat], prior_eps)
        if rater_model == "uniform":
            ratings = uniform_error_ratings(truth_g, r_max, eta_true, rng=gen)
        else:
            ratings, _ = per_input_error_ratings(truth_g, r_max, rng=gen, a=rater_beta[0], b=rater_beta[1])
        yes_cum = np.cumsum(ratings, axis=1)
        n_distinct = draws.distinct_counts().reshape(rows, n_seg)

        def estimate(c_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return draws.estimate_grouped(a_hat, c_group, groups, estimator)  # noqa: B023 (used in this chunk)

        results = [("model_only", "model", "", np.nan, 0, estimate(g.ravel()[groups.flat]), np.full((rows, n_seg), np.nan))]
        for r in n_raters:
            yes = yes_cum[:, r - 1].astype(np.float64)
            if eta is not None:
                eta_rb = np.full((rows, n_seg), float(eta))
            elif r == 1:
                eta_rb = np.full((rows, n_seg), float(eta_single_rater))
            else:
                # yes-count histogram of the inputs first drawn in segment b, cumulated over segments:
                # the design of size ns[b] rates the distinct inputs among its first ns[b] draws
                key = (groups.row * n_seg + groups.seg) * (r + 1) + yes.astype(np.int64)
                hist = np.bincount(key, minlength=rows * n_seg * (r + 1)).reshape(rows, n_seg, r + 1)
                eta_rb = eta_from_histograms(np.cumsum(hist, axis=1), r)  # never empty: ns[0] >= 1
            eta_gb = eta_rb[groups.row]  # (G, n_seg)
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
        for agg, prior, error_model, beta, r, (rh, no_var), eta_hat in results:
            rh = rh.reshape(kc, n_seeds, n_seg)
            rh[~valid] = np.nan
            no_var = no_var.reshape(kc, n_seeds, n_seg)
            no_var[~valid] = False
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
                        "no_variation": no_var.ravel(),
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
    cols = ["n", "seed", "n_raters", "aggregation", "prior", "error_model", "beta", "eta_hat", "n_distinct", "cost", "rho",
            "rho_hat", "rce", "pair", "no_variation"]
    return pd.concat([head, df[cols]], axis=1)
