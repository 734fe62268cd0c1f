"""Aggregating noisy ratings into concept presence [c]_i (SPEC sec. 4; seed 001 Sec. 3.2, B.2, B.4, C.7).

Ratings of input i are summarised as counts: alpha_i = number of "yes" and m_i = number of ratings
(m_i may vary between inputs).

- ``majority_vote``: 1 if alpha > m/2, 0 if alpha < m/2, 0.5 on ties (and for m = 0).
- ``bragg_posterior`` (BRAgg, uniform error model; a rater is right with probability 1 - eta):
      P(R|C) = (1-eta)^alpha eta^(m-alpha),  P(R|~C) = eta^alpha (1-eta)^(m-alpha)
      [c]_i = P(R|C) pi_i / (P(R|C) pi_i + P(R|~C) (1 - pi_i))
  with a uniform prior pi_i = beta (default 0.05; seed 001 B.2) or the concept model's calibrated
  probability as prior ("SigLIP prior"), clipped away from 0 and 1 (``clip_prior``).
- ``bragg_posterior_per_input``: eta_i ~ Beta(0.75, 2.5) per input, integrated over 100 bins
  (seed 001 eqs. 18-21). Seed eq. 21 writes the density as eta^alpha (1-eta)^beta; we follow the
  stated Beta(0.75, 2.5), i.e. density ∝ eta^(alpha-1) (1-eta)^(beta-1). Each bin's weight is its
  exact Beta mass and its eta the bin midpoint.
- ``estimate_eta_em``: eta (and, unless given, the prevalence) by EM from the ratings; the seeds do
  not say how eta was chosen, so the callers allow an override (SPEC sec. 4).
- ``fleiss_kappa`` (seed 001 C.7), ``standard_error`` and ``two_sample_ttest`` (Table 7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "BRAGG_BETA",
    "majority_vote",
    "clip_prior",
    "bragg_posterior",
    "beta_error_bins",
    "bragg_posterior_per_input",
    "EMResult",
    "estimate_eta_em",
    "fleiss_kappa",
    "standard_error",
    "two_sample_ttest",
]

BRAGG_BETA = 0.05  # uniform prior, seed 001 B.2
PER_INPUT_ERROR_PRIOR = (0.75, 2.5)  # seed 001 B.4


def _counts(yes, total) -> tuple[np.ndarray, np.ndarray]:
    yes = np.asarray(yes)
    total = np.broadcast_to(np.asarray(total), yes.shape)
    bad = (yes < 0) | (yes > total)
    if np.any(bad):
        i = np.flatnonzero(np.ravel(bad))[0]
        raise ValueError(f"need 0 <= yes <= total; input {i} has yes={np.ravel(yes)[i]}, total={np.ravel(total)[i]}")
    return yes.astype(np.float64), total.astype(np.float64)


def majority_vote(yes, total) -> np.ndarray:
    """1 where yes > total/2, 0 where yes < total/2, 0.5 on ties (including no ratings)."""
    yes, total = _counts(yes, total)
    return np.where(2 * yes > total, 1.0, np.where(2 * yes < total, 0.0, 0.5))


def clip_prior(prior, eps: float = 1e-3) -> np.ndarray:
    """Clip prior probabilities into [eps, 1 - eps] so that ratings can always move the posterior."""
    return np.clip(np.asarray(prior, dtype=np.float64), eps, 1.0 - eps)


def _check_eta(eta) -> np.ndarray:
    eta = np.asarray(eta, dtype=np.float64)
    if np.any((eta <= 0) | (eta >= 1)):
        raise ValueError(f"eta must lie strictly in (0, 1); got {eta}")
    return eta


def bragg_posterior(yes, total, eta, prior=BRAGG_BETA, eps: float = 1e-3) -> np.ndarray:
    """BRAgg with the uniform error model (SPEC sec. 4):

    [c]_i = P(R|C) pi_i / (P(R|C) pi_i + P(R|~C)(1 - pi_i)),
    P(R|C) = (1-eta)^alpha eta^(m-alpha), P(R|~C) = eta^alpha (1-eta)^(m-alpha).

    Computed as sigmoid(logit pi_i + (2 alpha - m) log((1-eta)/eta)). ``prior`` is a scalar (uniform
    prior beta) or per-input array (model prior, clipped with ``clip_prior(eps)``).
    """
    yes, total = _counts(yes, total)
    eta = _check_eta(eta)
    pi = clip_prior(prior, eps)
    logit = np.log(pi) - np.log1p(-pi) + (2 * yes - total) * (np.log1p(-eta) - np.log(eta))
    return special.expit(logit)


def beta_error_bins(n_bins: int = 100, a: float = PER_INPUT_ERROR_PRIOR[0], b: float = PER_INPUT_ERROR_PRIOR[1]):
    """(eta midpoints, weights) of n_bins equal bins on [0, 1]; weights = exact Beta(a, b) mass per bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    mass = np.diff(stats.beta.cdf(edges, a, b))
    return 0.5 * (edges[1:] + edges[:-1]), mass


