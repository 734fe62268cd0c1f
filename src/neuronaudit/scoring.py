"""Exact scores over the whole probing dataset, vectorised over neurons and explanations.

- ``correlation_scores``: Pearson correlation between each neuron's activations a_k and an
  explanation's predicted activation s(x, E) over all N inputs (SPEC sec. 2, "simulation with
  correlation scoring"; seed 001 C.4). Degenerate columns (constant or non-finite) score NaN with a
  reason instead of raising.
- ``pairwise_correlation``: the (K, M) correlation matrix between K neurons and M concepts, computed
  in column blocks; used to pick each neuron's best concept.
- ``auc_scores``: rank-based ROC AUC (Mann-Whitney U / (n1 n0), ties averaged), used for the concept
  model's AUC bins of seed 001 Table 4 and for INVERT-style scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CorrelationResult", "correlation_scores", "pairwise_correlation", "auc_scores", "standardise"]

OK = ""


@dataclass
class CorrelationResult:
    """``rho`` (float array) and ``reason`` (str array; "" where rho is defined)."""

    rho: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return len(self.rho)

    @property
    def ok(self) -> np.ndarray:
        return self.reason == OK


def standardise(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Population z-scores (x - mean_D x) / std_D x (ddof=0; SPEC sec. 3).

    Returns (z, mean, std); columns with std == 0 or non-finite values give z = NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf in a non-finite column: NaN, no warning
        mean = x.mean(axis=axis, keepdims=True)
        std = x.std(axis=axis, keepdims=True)
        # a constant column can get std ~1e-17 from rounding in its mean (0.1 * 3 / 3 != 0.1), which
        # would make z = +-1 instead of NaN: test constancy exactly
        std = np.where(np.max(x, axis=axis, keepdims=True) == np.min(x, axis=axis, keepdims=True), 0.0, std)
        z = (x - mean) / np.where(std > 0, std, np.nan)
    return z, np.squeeze(mean, axis), np.squeeze(std, axis)


def _column_reasons(x: np.ndarray, what: str) -> np.ndarray:
    finite = np.all(np.isfinite(x), axis=0)
    const = np.max(x, axis=0) == np.min(x, axis=0)  # only read where finite (non-finite wins below)
    reason = np.full(x.shape[1], OK, dtype=object)
    reason[const] = f"constant {what}"
    reason[~finite] = f"non-finite {what}"
    return reason


def correlation_scores(
    activations: np.ndarray,
    predicted: np.ndarray,
    pairing: np.ndarray | None = None,
    block: int = 512,
) -> CorrelationResult:
    """Pearson correlation rho_j = corr_D(a_{k(j)}, s_j) for every column j of ``predicted``.

    activations: (N, K). predicted: (N, K) column-paired with activations when ``pairing`` is None,
    or (N, E) with ``pairing[j]`` the neuron index of explanation j. Constant or non-finite
    activations (or predictions) give rho = NaN and a reason, never an exception.
    rho = E[a_hat s_hat] with population z-scores (SPEC sec. 2).
    """
    a = np.asarray(activations)
    s = np.asarray(predicted)
    if a.ndim == 1:
        a = a[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if a.shape[0] != s.shape[0]:
        raise ValueError(f"activations have {a.shape[0]} inputs but predictions have {s.shape[0]}")
    if pairing is None:
        if a.shape[1] != s.shape[1]:
            raise ValueError(
                f"activations have {a.shape[1]} columns and predictions {s.shape[1]}: give `pairing` "
                "(the neuron index of each prediction column)"
            )
        pairing = np.arange(s.shape[1])
    pairing = np.asarray(pairing, dtype=np.int64)
    if pairing.shape != (s.shape[1],):
        raise ValueError(f"pairing must have one neuron index per prediction column ({s.shape[1]})")
    bad = np.flatnonzero((pairing < 0) | (pairing >= a.shape[1]))
    if bad.size:
        raise IndexError(f"pairing column {bad[0]} names neuron {pairing[bad[0]]}, but there are {a.shape[1]}")
    n_cols = s.shape[1]
    rho = np.full(n_cols, np.nan)
    reason = np.empty(n_cols, dtype=object)  # every column is filled by its block below
    for start in range(0, n_cols, block):
        sl = slice(start, start + block)
        ablk = a[:, pairing[sl]]
        sblk = s[:, sl]
        r_a = _column_reasons(ablk, "activation")
        r_s = _column_reasons(sblk, "prediction")
        za, _, _ = standardise(ablk)  # float64
        zs, _, _ = standardise(sblk)
        rb = np.einsum("ij,ij->j", za, zs) / a.shape[0]  # NaN columns propagate quietly
        rb = np.clip(rb, -1.0, 1.0)
        rr = np.where(r_a != OK, r_a, r_s)
        rb[rr != OK] = np.nan
        rho[sl] = rb
        reason[sl] = rr
    return CorrelationResult(rho=rho, reason=reason)


def pairwise_correlation(A: np.ndarray, C: np.ndarray, block: int = 256) -> np.ndarray:
    """(K, M) matrix of Pearson correlations between the columns of A (N, K) and C (N, M).

    Computed in blocks of ``block`` columns of A so that only one (N, block) standardised copy of A
    is held at a time. Constant or non-finite columns give NaN rows/columns.
    """
    A = np.asarray(A)
    C = np.asarray(C)
    if A.shape[0] != C.shape[0]:
        raise ValueError(f"A has {A.shape[0]} inputs but C has {C.shape[0]}")
    n = A.shape[0]
    zc, _, _ = standardise(C)  # a constant or non-finite column is NaN throughout
    out = np.empty((A.shape[1], C.shape[1]))
    for start in range(0, A.shape[1], block):
        za, _, _ = standardise(A[:, start : start + block])
        out[start : start + block] = (za.T @ zc) / n
    return np.clip(out, -1.0, 1.0)


def auc_scores(scores: np.ndarray, labels: np.ndarray, pairwise: bool | None = None) -> np.ndarray:
    """ROC AUC of each score column for binary labels, rank-based with averaged ties.

    AUC = (sum of ranks of positives - n1 (n1 + 1) / 2) / (n1 n0)  (Mann-Whitney U).
    scores: (N, K). labels: (N, K) paired column-wise (returns (K,)) or (N, M) with
    ``pairwise=True`` (returns (K, M)). Default: paired when the shapes agree. Columns without
    both classes, or with non-finite scores, give NaN.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim == 1:
        s = s[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[0]} inputs but labels have {y.shape[0]}")
    if not np.all(np.isin(y[np.isfinite(y)] if y.dtype.kind == "f" else y, (0, 1))):
        raise ValueError("labels must be binary 0/1")
    y = y.astype(np.float64)
    if pairwise is None:
        pairwise = s.shape != y.shape
    from scipy.stats import rankdata  # deferred: importing scipy.stats costs every job 0.3 s

    finite = np.all(np.isfinite(s), axis=0)
    ranks = rankdata(np.where(np.isfinite(s), s, 0.0), axis=0, method="average")
    n1 = y.sum(axis=0)
    n0 = y.shape[0] - n1
    # a label column with one class only has rank_sum = n1 (n1 + 1) / 2 exactly, so its AUC is 0/0 = NaN
    with np.errstate(invalid="ignore"):
        if pairwise:
            rank_sum = ranks.T @ y  # (K, M)
            auc = (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)
            auc[~finite, :] = np.nan
        else:
            if s.shape != y.shape:
                raise ValueError(f"paired AUC needs equal shapes; got {s.shape} and {y.shape}")
            rank_sum = np.einsum("ij,ij->j", ranks, y)
            auc = (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)
            auc[~finite] = np.nan
    return auc
