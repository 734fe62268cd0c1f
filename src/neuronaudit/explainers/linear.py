"""Linear Explanations (LE): a sparse linear model from concept presence to a neuron's activation.

SPEC section 6; Oikarinen & Weng, "Linear Explanations for Individual Neurons" (ICML 2024). Semantics
read from the public peer Trustworthy-ML-Lab/Linear-Explanations (``explain_neurons.py``,
``linear_explanation.greedy_search``, ``glm_saga``) and reimplemented vectorised over neurons.

Inputs: concept presence X (N x C) -- binary labels + superclasses for LE(label), calibrated concept-model
probabilities sigmoid(a (cos + b)) for LE(SigLIP) -- and activations A (N x K), split into train and val
rows (the held-out test split used for scoring must not be passed in).

1. Concept filter (peer): keep concepts whose mean of their 5 largest values is >= 0.5 and whose std is
   >= 1e-5.
2. Preselection (peer: GLM-SAGA, lambda = 0.05, alpha = 0.99): on train rows, with X and A standardised,
   solve per neuron the elastic net
       min_w,b  1/(2 n) ||a - X w - b||^2 + lambda (alpha ||w||_1 + (1 - alpha)/2 ||w||^2)
   (glm_saga's gaussian loss sums over outputs, so the problem separates per neuron). Concepts are ranked by
   their weight, largest first (ties -- mostly zeros -- broken by the train correlation, our choice).
   Deviation: solved with full-batch FISTA (accelerated proximal gradient) on the C x C Gram matrix for all
   neurons at once instead of SAGA; both converge to the same optimum.
3. Greedy search (peer ``greedy_search``), per neuron, starting from the empty set:
   * candidates = the first ``width`` (10) concepts of the ranking that are neither selected nor rejected;
   * for each candidate fit a linear model with bias on selected + candidate (raw, unstandardised X, a)
     on train rows and compute the Pearson correlation of its prediction with a on val rows;
   * once at least one concept is selected, a candidate whose correlation gain over the current best is
     below ``tolerance`` (0.02) is rejected for good;
   * the candidate with the highest correlation above the current best joins the set; stop when none
     does or when ``max_length`` (10) concepts are selected.
   Weights are unconstrained in sign (the peer fits them with Adam, lr 0.3, 100 epochs on the MSE; we
   use the exact least-squares solution, the optimum Adam approximates, with a 1e-8 relative ridge for
   collinear concepts). Deviation: at the first step the best candidate is taken even if its
   correlation is <= 0 (the peer then returns an empty set and a stale concept), so every neuron gets
   length >= 1.
   All least-squares fits and correlations are computed from C x C and C x K moment matrices, so a
   greedy step is one batched solve of (K x width) systems of size <= 12, independent of N.
4. Output: concepts ordered by weight, largest first, with weights and bias (the peer's CSV order).

The l = 1 variant (:func:`best_single_concept`): the concept with the highest correlation over the given
rows (SPEC: "best single concept").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neuronaudit.explanations import explanation_table

__all__ = [
    "label_presence",
    "active_concepts",
    "elastic_net_weights",
    "greedy_linear_search",
    "linear_explanations",
    "linear_explanations_table",
    "PreparedPresence",
    "prepare_presence",
    "best_single_concept",
    "best_single_concept_table",
    "greedy_search_reference",
    "random_split",
]

DEFAULTS = {
    "max_length": 10,
    "tolerance": 0.02,
    "width": 10,
    "glm_lambda": 0.05,
    "glm_alpha": 0.99,
    "glm_iters": 500,
    "glm_tol": 1e-6,
    "min_top5": 0.5,
    "min_std": 1e-5,
}


def label_presence(labels, class_names, superclasses: dict | None = None, max_subclasses: int | None = None):
    """Binary presence for LE(label): one-hot classes plus superclasses (SPEC sec. 2 and 6).

    ``labels``: N class indices; ``superclasses``: {name: [class indices]}; superclasses with more than
    ``max_subclasses`` members are dropped (the calibration in SPEC sec. 2 uses 300). Returns
    ``(presence (N x C) float32, concept names)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(class_names)
    onehot = np.zeros((len(labels), n_classes), dtype=np.float32)
    onehot[np.arange(len(labels)), labels] = 1.0
    names = list(class_names)
    cols = [onehot]
    for name, members in (superclasses or {}).items():
        if max_subclasses is not None and len(members) > max_subclasses:
            continue
        cols.append(onehot[:, np.asarray(members, dtype=np.int64)].max(axis=1, keepdims=True))
        names.append(str(name).replace("_", " "))
    return np.concatenate(cols, axis=1), names


