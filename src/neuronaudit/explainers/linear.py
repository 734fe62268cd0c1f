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

import numpy as np
import pandas as pd

__all__ = [
    "label_presence",
    "active_concepts",
    "elastic_net_weights",
    "greedy_linear_search",
    "linear_explanations",
    "linear_explanations_table",
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


def active_concepts(presence, min_top5: float = 0.5, min_std: float = 1e-5) -> np.ndarray:
    """Mask of concepts kept by the peer's filter: mean of top-5 values >= 0.5 and std >= 1e-5."""
    x = np.asarray(presence, dtype=np.float32)
    k = min(5, x.shape[0])
    top = -np.partition(-x, k - 1, axis=0)[:k]
    return (top.mean(axis=0) >= min_top5) & (x.std(axis=0, ddof=1 if x.shape[0] > 1 else 0) >= min_std)


def random_split(n: int, val_fraction: float = 0.2, seed: int = 0):
    """Random train / val row indices (the peer uses fixed split files)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _standardise(x):
    mu = x.mean(axis=0, keepdims=True)
    sd = x.std(axis=0, ddof=1, keepdims=True)
    return (x - mu) / np.where(sd > 0, sd, 1.0)


def elastic_net_weights(presence, activations, lam: float = 0.05, alpha: float = 0.99, n_iter: int = 500) -> np.ndarray:
    """Elastic-net weights W (C x K) on standardised data, all neurons at once (module doc, step 2).

    FISTA on  1/(2n)||A_s - X_s W||^2 + lam (alpha |W|_1 + (1-alpha)/2 |W|^2);  the bias is exactly 0
    because both sides are centred.
    """
    xs = _standardise(np.asarray(presence, dtype=np.float64))
    ys = _standardise(np.asarray(activations, dtype=np.float64))
    n = xs.shape[0]
    gram = xs.T @ xs / n
    xty = xs.T @ ys / n
    step = 1.0 / (np.linalg.eigvalsh(gram)[-1] + lam * (1 - alpha))
    thresh = step * lam * alpha
    w = np.zeros_like(xty)
    z, t = w.copy(), 1.0
    for _ in range(n_iter):
        grad = gram @ z - xty + lam * (1 - alpha) * z
        v = z - step * grad
        w_new = np.sign(v) * np.maximum(np.abs(v) - thresh, 0.0)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        z = w_new + (t - 1) / t_new * (w_new - w)
        w, t = w_new, t_new
    return w


def _correlations(presence, activations) -> np.ndarray:
    xs = _standardise(np.asarray(presence, dtype=np.float64))
    ys = _standardise(np.asarray(activations, dtype=np.float64))
    return xs.T @ ys / (xs.shape[0] - 1)


class _Moments:
    """Train Gram matrices (with intercept) and val covariances: everything the greedy step needs."""

    def __init__(self, x_tr, y_tr, x_val, y_val):
        n_tr = x_tr.shape[0]
        x1 = np.concatenate([np.ones((n_tr, 1)), x_tr], axis=1)
        self.gram = x1.T @ x1  # (C+1, C+1)
        self.xty = x1.T @ y_tr  # (C+1, K)
        xv = x_val - x_val.mean(axis=0)
        yv = y_val - y_val.mean(axis=0)
        self.cxx = xv.T @ xv  # (C, C)
        self.cxy = xv.T @ yv  # (C, K)
        self.vy = (yv * yv).sum(axis=0)  # (K,)

    def fit(self, sets, neurons):
        """Least squares with bias on concept sets (..., s) for neurons (...,): weights, bias, val corr."""
        idx = np.concatenate([np.zeros(sets.shape[:-1] + (1,), dtype=np.int64), sets + 1], axis=-1)
        g = self.gram[idx[..., :, None], idx[..., None, :]]
        h = self.xty[idx, neurons[..., None]]
        scale = np.trace(g, axis1=-2, axis2=-1)[..., None, None] / g.shape[-1]
        g = g + 1e-8 * scale * np.eye(g.shape[-1])
        coef = np.linalg.solve(g, h[..., None])[..., 0]
        w, b = coef[..., 1:], coef[..., 0]
        cxx = self.cxx[sets[..., :, None], sets[..., None, :]]
        cov = np.einsum("...i,...i->...", w, self.cxy[sets, neurons[..., None]])
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
):
    """Greedy sparse linear search (module doc, step 3) for all neurons at once.

    ``ranking``: (K x M) concept indices per neuron, best first (only the first max_length * width are
    ever looked at). Returns ``(concepts (K, max_length) int, -1 padded; weights (K, max_length) nan
    padded; bias (K,); val_corr (K,))`` with concepts in selection order.
    """
    x = np.asarray(presence, dtype=np.float64)
    y = np.asarray(activations, dtype=np.float64)
    mom = _Moments(x[train_idx], y[train_idx], x[val_idx], y[val_idx])
    ranking = np.asarray(ranking, dtype=np.int64)[:, : max_length * width]
    n_neurons, m = ranking.shape
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
        cand = np.take_along_axis(ranking[act], pos, axis=1)
        sets = np.concatenate(
            [np.repeat(sel[act, None, :step], cand.shape[1], axis=1), cand[:, :, None]], axis=2
        )
        w, b, corr = mom.fit(sets, np.repeat(act[:, None], cand.shape[1], axis=1))
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
    return sel, sel_w, bias, best


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
) -> list[dict]:
    """LE for every neuron: structured linear explanations ``{"kind": "linear", "terms", "bias"}``.

    Each dict also carries ``"val_correlation"`` (popped by :func:`linear_explanations_table`).
    ``train_idx``/``val_idx`` default to a random 80/20 split of all rows.
    """
    x = np.asarray(presence, dtype=np.float32)
    y = np.asarray(activations, dtype=np.float32)
    names = np.asarray(concepts, dtype=object)
    if x.shape[1] != len(names):
        raise ValueError(f"{len(names)} concept names for {x.shape[1]} presence columns")
    if filter_concepts:
        keep = active_concepts(x, DEFAULTS["min_top5"], DEFAULTS["min_std"])
        x, names = x[:, keep], names[keep]
    if x.shape[1] == 0:
        raise ValueError("no concept passes the activity filter")
    if train_idx is None or val_idx is None:
        train_idx, val_idx = random_split(x.shape[0], seed=seed)
    w_glm = elastic_net_weights(x[train_idx], y[train_idx], glm_lambda, glm_alpha, glm_iters)
    corr = _correlations(x[train_idx], y[train_idx])
    ranking = np.lexsort((-np.nan_to_num(corr), -w_glm), axis=0).T  # (K, C): weight desc, then corr desc
    sel, sel_w, bias, val_corr = greedy_linear_search(
        x, y, ranking, train_idx, val_idx, max_length=max_length, tolerance=tolerance, width=width
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
    from neuronaudit.explainers.importers import explanation_table

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
    from neuronaudit.explainers.importers import explanation_table

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
