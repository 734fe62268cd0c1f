"""The cheap in-domain concept model: per-concept probes on a non-target model's features.

Where the dataset has labelled concepts (the training split of the default Fashion-MNIST study), a
probe trained on them is the cheapest good estimator of concept presence on the other images. The
features come from a model other than the targets (default EfficientNet-Lite2's penultimate layer,
timm ``forward_head(forward_features(x), pre_logits=True)``: global-pooled, 1,280 dimensions),
standardised with the training mean and standard deviation, h = (phi(x) - mu) / sigma.

**Linear head** (default): one logistic regression per concept, all concepts fitted at once as one
multi-output model (W: D x C, b: C) by L-BFGS on

    L(W, b) = sum_c [ 1/2 mean_{i: y_ic=1} BCE(z_ic, 1) + 1/2 mean_{i: y_ic=0} BCE(z_ic, 0) ]
              + (l2 / 2) ||W||^2,      z_ic = h_i . W_c + b_c

i.e. class-balanced weights n / (2 n_pos) and n / (2 n_neg) (rare concepts still get a direction),
unlabelled entries (NaN) skipped. Balancing trains each probe as if the prior were 1/2, so the logit is
corrected back to the training prior pi_c (King & Zeng 2001, "Logistic regression in rare events
data"; Elkan 2001):

    raw_{x,c} = z_{x,c} + log(pi_c / (1 - pi_c)),      [c]_x = sigmoid(raw_{x,c}).

**MLP head** (``head="mlp"``): one shared hidden layer (ReLU, ``hidden`` units) and C outputs, same loss
and correction, trained full-batch with Adam (weight decay ``l2``).

The probe only knows the concepts it was trained on; asking for any other raises a KeyError listing
them. ``save``/``load`` use one ``.npz`` file (arrays + a JSON header), no pickle.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuronaudit.activations.models import load_model
from neuronaudit.concepts.base import ConceptModel, _as_concepts
from neuronaudit.io import atomic_path

DEFAULT_FEATURES = {"source": "efficientnet_lite", "variant": 2}
HEADS = ("linear", "mlp")
LOG_NAMES = 20  # how many degenerate concept names the warning lists


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


class ProbeConceptModel(ConceptModel):
    backend = "probe"
    has_text_encoder = False

    def __init__(
        self,
        features: dict[str, Any] | None = None,
        input_size: int | None = None,
        head: str = "linear",
        l2: float = 0.1,
        hidden: int = 256,
        max_iter: int = 300,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"probe head {head!r}: use one of {list(HEADS)}")
        self.features = dict(features or DEFAULT_FEATURES)
        if input_size is not None:
            self.features["input_size"] = int(input_size)
        self.head, self.l2, self.hidden, self.max_iter, self.seed = (
            head,
            float(l2),
            int(hidden),
            int(max_iter),
            seed,
        )
        self.name = f"{self.features.get('source')}:{self.features.get('variant', self.features.get('arch', ''))}/{head}"
        self.calibration = None
        self.concepts: list[str] = []
        self.degenerate: dict[str, list[str]] = {}  # reason -> concepts fitted without a probe
        self.params: dict[str, np.ndarray] = {}
        self._loaded = None
        self.device = device

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ProbeConceptModel:
        """``{"path": fitted.npz}`` loads a fitted probe; otherwise an unfitted one is configured."""
        if spec.get("path"):
            model = cls.load(spec["path"])
            model.device = spec.get("device", "cpu")
            return model
        features = spec.get("features")
        if features is None and "variant" in spec:  # shorthand: EfficientNet-Lite<variant> features
            features = {"source": "efficientnet_lite", "variant": int(spec["variant"])}
        return cls(
            features=features,
            input_size=spec.get("input_size"),
            head=spec.get("head", "linear"),
            l2=spec.get("l2", 0.1),
            hidden=spec.get("hidden", 256),
            max_iter=spec.get("max_iter", 300),
            seed=spec.get("seed", 0),
            device=spec.get("device", "cpu"),
        )

    # -- image features -----------------------------------------------------------------------
    @property
    def extractor(self):
        """The feature model (loaded on first use, so a saved probe scores stored features without it)."""
        if self._loaded is None:
            loaded = load_model(self.features)
            if not hasattr(loaded.model, "forward_head") or not hasattr(loaded.model, "forward_features"):
                raise ValueError(
                    f"probe features {self.features}: the model has no timm forward_features/forward_head; "
                    "use source 'efficientnet_lite' or 'timm'"
                )
            self._loaded = loaded
            self._loaded.model.to(self.device)
        return self._loaded

    @property
    def image_transform(self):
        return self.extractor.transform

    @property
    def embedding_dim(self) -> int:
        return int(self.extractor.model.num_features)

    def to(self, device: str) -> ProbeConceptModel:
        if device != self.device and self._loaded is not None:
            self._loaded.model.to(device)
        self.device = device
        return self

    def _embed_batch(self, x):
        model = self.extractor.model
        return model.forward_head(model.forward_features(x), pre_logits=True)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, features: np.ndarray, labels: np.ndarray, concepts: Sequence[str]) -> ProbeConceptModel:
        """Train the probes on (N, D) features and (N, C) labels in {0, 1} (NaN = unlabelled)."""
        concepts = _as_concepts(concepts)
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if x.ndim != 2 or y.shape != (len(x), len(concepts)):
            raise ValueError(
                f"probe.fit: features {x.shape}, labels {y.shape} and {len(concepts)} concepts disagree; "
                "expected (N, D), (N, C) and C names"
            )
        rows = np.isfinite(x).all(axis=1)  # images that failed to decode have NaN features
        x, y = x[rows], y[rows]
        mask = np.isfinite(y)
        pos = ((y == 1) & mask).sum(0)
        neg = ((y == 0) & mask).sum(0)
        degenerate = (pos == 0) | (neg == 0)
        names = np.asarray(concepts, dtype=object)
        self.degenerate = {"no positive training example": [str(c) for c in names[pos == 0]],
                           "no negative training example": [str(c) for c in names[(neg == 0) & (pos > 0)]]}
        if degenerate.any():
            shown = [str(c) for c in names[degenerate][:LOG_NAMES]]
            more = f" (+{int(degenerate.sum()) - len(shown)} more)" if degenerate.sum() > len(shown) else ""
            msg = (f"probe.fit: {int(degenerate.sum())} of {len(concepts)} concepts have no positive "
                   f"({int((pos == 0).sum())}) or no negative ({int(((neg == 0) & (pos > 0)).sum())}) training "
                   f"example, e.g. {shown}{more}; they get a constant probability (the smoothed training rate "
                   "(n_pos + 0.5) / (n + 1)) and no probe (listed in the probe's info()['degenerate'])")
            warnings.warn(msg, stacklevel=2)  # the job log captures warnings (logs.setup_job_log)
        mu, sd = x.mean(0), x.std(0)
        sd = np.where(sd > 1e-8, sd, 1.0)
        h = torch.from_numpy((x - mu) / sd).float()
        yt = torch.from_numpy(np.nan_to_num(y)).float()
        # class-balanced weights, 1/2 of each concept's loss on positives, 1/2 on negatives; 0 if unlabelled
        w = np.where(y == 1, 0.5 / np.maximum(pos, 1), 0.5 / np.maximum(neg, 1)) * mask * ~degenerate
        wt = torch.from_numpy(w).float()
        torch.manual_seed(self.seed)
        if self.head == "linear":
            params = self._fit_linear(h, yt, wt)
        else:
            params = self._fit_mlp(h, yt, wt)
        prior = (pos + 0.5) / (pos + neg + 1.0)  # smoothed: finite logits for degenerate concepts
        params["W"][:, degenerate] = 0.0
        params["b"][degenerate] = 0.0
        self.params = {
            "mean": mu.astype(np.float32),
            "std": sd.astype(np.float32),
            "prior_logit": np.log(prior / (1 - prior)).astype(np.float32),
            **params,
        }
        self.concepts = list(concepts)
        return self

    def _fit_linear(self, h, y, w) -> dict[str, np.ndarray]:
        d, c = h.shape[1], y.shape[1]
        W = torch.zeros(d, c, requires_grad=True)
        b = torch.zeros(c, requires_grad=True)
        opt = torch.optim.LBFGS(
            [W, b],
            lr=1,
            max_iter=self.max_iter,
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            loss = (F.binary_cross_entropy_with_logits(h @ W + b, y, reduction="none") * w).sum()
            loss = loss + 0.5 * self.l2 * (W * W).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return {"W": W.detach().numpy(), "b": b.detach().numpy()}

    def _fit_mlp(self, h, y, w) -> dict[str, np.ndarray]:
        net = nn.Sequential(nn.Linear(h.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, y.shape[1]))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=self.l2)
        for _ in range(self.max_iter):
            opt.zero_grad()
            loss = (F.binary_cross_entropy_with_logits(net(h), y, reduction="none") * w).sum()
            loss.backward()
            opt.step()
        return {
            "W1": net[0].weight.detach().numpy().T.copy(),
            "b1": net[0].bias.detach().numpy().copy(),
            "W": net[2].weight.detach().numpy().T.copy(),
            "b": net[2].bias.detach().numpy().copy(),
        }

    # -- scoring ------------------------------------------------------------------------------
    def _columns(self, concepts: Sequence[str]) -> np.ndarray:
        if not self.concepts:
            raise ValueError(
                "this probe is not fitted: call .fit(features, labels, concepts) or load a saved one"
            )
        index = {c: i for i, c in enumerate(self.concepts)}
        unknown = [c for c in concepts if c not in index]
        if unknown:
            raise KeyError(
                f"the probe was trained on {len(self.concepts)} concepts {self.concepts[:50]} and cannot score "
                f"{unknown[:20]}: probes only know their training split's labelled concepts; use an "
                "open-vocabulary backend (open_clip or conse) for others"
            )
        return np.array([index[c] for c in concepts], dtype=np.int64)

    def scores(self, img_emb: np.ndarray, concepts: Sequence[str]) -> np.ndarray:
        """Prior-corrected logits raw_{x,c} (N, C) of the requested (trained) concepts."""
        cols = self._columns(_as_concepts(concepts))
        p = self.params
        x = np.asarray(img_emb, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != p["mean"].shape[0]:
            raise ValueError(
                f"probe expects ({p['mean'].shape[0]})-dimensional features from {self.features}, got {x.shape}"
            )
        h = (x - p["mean"]) / p["std"]
        if "W1" in p:
            h = np.maximum(h @ p["W1"] + p["b1"], 0.0)
        return (h @ p["W"][:, cols] + p["b"][cols] + p["prior_logit"][cols]).astype(np.float32)

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """sigmoid(raw): the probe's logits are already calibrated (prior correction, module docstring)."""
        return _sigmoid(np.asarray(raw, dtype=np.float64))

    def encode_text(self, concepts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError(
            "the probe concept model has no text encoder: it scores only its trained concepts "
            f"{self.concepts[:50]} via .presence(features, concepts)"
        )

    def fit_calibration(self, img_emb, concepts, labels, **grid):
        raise NotImplementedError(
            "probe probabilities are calibrated by construction (class-balanced training + prior correction); "
            "the (a, b) grid search applies to cosine similarities of open_clip / conse models"
        )

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted probe to one ``.npz`` (arrays plus a JSON header; no pickle)."""
        if not self.concepts:
            raise ValueError("cannot save an unfitted probe: call .fit first")
        header = {
            "features": self.features,
            "head": self.head,
            "l2": self.l2,
            "hidden": self.hidden,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "concepts": self.concepts,
            "degenerate": self.degenerate,
        }
        with atomic_path(path) as tmp:  # unique temporary name, one rename (concurrent runs)
            np.savez(tmp, header=np.array(json.dumps(header)), **self.params)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProbeConceptModel:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"probe file {path} does not exist: fit a probe and .save() it first")
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            params = {k: z[k] for k in z.files if k != "header"}
        model = cls(
            features=header["features"],
            head=header["head"],
            l2=header["l2"],
            hidden=header["hidden"],
            max_iter=header["max_iter"],
            seed=header["seed"],
        )
        model.concepts, model.params = list(header["concepts"]), params
        model.degenerate = header.get("degenerate", {})
        return model

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "features": self.features,
            "head": self.head,
            "l2": self.l2,
            "concepts": self.concepts,
            "degenerate": self.degenerate,
        }
