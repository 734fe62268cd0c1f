"""A faithful re-implementation of the peer Linear Explanations (Trustworthy-ML-Lab/Linear-Explanations).

Written from the paper (Oikarinen & Weng, "Linear Explanations for Individual Neurons", ICML 2024) and
the semantics of the peer's ``explain_neurons.py``, ``linear_explanation.py`` and its copy of
``glm_saga``; no code copied. Published defaults throughout:

1. concept filter: mean of each concept's 5 largest presence values >= 0.5 and std >= 1e-5;
2. preselection per batch of 128 neurons (``--glm_neuron_batch``): concepts standardised with the
   train rows' mean / std, activations with all rows' mean / std (as the peer); an elastic net
   ``1/(2n) sum ||y - W x - b||^2 + lam (alpha |W|_1 + (1 - alpha)/2 |W|^2)`` fitted by SAGA (glm_saga,
   family gaussian, one lambda: ``lam = glm_lambda / alpha`` = 0.05 / 0.99 as glm_saga derives it from
   ``max_reg``), step 5e-4, minibatches of 512 shuffled train rows, at most 500 epochs, stopping when the
   epoch objective has not improved by ``tol = 1e-5 * n_neurons`` for 5 epochs (``lookbehind``); the
   ranking of a neuron's concepts is its weights sorted in decreasing order;
3. greedy search per neuron (a Python loop, as the peer): at each step the first ``width`` (10) ranked
   concepts neither selected nor rejected are tried; each try fits ``torch.nn.Linear`` (default init)
   on the raw train presence of selected + candidate with Adam (lr 0.3, betas 0.9 / 0.999) for 100
   full-batch epochs on the MSE, and scores it by the Pearson correlation of its val prediction; once
   a concept is selected, candidates gaining less than ``tolerance`` (0.02) are rejected for good; the
   best candidate above the current correlation joins; at most ``max_length`` (10) concepts.

One departure, in the peer's favour: the peer returns the concept list of the *last candidate tried*
(a stale variable) with the weights of the best set; here the selected set is returned with its
weights, i.e. the algorithm as the paper describes it. The peer also rewrites its result CSV after
every neuron; that I/O is not reproduced. SAGA's per-example gradient table is kept as the peer does,
but the minibatch gradient is computed as one matrix product instead of the peer's broadcasted
(batch x neurons x concepts) tensor (same numbers, far less memory: again in the peer's favour).
"""

from __future__ import annotations

import numpy as np
import torch

PEER_DEFAULTS = {"glm_lambda": 0.05, "alpha": 0.99, "step_size": 5e-4, "saga_batch_size": 512, "n_epochs": 500,
                 "lookbehind": 5, "glm_neuron_batch": 128, "max_length": 10, "tolerance": 0.02, "width": 10}


def concept_filter(x: torch.Tensor) -> torch.Tensor:
    top5 = torch.topk(x, k=min(5, x.shape[0]), dim=0).values.mean(dim=0)
    return (top5 >= 0.5) & (torch.std(x, dim=0) >= 1e-5)


def glm_saga_gaussian(x, y, lam, alpha=0.99, lr=5e-4, batch=512, n_epochs=500, lookbehind=5, tol=None, gen=None):
    """SAGA for the gaussian elastic net (glm_saga semantics, one lambda). x (n, C), y (n, K) standardised.
    Returns W (K, C), b (K,), epochs run."""
    n, c = x.shape
    k = y.shape[1]
    tol = 1e-5 * k if tol is None else tol
    w = torch.zeros(k, c)
    b = torch.zeros(k)
    table = torch.zeros(n, k)  # last residual seen for every example
    w_avg = torch.zeros(k, c)
    b_avg = torch.zeros(k)
    best, since = None, 0
    for epoch in range(n_epochs):
        total = 0.0
        for idx in torch.randperm(n, generator=gen).split(batch):
            xb, yb = x[idx], y[idx]
            resid = xb @ w.T + b - yb  # (m, K)
            total += float(0.5 * (resid * resid).sum()) * 1.0  # 0.5 * mse * K * m
            prev = table[idx]
            m = len(idx)
            g_new = resid.T @ xb / m
            g_old = prev.T @ xb / m
            w_step = w - lr * (g_new - g_old + w_avg)
            thr, shrink = lr * lam * alpha, lr * lam * (1 - alpha)
            w_step = (torch.sign(w_step) * torch.clamp(w_step.abs() - thr, min=0)) / (1 + shrink)
            gb_new, gb_old = resid.mean(0), prev.mean(0)
            b = b - lr * (gb_new - gb_old + b_avg)
            table[idx] = resid
            w_avg += (g_new - g_old) * m / n
            b_avg += (gb_new - gb_old) * m / n
            w = w_step
        obj = total / n + lam * alpha * float(w.abs().sum()) + 0.5 * lam * (1 - alpha) * float((w * w).sum())
        if best is None or obj + tol < best:
            best, since = obj, 0
        else:
            since += 1
        if since >= lookbehind:
            return w, b, epoch + 1
    return w, b, n_epochs


