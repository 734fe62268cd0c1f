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
from scipy import special  # scipy.stats (0.3 s to import) only where a test statistic is computed

from neuronaudit.raters import rating_counts

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
    mass = np.diff(special.betainc(a, b, edges))  # the Beta(a, b) CDF, = scipy.stats.beta.cdf
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
    """EM's estimate: floats for one problem; arrays over the leading axes for a batch (``weight`` given)."""

    eta: float | np.ndarray
    prevalence: float | np.ndarray | None
    n_iter: int | np.ndarray
    converged: bool | np.ndarray
    log_likelihood: float | np.ndarray


def estimate_eta_em(
    yes,
    total,
    prior=None,
    eta0: float = 0.2,
    prevalence0: float = 0.3,
    max_iter: int = 500,
    tol: float = 1e-9,
    eps: float = 1e-3,
    *,
    weight=None,
) -> EMResult:
    """EM estimate of the uniform error rate eta from the ratings (one-coin Dawid-Skene model).

    E-step: [c]_i = bragg_posterior(alpha_i, m_i, eta, pi_i). M-step:
        eta = sum_i ([c]_i (m_i - alpha_i) + (1 - [c]_i) alpha_i) / sum_i m_i
    and, when ``prior`` is None, the prevalence pi = mean_i [c]_i is estimated too; otherwise the
    given prior (scalar beta or per-input model probabilities) is held fixed. eta is kept in
    [1e-6, 0.5 - 1e-6] (raters better than chance), the prevalence in [eps, 1 - eps]. EM stops when the
    log-likelihood changes by less than tol * max(1, |ll|), or after max_iter steps. Inputs with fewer
    than 2 ratings cannot separate eta from the prevalence; if none has 2 or more a ValueError is raised.

    Counts or histograms: without ``weight`` all entries of yes / total are the inputs of one problem.
    With ``weight`` each (yes, total) case counts weight times, e.g. a histogram of yes-counts:
    yes = arange(m + 1), total = m, weight[..., a] = number of inputs with a yes of m; the last axis
    runs over the cases and leading axes (of yes, total, weight, prior broadcast together) are
    independent problems, solved at once, each stopping on its own exactly as it would alone. The
    result's fields are then arrays over the leading axes (NaN, 0 iterations, where all weights are 0).
    This is the one EM for eta: Setting 2 runs it on the histograms of its designs.
    """
    yes, total = _counts(yes, total)
    batch = weight is not None
    if batch:
        w = np.asarray(weight, dtype=np.float64)
        pshape = () if prior is None else np.shape(prior)
        shape = np.broadcast_shapes(yes.shape, total.shape, w.shape, pshape)
        if not shape:
            shape = (1,)
        yes, total, w = (np.broadcast_to(x, shape) for x in (yes, total, w))
        has_w = (w > 0).any(axis=-1)
        if np.any(has_w & ~((w > 0) & (total >= 2)).any(axis=-1)):
            raise ValueError("EM for eta needs inputs with at least 2 ratings; give eta explicitly")
    else:
        yes, total = yes.ravel(), total.ravel()
        if not np.any(total >= 2):
            raise ValueError("EM for eta needs inputs with at least 2 ratings; give eta explicitly")
        shape = yes.shape
        w = np.ones(shape)
        has_w = np.ones((), dtype=bool)
    lead, n_cases = shape[:-1], shape[-1]
    n_prob = int(np.prod(lead, dtype=np.int64))
    yes, total, w = (np.reshape(x, (n_prob, n_cases)) for x in (yes, total, w))
    free_prior = prior is None
    if free_prior:
        pi = np.full(n_prob, float(prevalence0))
    else:
        pi_fixed = np.reshape(np.broadcast_to(clip_prior(prior, eps), shape), (n_prob, n_cases))
    eta = np.full(n_prob, float(eta0))
    ll = np.full(n_prob, np.nan)
    prev_ll = np.full(n_prob, -np.inf)
    n_iter = np.zeros(n_prob, dtype=np.int64)
    converged = np.zeros(n_prob, dtype=bool)
    active = np.flatnonzero(np.reshape(np.broadcast_to(has_w, lead), n_prob))
    it = 0
    while active.size and it < max_iter:
        it += 1
        y, m, wa = yes[active], total[active], w[active]
        e = eta[active, None]
        p = pi[active, None] if free_prior else pi_fixed[active]
        a1 = np.log(p) + (y * np.log1p(-e) + (m - y) * np.log(e))
        a0 = np.log1p(-p) + (y * np.log(e) + (m - y) * np.log1p(-e))
        ll_a = (wa * np.logaddexp(a1, a0)).sum(axis=-1)
        post = special.expit(a1 - a0)
        eta_a = (wa * (post * (m - y) + (1 - post) * y)).sum(axis=-1) / (wa * m).sum(axis=-1)
        eta[active] = np.clip(eta_a, 1e-6, 0.5 - 1e-6)
        if free_prior:
            pi[active] = np.clip((wa * post).sum(axis=-1) / wa.sum(axis=-1), eps, 1 - eps)
        ll[active] = ll_a
        n_iter[active] = it
        done = np.abs(ll_a - prev_ll[active]) < tol * np.maximum(1.0, np.abs(ll_a))
        converged[active[done]] = True
        prev_ll[active] = ll_a
        active = active[~done]
    if not batch:
        return EMResult(eta=float(eta[0]), prevalence=float(pi[0]) if free_prior else None, n_iter=int(n_iter[0]),
                        converged=bool(converged[0]), log_likelihood=float(ll[0]))
    empty = n_iter == 0
    eta[empty] = np.nan
    if free_prior:
        pi[empty] = np.nan
    return EMResult(eta=eta.reshape(lead), prevalence=pi.reshape(lead) if free_prior else None,
                    n_iter=n_iter.reshape(lead), converged=converged.reshape(lead), log_likelihood=ll.reshape(lead))


def fleiss_kappa(yes, total=None) -> float:
    """Fleiss' kappa for binary ratings (seed 001 C.7).

    Either ``yes`` is an (inputs, raters) 0/1 array (-1 or NaN = missing) or (yes, total) counts.
    With n_ij ratings of category j for input i and m_i ratings:
        P_i = (sum_j n_ij^2 - m_i) / (m_i (m_i - 1)),  P_bar = mean_i P_i,
        p_j = sum_i n_ij / sum_i m_i,  P_e = sum_j p_j^2,  kappa = (P_bar - P_e) / (1 - P_e).
    Varying m_i are allowed (inputs with m_i < 2 are skipped); for constant m this is Fleiss (1971).
    """
    if total is None:
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
    from scipy import stats  # deferred: every job importing this module would pay 0.3 s for it

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    res = stats.ttest_ind(x[np.isfinite(x)], y[np.isfinite(y)], equal_var=equal_var, alternative=alternative)
    return float(res.statistic), float(res.pvalue)