def active_concepts(presence, min_top5: float = 0.5, min_std: float = 1e-5, chunk: int = 1024) -> np.ndarray:
    """Mask of concepts kept by the peer's filter: mean of top-5 values >= 0.5 and std >= 1e-5.

    Computed in blocks of ``chunk`` columns, so the temporaries stay small for a 20,000-concept vocabulary.
    """
    presence = np.asarray(presence)
    n, c = presence.shape
    k = min(5, n)
    keep = np.empty(c, dtype=bool)
    for c0 in range(0, c, chunk):
        x = np.asarray(presence[:, c0 : c0 + chunk], dtype=np.float32)
        top = -np.partition(-x, k - 1, axis=0)[:k]
        keep[c0 : c0 + chunk] = (top.mean(axis=0) >= min_top5) & (x.std(axis=0, ddof=1 if n > 1 else 0) >= min_std)
    return keep


def random_split(n: int, val_fraction: float = 0.2, seed: int = 0):
    """Random train / val row indices (the peer uses fixed split files)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _standardise(x):
    mu = x.mean(axis=0, keepdims=True)
    sd = x.std(axis=0, ddof=1, keepdims=True)
    return (x - mu) / np.where(sd > 0, sd, 1.0)


GRAM_MAX_BYTES = 256e6  # the C x C Gram path of the preselection is used only below this size (and C <= 2 n)


def _standardise_columns(x, rows, cols, dtype, chunk: int = 1024) -> np.ndarray:
    """(x[rows][:, cols] - mean) / std (ddof 1, std 0 -> 1) as ``dtype``, built ``chunk`` columns at a
    time (statistics in float64) so that no full float64 copy of a large presence matrix is made."""
    out = np.empty((len(rows), len(cols)), dtype=dtype)
    for c0 in range(0, len(cols), chunk):
        blk = np.asarray(x[np.ix_(rows, cols[c0 : c0 + chunk])], dtype=np.float64)
        mu = blk.mean(axis=0, keepdims=True)
        sd = blk.std(axis=0, ddof=1, keepdims=True)
        blk -= mu
        blk /= np.where(sd > 0, sd, 1.0)
        out[:, c0 : c0 + chunk] = blk
    return out


def _use_gram(n_rows: int, n_cols: int, gram_max_bytes: float) -> bool:
    """The Gram path costs C^2 K per FISTA step, the data path 2 n C K; the Gram also needs 8 C^2 bytes."""
    return n_cols <= 2 * n_rows and 8.0 * n_cols * n_cols <= gram_max_bytes


def _curvature(xs, use_gram):
    """(hess, lip) of the preselection's quadratic on standardised xs (n x C): ``hess(z)`` = X'X z / n
    and the largest eigenvalue of X'X / n (exact from the C x C Gram, or a Lanczos estimate on the data
    path). Depends on the presence only, so :func:`prepare_presence` computes it once for all tiles."""
    n, c = xs.shape
    if use_gram:
        gram = xs.T @ xs / n
        lip = np.linalg.eigvalsh(gram)[-1]

        def hess(z):
            return gram @ z
    else:
        from scipy.sparse.linalg import LinearOperator, eigsh

        def hess(z):
            return np.asarray(xs.T @ (xs @ z.astype(xs.dtype, copy=False)), dtype=np.float64) / n

        op = LinearOperator((c, c), matvec=lambda v: hess(v.reshape(-1, 1)).ravel(), dtype=np.float64)
        lip = float(eigsh(op, k=1, which="LA", tol=1e-6, return_eigenvectors=False, v0=np.ones(c))[0]) * (1 + 1e-4)
    return hess, lip


def _fista(xs, ys, lam, alpha, n_iter, tol, use_gram, curvature=None):
    """FISTA for the elastic net on standardised xs (n x C), ys (n x K); see :func:`elastic_net_weights`.
    ``curvature``: :func:`_curvature` of xs when already computed.

    A neuron's problem is separate from the others', so each column stops on its own once the relative
    change of its weights ||w_t+1 - w_t|| <= tol ||w_t+1|| (or after ``n_iter`` steps). Returns
    (W (C x K) float64, number of steps of the slowest column).
    """
    n = xs.shape[0]
    xty = np.asarray(xs.T @ ys.astype(xs.dtype, copy=False), dtype=np.float64) / n
    l2 = lam * (1 - alpha)
    hess, lip = _curvature(xs, use_gram) if curvature is None else curvature
    step = 1.0 / (lip + l2)
    thresh = step * lam * alpha
    w = np.zeros_like(xty)
    z, t = w.copy(), 1.0
    active = np.arange(xty.shape[1])
    steps = 0
    for _ in range(n_iter):
        steps += 1
        za = z[:, active]
        v = za - step * (hess(za) - xty[:, active] + l2 * za)
        w_new = np.sign(v) * np.maximum(np.abs(v) - thresh, 0.0)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        delta = w_new - w[:, active]
        z[:, active] = w_new + (t - 1) / t_new * delta
        w[:, active] = w_new
        t = t_new
        if tol > 0:
            done = np.sqrt((delta * delta).sum(axis=0)) <= tol * np.sqrt((w_new * w_new).sum(axis=0))
            active = active[~done]
            if active.size == 0:
                break
    return w, steps


def elastic_net_weights(
    presence,
    activations,
    lam: float = 0.05,
    alpha: float = 0.99,
    n_iter: int = 500,
    tol: float = 1e-6,
    gram_max_bytes: float = GRAM_MAX_BYTES,
    return_n_iter: bool = False,
):
    """Elastic-net weights W (C x K) on standardised data, all neurons at once (module doc, step 2).

    FISTA on  1/(2n)||A_s - X_s W||^2 + lam (alpha |W|_1 + (1-alpha)/2 |W|^2);  the bias is exactly 0
    because both sides are centred. Stops per neuron on convergence (relative change of the weights
    below ``tol``; ``tol=0`` runs all ``n_iter`` steps). With few concepts it works on the C x C Gram
    matrix (float64); with many (C > 2 n, or a Gram above ``gram_max_bytes``) on the float32 data, never
    forming a C x C matrix (the step size then comes from a Lanczos estimate of the largest eigenvalue).
    ``return_n_iter``: also return the number of steps taken.
    """
    x = np.asarray(presence)
    n, c = x.shape
    use_gram = _use_gram(n, c, gram_max_bytes)
    rows, cols = np.arange(n), np.arange(c)
    xs = _standardise_columns(x, rows, cols, np.float64 if use_gram else np.float32)
    ys = _standardise(np.asarray(activations, dtype=np.float64))
    w, steps = _fista(xs, ys, lam, alpha, n_iter, tol, use_gram)
    return (w, steps) if return_n_iter else w


def _correlations(presence, activations) -> np.ndarray:
    xs = _standardise(np.asarray(presence, dtype=np.float64))
    ys = _standardise(np.asarray(activations, dtype=np.float64))
    return xs.T @ ys / (xs.shape[0] - 1)


class _Moments:
    """Train Gram matrices (with intercept) and val covariances: everything the greedy step needs.

    Global: (C+1) x (C+1) and C x C matrices over all concepts, used when that is smaller than the
    per-neuron matrices of :class:`_LocalMoments`. ``fit`` takes concept sets as positions in each
    neuron's ranking.
    """

    def __init__(self, x_tr, y_tr, x_val, y_val, ranking=None, x_parts=None):
        self.ranking = ranking
        x1, self.gram, xv, self.cxx = _Moments.presence_parts(x_tr, x_val) if x_parts is None else x_parts
        self.xty = x1.T @ y_tr  # (C+1, K)
        yv = y_val - y_val.mean(axis=0)
        self.cxy = xv.T @ yv  # (C, K)
        self.vy = (yv * yv).sum(axis=0)  # (K,)

    @staticmethod
    def presence_parts(x_tr, x_val):
        """The parts that depend on the presence only: (train rows with an intercept column, their
        (C+1) x (C+1) Gram, centred val rows, their C x C covariance)."""
        x1 = np.concatenate([np.ones((x_tr.shape[0], 1)), x_tr], axis=1)
        xv = x_val - x_val.mean(axis=0)
        return x1, x1.T @ x1, xv, xv.T @ xv

    def fit(self, sets, neurons):
        """Least squares with bias on concept sets (..., s) for neurons (...,): weights, bias, val corr.

        ``sets`` are concept indices, or positions in ``ranking[neuron]`` when a ranking was given.
        """
        if self.ranking is not None:
            sets = self.ranking[neurons[..., None], sets]
        idx = np.concatenate([np.zeros(sets.shape[:-1] + (1,), dtype=np.int64), sets + 1], axis=-1)
        return self._solve(idx, sets, neurons[..., None], neurons)

    def _solve(self, idx, sets, cols, neurons):
        """idx: Gram indices (intercept first); sets: cxx/cxy indices; cols: xty/cxy column selector."""
        g = self.gram[idx[..., :, None], idx[..., None, :]]
        h = self.xty[idx, cols]
        scale = np.trace(g, axis1=-2, axis2=-1)[..., None, None] / g.shape[-1]
        g = g + 1e-8 * scale * np.eye(g.shape[-1])
        coef = np.linalg.solve(g, h[..., None])[..., 0]
        w, b = coef[..., 1:], coef[..., 0]
        cxx = self.cxx[sets[..., :, None], sets[..., None, :]]
        cov = np.einsum("...i,...i->...", w, self.cxy[sets, cols])
        var = np.einsum("...i,...ij,...j->...", w, cxx, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.sqrt(var * self.vy[neurons])
        return w, b, np.where(np.isfinite(corr), corr, -np.inf)


class _LocalMoments(_Moments):
    """Per-neuron moments of the concepts at the first M positions of each neuron's ranking only:
    (K, M+1, M+1) train Grams and (K, M, M) val covariances, O(K M^2) memory whatever C is (a
    20,000-concept vocabulary would need two 3.2 GB matrices globally). Built ``block`` neurons at a
    time from the rows and columns needed (no copy of the presence matrix)."""

    def __init__(self, x, y, train_idx, val_idx, ranking, block: int = 8):
        k, m = ranking.shape
        self.gram = np.empty((k, m + 1, m + 1))
        self.xty = np.empty((k, m + 1))
        self.cxx = np.empty((k, m, m))
        self.cxy = np.empty((k, m))
        y_tr = np.asarray(y[train_idx], dtype=np.float64)
        yv = np.asarray(y[val_idx], dtype=np.float64)
        yv = yv - yv.mean(axis=0)
        self.vy = (yv * yv).sum(axis=0)
        n_tr = len(train_idx)
        for s in range(0, k, block):
            r = ranking[s : s + block]  # (kb, M)
            kb = r.shape[0]
            xt = np.asarray(x[np.ix_(train_idx, r.ravel())], dtype=np.float64).reshape(n_tr, kb, m).transpose(1, 0, 2)
            xt1 = np.concatenate([np.ones((kb, n_tr, 1)), xt], axis=2)
            self.gram[s : s + kb] = np.matmul(xt1.transpose(0, 2, 1), xt1)
            self.xty[s : s + kb] = np.einsum("kni,nk->ki", xt1, y_tr[:, s : s + kb])
            xv = np.asarray(x[np.ix_(val_idx, r.ravel())], dtype=np.float64).reshape(len(val_idx), kb, m).transpose(1, 0, 2)
            xv = xv - xv.mean(axis=1, keepdims=True)
            self.cxx[s : s + kb] = np.matmul(xv.transpose(0, 2, 1), xv)
            self.cxy[s : s + kb] = np.einsum("kni,nk->ki", xv, yv[:, s : s + kb])

    def fit(self, sets, neurons):
        """As :meth:`_Moments.fit` with ``sets`` positions in each neuron's ranking."""
        nb = neurons[..., None]
        idx = np.concatenate([np.zeros(sets.shape[:-1] + (1,), dtype=np.int64), sets + 1], axis=-1)
        g = self.gram[nb[..., None], idx[..., :, None], idx[..., None, :]]
        h = self.xty[nb, idx]
        scale = np.trace(g, axis1=-2, axis2=-1)[..., None, None] / g.shape[-1]
        g = g + 1e-8 * scale * np.eye(g.shape[-1])
        coef = np.linalg.solve(g, h[..., None])[..., 0]
        w, b = coef[..., 1:], coef[..., 0]
        cxx = self.cxx[nb[..., None], sets[..., :, None], sets[..., None, :]]
        cov = np.einsum("...i,...i->...", w, self.cxy[nb, sets])
        var = np.einsum("...i,...ij,...j->...", w, cxx, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.sqrt(var * self.vy[neurons])
        return w, b, np.where(np.isfinite(corr), corr, -np.inf)


def greedy_linear_search(
    presence,
    activations,
    ranking,
    train_idx,
    val_idx,
    max_length: int = 10,
    tolerance: float = 0.02,
    width: int = 10,
    moments: str = "auto",
    prepared: PreparedPresence | None = None,
):
    """Greedy sparse linear search (module doc, step 3) for all neurons at once.

    ``ranking``: (K x M) concept indices per neuron, best first (only the first max_length * width are
    ever looked at). Returns ``(concepts (K, max_length) int, -1 padded; weights (K, max_length) nan
    padded; bias (K,); val_corr (K,))`` with concepts in selection order.
    ``moments``: "global" (C x C matrices), "local" (per-neuron matrices over the ranked concepts only,
    memory independent of C) or "auto" (whichever is smaller); the results agree to rounding.
    ``prepared``: the :func:`prepare_presence` of ``presence`` with these train / val rows, whose global
    moments (built on first use) are reused by later calls.
    """
    x = np.asarray(presence)
    y = np.asarray(activations, dtype=np.float64)
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    ranking = np.asarray(ranking, dtype=np.int64)[:, : max_length * width]
    n_neurons, m = ranking.shape
    if moments == "auto":
        moments = "global" if (x.shape[1] + 1) ** 2 <= n_neurons * (m + 1) ** 2 else "local"
    if moments == "global":
        if prepared is not None:
            mom = _Moments(None, y[train_idx], None, y[val_idx], ranking=ranking, x_parts=prepared.global_parts())
        else:
            xd = np.asarray(x, dtype=np.float64)
            mom = _Moments(xd[train_idx], y[train_idx], xd[val_idx], y[val_idx], ranking=ranking)
            del xd
    elif moments == "local":
        mom = _LocalMoments(x, y, train_idx, val_idx, ranking)
    else:
        raise ValueError(f"moments must be 'auto', 'global' or 'local', got {moments!r}")
    sel = np.full((n_neurons, max_length), -1, dtype=np.int64)
    sel_w = np.full((n_neurons, max_length), np.nan)
    bias = np.zeros(n_neurons)
    best = np.zeros(n_neurons)
    used = np.zeros((n_neurons, m), dtype=bool)  # selected or rejected ranking positions
    active = np.ones(n_neurons, dtype=bool)
    for step in range(max_length):
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        avail = ~used[act]
        pos = np.argsort(~avail, axis=1, kind="stable")[:, :width]  # first `width` available positions
        valid = np.take_along_axis(avail, pos, axis=1)
        sets = np.concatenate(  # positions in each neuron's ranking
            [np.repeat(sel[act, None, :step], pos.shape[1], axis=1), pos[:, :, None]], axis=2
        )
        w, b, corr = mom.fit(sets, np.repeat(act[:, None], pos.shape[1], axis=1))
        corr = np.where(valid, corr, -np.inf)
        gain = corr - best[act, None]
        if step > 0:
            reject = valid & (gain < tolerance)
            rows, cols = np.nonzero(reject)
            used[act[rows], pos[rows, cols]] = True
            corr = np.where(reject, -np.inf, corr)
            ok = corr > best[act, None]
        else:
            ok = valid
        j = np.argmax(np.where(ok, corr, -np.inf), axis=1)
        chosen = ok[np.arange(act.size), j]
        done = act[~chosen]
        active[done] = False
        a, r = act[chosen], np.flatnonzero(chosen)
        jj = j[chosen]
        sel[a, : step + 1] = sets[r, jj]
        sel_w[a, : step + 1] = w[r, jj]
        bias[a] = b[r, jj]
        best[a] = corr[r, jj]
        used[a, pos[r, jj]] = True
    sel = np.where(sel >= 0, np.take_along_axis(ranking, np.maximum(sel, 0), axis=1), -1)  # concept indices
    return sel, sel_w, bias, best


@dataclass(frozen=True, eq=False)
class PreparedPresence:
    """What LE computes from the presence and the split alone, once for every call on the same presence
    (the explain stage's tiles of neurons): see :func:`prepare_presence`. Not for editing."""

    presence: np.ndarray  # (N x C) float32, as linear_explanations reads it
    cols: np.ndarray  # concepts kept by the activity filter (all with filter_concepts=False)
    train_idx: np.ndarray
    val_idx: np.ndarray
    filter_concepts: bool
    seed: int
    use_gram: bool  # the preselection's Gram path (see elastic_net_weights)
    xs: np.ndarray  # standardised train rows of the kept concepts (float64 on the Gram path, else float32)
    curvature: tuple  # (hess, lip) of xs, see _curvature
    _global: dict = field(default_factory=dict, repr=False)  # the greedy search's global moments, on first use

    def global_parts(self):
        """The presence-only part of the greedy search's global moments (built once, float64)."""
        if "parts" not in self._global:
            xd = np.asarray(self.presence, dtype=np.float64)
            self._global["parts"] = _Moments.presence_parts(xd[self.train_idx], xd[self.val_idx])
        return self._global["parts"]

    def check(self, presence, train_idx, val_idx, filter_concepts, seed) -> None:
        """Fail when the arguments of a call are not those this was prepared with."""
        if presence is not self.presence and (np.shape(presence) != self.presence.shape
                                              or not np.array_equal(np.asarray(presence, dtype=np.float32),
                                                                    self.presence)):
            raise ValueError(f"prepared LE presence {self.presence.shape} is not the presence of this call "
                             f"{np.shape(presence)}")
        if bool(filter_concepts) != self.filter_concepts:
            raise ValueError(f"prepared with filter_concepts={self.filter_concepts}, called with {filter_concepts}")
        if train_idx is None or val_idx is None:
            if int(seed) != self.seed:
                raise ValueError(f"prepared with split seed {self.seed}, called with {seed}")
        elif not (np.array_equal(train_idx, self.train_idx) and np.array_equal(val_idx, self.val_idx)):
            raise ValueError("prepared LE presence has other train / val rows than this call")


def prepare_presence(presence, train_idx=None, val_idx=None, filter_concepts: bool = True,
                     seed: int = 0) -> PreparedPresence:
    """The part of :func:`linear_explanations` that reads the presence and the split only, not the
    activations: the activity filter, the split (a random 80/20 one by ``seed`` when not given), the
    standardised train rows of the kept concepts and the FISTA step size (Lipschitz constant, a Lanczos
    run for a large vocabulary), plus (lazily) the greedy search's global moments. Pass it as
    ``prepared=`` to every call on this presence (e.g. one per tile of neurons): the rows are bit-identical
    to unprepared calls. Holds one standardised float32 copy of the train rows (float64 on the Gram path)."""
    x = np.asarray(presence, dtype=np.float32)
    if filter_concepts:
        cols = np.flatnonzero(active_concepts(x, DEFAULTS["min_top5"], DEFAULTS["min_std"]))
    else:
        cols = np.arange(x.shape[1])
    if cols.size == 0:
        raise ValueError("no concept passes the activity filter")
    if train_idx is None or val_idx is None:
        train_idx, val_idx = random_split(x.shape[0], seed=seed)
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    # preselection: one standardised copy of the train rows (float64 on the Gram path, else float32)
    use_gram = _use_gram(len(train_idx), len(cols), GRAM_MAX_BYTES)
    xs = _standardise_columns(x, train_idx, cols, np.float64 if use_gram else np.float32)
    return PreparedPresence(x, cols, train_idx, val_idx, bool(filter_concepts), int(seed), use_gram, xs,
                            _curvature(xs, use_gram))


def linear_explanations(
    presence,
    activations,
    concepts,
    train_idx=None,
    val_idx=None,
    max_length: int = 10,
    tolerance: float = 0.02,
    width: int = 10,
    glm_lambda: float = 0.05,
    glm_alpha: float = 0.99,
    glm_iters: int = 500,
    filter_concepts: bool = True,
    seed: int = 0,
    glm_tol: float = 1e-6,
    prepared: PreparedPresence | None = None,
) -> list[dict]:
    """LE for every neuron: structured linear explanations ``{"kind": "linear", "terms", "bias"}``.

    Each dict also carries ``"val_correlation"`` (popped by :func:`linear_explanations_table`).
    ``train_idx``/``val_idx`` default to a random 80/20 split of all rows. ``glm_iters`` caps the FISTA
    steps of the preselection, which stops earlier on convergence (relative change below ``glm_tol``).
    Memory stays O(N C) in float32 plus O(K M^2) for the search (M = max_length * width): no C x C
    matrix is formed for large vocabularies (see :func:`elastic_net_weights`, ``greedy_linear_search``).
    ``prepared``: :func:`prepare_presence` of this presence, split and ``filter_concepts`` (checked), so
    that calls on the same presence (tiles of neurons) skip that setup; same results bit for bit.
    """
    names = np.asarray(concepts, dtype=object)
    if np.shape(presence)[1] != len(names):
        raise ValueError(f"{len(names)} concept names for {np.shape(presence)[1]} presence columns")
    if prepared is None:
        prep = prepare_presence(presence, train_idx, val_idx, filter_concepts, seed)
    else:
        prepared.check(presence, train_idx, val_idx, filter_concepts, seed)
        prep = prepared
    x, cols, train_idx, val_idx, xs = prep.presence, prep.cols, prep.train_idx, prep.val_idx, prep.xs
    y = np.asarray(activations, dtype=np.float32)
    ys = _standardise(np.asarray(y[train_idx], dtype=np.float64))
    w_glm, _ = _fista(xs, ys, glm_lambda, glm_alpha, glm_iters, glm_tol, prep.use_gram, prep.curvature)
    corr = np.asarray(xs.T @ ys.astype(xs.dtype, copy=False), dtype=np.float64) / (xs.shape[0] - 1)
    del xs
    if prepared is None:
        del prep  # the standardised copy is not needed by the search
    m = min(max_length * width, len(cols))
    ranking = np.empty((y.shape[1], m), dtype=np.int64)  # (K, M): weight desc, then train corr desc
    for k0 in range(0, y.shape[1], 256):
        sl = slice(k0, k0 + 256)
        ranking[sl] = np.lexsort((-np.nan_to_num(corr[:, sl]), -w_glm[:, sl]), axis=0).T[:, :m]
    del w_glm, corr
    sel, sel_w, bias, val_corr = greedy_linear_search(
        x, y, cols[ranking], train_idx, val_idx, max_length=max_length, tolerance=tolerance, width=width,
        prepared=prepared,
    )
    out = []
    for k in range(sel.shape[0]):  # output assembly only; the search above is vectorised
        m = sel[k] >= 0
        order = np.argsort(-sel_w[k, m], kind="stable")
        terms = [[float(sel_w[k, m][i]), str(names[sel[k, m][i]])] for i in order]
        out.append({"kind": "linear", "terms": terms, "bias": float(bias[k]), "val_correlation": float(val_corr[k])})
    return out


def linear_explanations_table(presence, activations, concepts, neurons=None, method: str = "le", **kwargs) -> pd.DataFrame:
    """:func:`linear_explanations` as the normalised explanation table; source_score = val correlation."""
    res = linear_explanations(presence, activations, concepts, **kwargs)
    scores = [d.pop("val_correlation") for d in res]
    params = {**DEFAULTS, **{k: v for k, v in kwargs.items() if k in DEFAULTS}}
    return explanation_table(
        np.arange(len(res)) if neurons is None else neurons, method, res, json.dumps(params, sort_keys=True), scores
    )


def best_single_concept(presence, activations, concepts=None):
    """l = 1 variant: per neuron the concept with the highest Pearson correlation (indices, corr, names)."""
    corr = np.nan_to_num(_correlations(presence, activations), nan=-np.inf)
    idx = np.argmax(corr, axis=0)
    best = corr[idx, np.arange(corr.shape[1])]
    names = None if concepts is None else np.asarray(concepts, dtype=object)[idx]
    return idx, best, names


def best_single_concept_table(presence, activations, concepts, neurons=None, method: str = "le_l1") -> pd.DataFrame:
    """:func:`best_single_concept` as the normalised explanation table (source_score = correlation)."""
    _, best, names = best_single_concept(presence, activations, concepts)
    dicts = [{"kind": "simple", "concept": str(c)} for c in names]
    return explanation_table(np.arange(len(dicts)) if neurons is None else neurons, method, dicts, "{}", best)


def greedy_search_reference(presence, activation, ranking, train_idx, val_idx, max_length=10, tolerance=0.02, width=10):
    """Straightforward one-neuron version of the greedy search (peer's loop, lstsq fits); for tests."""
    x = np.asarray(presence, dtype=np.float64)
    a = np.asarray(activation, dtype=np.float64)
    ranking = list(np.asarray(ranking)[: max_length * width])
    selected, bad = [], set()
    best, best_w, best_b = 0.0, None, None
    while len(selected) < max_length:
        cands = [c for c in ranking if c not in selected and c not in bad][:width]
        cur, cur_c = best, None
        for c in cands:
            cols = selected + [c]
            design = np.column_stack([np.ones(len(train_idx)), x[np.ix_(train_idx, cols)]])
            coef = np.linalg.lstsq(design, a[train_idx], rcond=None)[0]
            pred = x[np.ix_(val_idx, cols)] @ coef[1:] + coef[0]
            corr = np.corrcoef(pred, a[val_idx])[0, 1] if pred.std() > 0 else -np.inf
            if selected and corr - best < tolerance:
                bad.add(c)
            elif corr > cur or (not selected and cur_c is None):
                cur, cur_c, cur_w, cur_b = corr, c, coef[1:], coef[0]
        if cur_c is None:
            break
        selected.append(cur_c)
        best, best_w, best_b = cur, cur_w, cur_b
    return selected, best_w, best_b, best
