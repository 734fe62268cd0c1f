"""The built-in explanation methods, one registered :class:`~neuronaudit.explainers.registry.Explainer`
class each: thin adapters from the explain stage's inputs to the library functions of
``clip_dissect``, ``linear``, ``invert``, ``baselines`` and ``importers``.

Importing this module registers them; :mod:`neuronaudit.explainers.stage` does. A new method is one
more class here (or in a module of its own that this module imports), see docs/explainers.md.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.explainers.baselines import top_activating_class, top_activating_class_table
from neuronaudit.explainers.clip_dissect import DEFAULTS as CLIP_DISSECT_DEFAULTS
from neuronaudit.explainers.clip_dissect import clip_dissect_table
from neuronaudit.explainers.importers import read_explanations
from neuronaudit.explainers.invert import invert, invert_table
from neuronaudit.explainers.line import settings as line_settings
from neuronaudit.explainers.linear import DEFAULTS as LE_DEFAULTS
from neuronaudit.explainers.linear import (
    active_concepts,
    best_single_concept_table,
    linear_explanations,
    linear_explanations_table,
    prepare_presence,
)
from neuronaudit.explainers.registry import Explainer, ExplainInputs, register_explainer

__all__ = ["ClipDissect", "LinearExplanations", "BestSingleConcept", "Invert", "TopClass", "Import", "Line"]

log = logging.getLogger(__name__)


def _defaults(func: Callable, names: tuple[str, ...]) -> dict[str, Any]:
    """The defaults of keyword parameters ``names`` of a library function (kept in one place: there)."""
    sig = inspect.signature(func).parameters
    return {n: sig[n].default for n in names}


@register_explainer
class ClipDissect(Explainer):
    """SoftWPMI over a concept model's raw image-text similarities (``clip_dissect.py``)."""

    name = "clip_dissect"
    inputs = frozenset({"activations", "similarity"})
    params = dict(CLIP_DISSECT_DEFAULTS)

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        return clip_dissect_table(inputs.presence, inputs.activations, list(inputs.concepts), method=inputs.method,
                                  **params)


@register_explainer
class LinearExplanations(Explainer):
    """Linear Explanations (LE) on labels or a concept model's probabilities (``linear.py``), with
    LE's concept activity filter: what it leaves out is counted; when it would leave out every
    concept, LE runs without it and says so.

    Within :meth:`shared_presence` (the explain stage's tiles of one layer and method) the work that
    reads the presence only -- the filter, ``linear.prepare_presence`` -- is done once per presence array
    and reused by every call; the rows are bit-identical to separate calls."""

    name = "le"
    inputs = frozenset({"activations", "labels", "concept_model"})
    per_neuron = True  # the preselection and the greedy search are separate problems per neuron
    params = _defaults(linear_explanations, ("max_length", "tolerance", "width", "glm_lambda", "glm_alpha",
                                             "glm_iters", "filter_concepts", "seed"))
    _shared: dict | None = None  # presence setups by (id(presence), filter_concepts, seed), in shared_presence

    @contextmanager
    def shared_presence(self) -> Iterator[None]:
        """Calls inside this block on the same presence array (the same object) reuse its setup; the
        setups (one standardised copy of the presence's train rows each) are dropped on exit."""
        self._shared = {}
        try:
            yield
        finally:
            self._shared = None

    def _setup(self, name: str, presence: np.ndarray, concepts, params: Mapping[str, Any]) -> dict[str, Any]:
        filt, seed = bool(params.get("filter_concepts", True)), int(params.get("seed", 0))
        key = (id(presence), filt, seed)
        if self._shared is not None and key in self._shared and self._shared[key]["source"] is presence:
            return self._shared[key]
        names = np.asarray(concepts, dtype=object)
        setup: dict[str, Any] = {"source": presence, "fallback": False, "presence": presence, "names": names,
                                 "weak": None, "flat": None}
        if filt:
            weak = ~active_concepts(presence, LE_DEFAULTS["min_top5"], 0.0)  # top-5 mean < 0.5
            flat = ~active_concepts(presence, 0.0, LE_DEFAULTS["min_std"])  # (nearly) constant
            if flat.all():
                raise ValueError(f"{name}: all {len(names)} concepts are constant on the probing images; "
                                 "LE has nothing to explain with (check the presence / labels of this split)")
            setup.update(weak=weak, flat=flat)
            if (weak | flat).all():
                setup.update(fallback=True, presence=presence[:, ~flat], names=names[~flat])
        setup["prepared"] = prepare_presence(setup["presence"], filter_concepts=filt and not setup["fallback"],
                                             seed=seed)
        if self._shared is not None:
            self._shared[key] = setup
        return setup

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        acts, name, excl = inputs.activations, inputs.method, inputs.exclusions
        setup = self._setup(name, inputs.presence, inputs.concepts, params)
        names, weak, flat = setup["names"], setup["weak"], setup["flat"]
        if setup["fallback"]:
            # a weak concept model (or one image per class) may give no concept a top-5 mean >= 0.5;
            # explain anyway, and say so
            log.warning("%s: no concept passes LE's activity filter (%d of %d have a top-5 mean < %g, %d are "
                        "constant); running without it", name, int(weak.sum()), len(weak),
                        LE_DEFAULTS["min_top5"], int(flat.sum()))
            if excl is not None:
                excl.add("concept", np.asarray(inputs.concepts, dtype=object)[flat], f"{name}: constant on the "
                         "probing images (activity filter off: no concept passes it)")
            table = linear_explanations_table(setup["presence"], acts, list(names), method=name,
                                              prepared=setup["prepared"], **{**params, "filter_concepts": False})
            table["params"] = table["params"].map(
                lambda p: json.dumps({**json.loads(p), "filter_concepts": False}, sort_keys=True))
            return table
        if excl is not None and flat is not None:
            excl.add("concept", names[flat], f"{name} activity filter: std < {LE_DEFAULTS['min_std']:g}")
            excl.add("concept", names[weak & ~flat],
                     f"{name} activity filter: mean of the top-5 values < {LE_DEFAULTS['min_top5']:g}")
        return linear_explanations_table(setup["presence"], acts, list(names), method=name,
                                         prepared=setup["prepared"], **params)