def bragg_posterior_per_input(
    yes,
    total,
    prior=BRAGG_BETA,
    a: float = PER_INPUT_ERROR_PRIOR[0],
    b: float = PER_INPUT_ERROR_PRIOR[1],
    n_bins: int = 100,
    eps: float = 1e-3,
) -> np.ndarray:
    """BRAgg with the per-input error model eta_i ~ Beta(a, b) (seed 001 eqs. 18-21), over n_bins bins:

    [c]_i = pi_i I1 / (pi_i I1 + (1 - pi_i) I0),
    I1 = int (1-eta)^alpha eta^(m-alpha) dBeta(eta),  I0 = int eta^alpha (1-eta)^(m-alpha) dBeta(eta).

    Note: seed eq. 21 writes the density with exponents alpha, beta; we use the stated Beta(0.75, 2.5)
    (exponents alpha - 1, beta - 1). The integrals use each bin's exact Beta mass at its midpoint.
    """
    yes, total = _counts(yes, total)
    pi = clip_prior(prior, eps)
    eta, weight = beta_error_bins(n_bins, a, b)
    log_w = np.log(weight)
    # the likelihood ratio depends only on (alpha, m): integrate once per distinct pair
    pairs, inverse = np.unique(np.stack([yes.ravel(), total.ravel()]), axis=1, return_inverse=True)
    y, m = pairs[0][:, None], pairs[1][:, None]
    log_l1 = special.logsumexp(y * np.log1p(-eta) + (m - y) * np.log(eta) + log_w, axis=-1)
    log_l0 = special.logsumexp(y * np.log(eta) + (m - y) * np.log1p(-eta) + log_w, axis=-1)
    llr = (log_l1 - log_l0)[np.ravel(inverse)].reshape(yes.shape)
    return special.expit(np.log(pi) - np.log1p(-pi) + llr)


@dataclass
class EMResult:
    eta: float
    prevalence: float | None
    n_iter: int
    converged: bool
    log_likelihood: float


def estimate_eta_em(
    yes,
    total,
    prior=None,
    eta0: float = 0.2,
    prevalence0: float = 0.3,
    max_iter: int = 500,
    tol: float = 1e-9,
    eps: float = 1e-3,
) -> EMResult:
    """EM estimate of the uniform error rate eta from the ratings (one-coin Dawid-Skene model).

    E-step: [c]_i = bragg_posterior(alpha_i, m_i, eta, pi_i). M-step:
        eta = sum_i ([c]_i (m_i - alpha_i) + (1 - [c]_i) alpha_i) / sum_i m_i
    and, when ``prior`` is None, the prevalence pi = mean_i [c]_i is estimated too; otherwise the
    given prior (scalar beta or per-input model probabilities) is held fixed. eta is kept below 0.5
    (raters better than chance). Inputs with fewer than 2 ratings cannot separate eta from the
    prevalence; if none has 2 or more a ValueError is raised.
    """
    yes, total = _counts(yes, total)
    yes, total = yes.ravel(), total.ravel()
    if not np.any(total >= 2):
        raise ValueError("EM for eta needs inputs with at least 2 ratings; give eta explicitly")
    free_prior = prior is None
    pi = np.full(yes.shape, prevalence0) if free_prior else np.broadcast_to(clip_prior(prior, eps), yes.shape)
    eta = float(eta0)
    prev_ll = -np.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported after the loop)
        log_l1 = yes * np.log1p(-eta) + (total - yes) * np.log(eta)
        log_l0 = yes * np.log(eta) + (total - yes) * np.log1p(-eta)
        a1 = np.log(pi) + log_l1
        a0 = np.log1p(-pi) + log_l0
        ll = float(np.logaddexp(a1, a0).sum())
        post = special.expit(a1 - a0)
        eta = float(np.sum(post * (total - yes) + (1 - post) * yes) / total.sum())
        eta = min(max(eta, 1e-6), 0.5 - 1e-6)
        if free_prior:
            pi = np.full(yes.shape, np.clip(post.mean(), eps, 1 - eps))
        if abs(ll - prev_ll) < tol * max(1.0, abs(ll)):
            converged = True
            break
        prev_ll = ll
    return EMResult(eta=eta, prevalence=float(pi[0]) if free_prior else None, n_iter=it, converged=converged, log_likelihood=ll)


def fleiss_kappa(yes, total=None) -> float:
    """Fleiss' kappa for binary ratings (seed 001 C.7).

    Either ``yes`` is an (inputs, raters) 0/1 array (-1 or NaN = missing) or (yes, total) counts.
    With n_ij ratings of category j for input i and m_i ratings:
        P_i = (sum_j n_ij^2 - m_i) / (m_i (m_i - 1)),  P_bar = mean_i P_i,
        p_j = sum_i n_ij / sum_i m_i,  P_e = sum_j p_j^2,  kappa = (P_bar - P_e) / (1 - P_e).
    Varying m_i are allowed (inputs with m_i < 2 are skipped); for constant m this is Fleiss (1971).
    """
    if total is None:
        from neuronaudit.raters import rating_counts

        yes, total = rating_counts(yes)
    yes, total = _counts(yes, total)
    keep = total >= 2
    if not keep.any():
        raise ValueError("Fleiss' kappa needs inputs with at least 2 ratings")
    y, m = yes[keep], total[keep]
    no = m - y
    p_i = (y**2 + no**2 - m) / (m * (m - 1))
    p_yes = y.sum() / m.sum()
    p_e = p_yes**2 + (1 - p_yes) ** 2
    if p_e == 1.0:
        return float("nan")
    return float((p_i.mean() - p_e) / (1 - p_e))


def standard_error(x, axis=None) -> float | np.ndarray:
    """Standard error of the mean, std(ddof=1) / sqrt(n), ignoring NaN."""
    x = np.asarray(x, dtype=np.float64)
    n = np.sum(np.isfinite(x), axis=axis)
    return np.nanstd(x, ddof=1, axis=axis) / np.sqrt(n)


def two_sample_ttest(x, y, alternative: str = "greater", equal_var: bool = True) -> tuple[float, float]:
    """Two-sample Student's t-test of mean(x) vs mean(y) (seed 001 Table 7); returns (t, p). NaN ignored."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    res = stats.ttest_ind(x[np.isfinite(x)], y[np.isfinite(y)], equal_var=equal_var, alternative=alternative)
    return float(res.statistic), float(res.pvalue)