def _fit_adam(x_tr, y_tr, x_val, y_val):
    lin = torch.nn.Linear(x_tr.shape[1], 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.MSELoss()
    for _ in range(100):
        loss = loss_fn(lin(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = lin(x_val)[:, 0].numpy()
    corr = np.corrcoef(y_val[:, 0].numpy(), pred)[0, 1]
    return corr, lin


def greedy_search(x_tr, x_val, y_tr, y_val, ranking, max_length=10, tolerance=0.02, width=10):
    """One neuron (peer semantics, module docstring step 3). Returns concept ids, weights, bias, val corr."""
    selected, bad = [], []
    best_corr, best_w, best_b = 0.0, None, None
    while len(selected) < max_length:
        cands = []
        for i in range(len(ranking)):
            if i not in selected and i not in bad:
                cands.append(i)
            if len(cands) >= width:
                break
        cur, cur_c = best_corr, None
        for i in cands:
            cols = ranking[torch.tensor(selected + [i])]
            corr, lin = _fit_adam(x_tr[:, cols], y_tr, x_val[:, cols], y_val)
            if corr - best_corr < tolerance and selected:
                bad.append(i)
            elif corr > cur:
                cur, cur_c = corr, i
                best_b, best_w = float(lin.bias.detach()), lin.weight[0].detach().clone()
        if cur_c is None:
            break
        best_corr = cur
        selected.append(cur_c)
    return ranking[torch.tensor(selected, dtype=torch.long)].numpy() if selected else np.array([], int), \
        None if best_w is None else best_w.numpy(), best_b, best_corr


def peer_preselect(x, y, train_idx, neurons, seed=0):
    """Step 2 for the given neurons (in batches of 128). x: filtered presence (N, C) float32 tensor."""
    gen = torch.Generator().manual_seed(seed)
    lam = PEER_DEFAULTS["glm_lambda"] / max(0.001, PEER_DEFAULTS["alpha"])
    x_tr = x[train_idx]
    mu, sd = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True)
    xs = (x_tr - mu) / sd
    rankings, epochs = [], []
    for s in range(0, len(neurons), PEER_DEFAULTS["glm_neuron_batch"]):
        cols = neurons[s : s + PEER_DEFAULTS["glm_neuron_batch"]]
        yk = y[:, cols]
        ys = (yk[train_idx] - yk.mean(0, keepdim=True)) / yk.std(0, keepdim=True)
        w, _, ep = glm_saga_gaussian(xs, ys, lam, gen=gen)
        rankings.append(torch.sort(w, dim=1, descending=True, stable=True).indices)
        epochs.append(ep)
    return torch.cat(rankings), epochs


def peer_linear_explanations(presence, activations, train_idx, val_idx, neurons=None, seed=0,
                             ranking_neurons=None):
    """LE the peer's way for ``neurons`` (default all). Returns (list of (concept ids in the original
    columns, weights, bias, val corr), SAGA epochs per batch). ``ranking_neurons``: run the preselection
    on these neurons (default: ``neurons``)."""
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(presence, dtype=np.float32))
    y = torch.as_tensor(np.asarray(activations, dtype=np.float32))
    keep = concept_filter(x)
    cols = torch.nonzero(keep)[:, 0]
    x = x[:, keep]
    neurons = list(range(y.shape[1])) if neurons is None else list(neurons)
    tr, va = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    ranking, epochs = peer_preselect(x, y, tr, neurons, seed)
    x_tr, x_val = x[tr], x[va]
    out = []
    for j, k in enumerate(neurons):
        sel, w, b, corr = greedy_search(x_tr, x_val, y[tr, k : k + 1], y[va, k : k + 1], ranking[j])
        out.append((cols[torch.as_tensor(sel, dtype=torch.long)].numpy(), w, b, corr))
    return out, epochs