@register_explainer
class BestSingleConcept(Explainer):
    """The concept best correlated with the neuron (LE's l = 1 variant)."""

    name = "le_l1"
    inputs = frozenset({"activations", "labels", "concept_model"})
    per_neuron = True

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        return best_single_concept_table(inputs.presence, inputs.activations, list(inputs.concepts),
                                         method=inputs.method)


@register_explainer
class Invert(Explainer):
    """INVERT formulas over the binary labels (``invert.py``)."""

    name = "invert"
    inputs = frozenset({"activations", "labels"})
    per_neuron = True
    params = _defaults(invert, ("length", "beam_size", "min_fraction", "max_fraction"))

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        return invert_table(inputs.presence, inputs.activations, list(inputs.concepts), method=inputs.method,
                            **params)


@register_explainer
class TopClass(Explainer):
    """The class most frequent among the neuron's top-activating images (baseline, ``baselines.py``)."""

    name = "top_class"
    inputs = frozenset({"activations", "classes"})
    per_neuron = True
    params = _defaults(top_activating_class, ("top_k", "mode"))

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        return top_activating_class_table(inputs.class_index, inputs.activations, list(inputs.class_names),
                                          method=inputs.method, **params)


@register_explainer
class Import(Explainer):
    """A CSV made elsewhere (``path``, ``format``), normalised by ``importers.read_explanations``."""

    name = "import"
    inputs = frozenset({"imported"})

    def check(self, where: str, entry: Mapping[str, Any]) -> None:
        if not entry.get("path") or not entry.get("format"):
            raise ValueError(f"{where}: an import needs 'path' (may contain {{model}} and {{layer}}) and 'format'")

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        entry, path = inputs.entry, inputs.imported
        # one file for several layers: the reader keeps this layer's rows (by layer key or module path),
        # checks duplicates per layer, and counts and logs the other layers' rows
        layers = None if "{layer}" in entry["path"] else [x for x in (inputs.layer, inputs.module) if x]
        table = read_explanations(path, entry["format"], method=inputs.method, layers=layers)
        n = inputs.n_layer_neurons
        bad = table["neuron"][(table["neuron"] < 0) | (table["neuron"] >= n)]
        if len(bad):
            raise ValueError(f"{path}: unit {int(bad.iloc[0])} is outside the layer's {n} neurons")
        return table


@register_explainer
class Line(Explainer):
    """LINE (``explainers/line/``, docs/line.md): its layer jobs are the ``line_shard`` / ``line_gather``
    rules (sharded, resumable), not the explain rule; this entry names the method and checks its config."""

    name = line_settings.METHOD_TYPE
    inputs = frozenset({"activations", "classes"})
    params = dict(line_settings.PARAMS)

    def check(self, where: str, entry: Mapping[str, Any]) -> None:
        line_settings.check_entry(where, where.rsplit(".", 1)[-1], entry)
        if entry.get("shards") not in (None, 1):
            raise ValueError(f"{where}.shards: LINE's jobs are sharded by line.shards (--set-scatter line=N), "
                             "not per method entry; remove shards here")

    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        raise ValueError(f"{inputs.method}: LINE needs held-out images and a concept model besides the probing "
                         "split; it runs in the line_shard / line_gather rules (workflow/rules/line.smk), or from "
                         "the library: neuronaudit.explainers.line.stage (docs/line.md)")
