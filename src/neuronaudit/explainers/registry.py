"""Explanation methods behind one small protocol, registered in one place.

An explainer is a class with a ``name`` (the config's ``explain.methods.<x>.method`` value), the
``inputs`` it needs, its ``params`` (keyword parameters and their defaults) and one method,
:meth:`Explainer.explain`, that turns those inputs into the normalised explanation table
(:func:`neuronaudit.explanations.explanation_table`). ``@register_explainer`` adds the class to
:data:`EXPLAINERS`; the explain stage (:func:`neuronaudit.explainers.stage.explain_layer`) builds the
inputs a method asks for, looks the method up with :func:`get_explainer` and calls it. The built-in
methods are in :mod:`neuronaudit.explainers.methods`; docs/explainers.md "Adding a method" shows a
complete example.

Inputs (:class:`ExplainInputs`; the stage builds only what ``inputs`` names, once per layer):

==================  ============================================================================
``activations``     the layer's activations on the probing split (images x neurons, float32)
``labels``          binary ground-truth presence (images x concepts) when ``presence: label``
``concept_model``   a concept model's calibrated probabilities (images x concepts) otherwise
``similarity``      a concept model's raw image-text similarity (images x concepts; CLIP-Dissect)
``classes``         the class index of every image and the class names
``imported``        a file made elsewhere (``path``, ``format`` of the method entry)
==================  ============================================================================

``labels``, ``concept_model`` and ``similarity`` all arrive as ``inputs.presence`` / ``inputs.concepts``:
which one the config's ``presence:`` key selects must be one the explainer lists.

``per_neuron = True`` declares that a method explains every neuron on its own: the stage may then run it
on every n-th neuron of a layer in n jobs (``explain.shards``) and concatenate the rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from neuronaudit.exclusions import Exclusions

__all__ = [
    "INPUTS",
    "LABEL",
    "EXPLAINERS",
    "Explainer",
    "ExplainInputs",
    "register_explainer",
    "get_explainer",
    "explainer_names",
    "check_params",
]

LABEL = "label"  # presence source: the dataset's ground-truth labels
INPUTS = frozenset({"activations", "labels", "concept_model", "similarity", "classes", "imported"})


@dataclass
class ExplainInputs:
    """What an explainer gets: only the fields its ``inputs`` name are filled in.

    ``presence`` (images x concepts, float32) holds binary labels, calibrated probabilities or raw
    similarities over ``concepts``; ``class_index`` / ``class_names`` the one class of every image;
    ``imported`` the path of a file made elsewhere. Neuron ids of the returned table are column
    positions of ``activations`` (the stage maps them back to the layer's numbering); for an
    imported file they are the layer's own (``n_layer_neurons`` of them).
    """

    method: str  # the method's name in the config (the ``method`` column of the table)
    entry: Mapping[str, Any]  # the config entry (method, presence, vocabulary, params, path, format ...)
    layer: str = ""
    module: str | None = None  # the layer's module path, for files that name layers by it
    activations: np.ndarray | None = None
    presence: np.ndarray | None = None
    concepts: list[str] | None = None
    class_index: np.ndarray | None = None
    class_names: list[str] | None = None
    imported: Any = None
    n_layer_neurons: int | None = None
    exclusions: Exclusions | None = field(default=None, repr=False)  # what a method's own filter leaves out


class Explainer(ABC):
    """One explanation method. Subclass, set the class attributes, implement :meth:`explain` and
    decorate with :func:`register_explainer`."""

    #: the config's ``method:`` value
    name: ClassVar[str]
    #: inputs the method reads (a subset of :data:`INPUTS`)
    inputs: ClassVar[frozenset[str]]
    #: keyword parameters the config's ``params:`` may set, with their defaults
    params: ClassVar[Mapping[str, Any]] = {}
    #: each neuron's explanation depends on that neuron's activations only (not on the other neurons
    #: of the call), so the explain stage may split a layer's neurons over shard jobs (``explain.shards``,
    #: ``explain_shard`` / ``explain_gather``; docs/explain_stage.md "Sharding") and gather them back.
    #: False for methods that compare a neuron with the others (CLIP-Dissect's SoftWPMI).
    per_neuron: ClassVar[bool] = False

    @contextmanager
    def shared_presence(self) -> Iterator[None]:
        """A block of calls on the same inputs (the explain stage's tiles of one layer): a method whose
        setup reads only the presence (LE) overrides this to do that setup once for the block."""
        yield

    @abstractmethod
    def explain(self, inputs: ExplainInputs, **params: Any) -> pd.DataFrame:
        """The normalised explanation table (``explanations.TABLE_COLUMNS``) of every neuron of
        ``inputs.activations`` (or of the imported file); ``params`` are the config's ``params:``."""

    # -- derived from ``inputs``: what the stage builds and what the config may say ------------------
    @classmethod
    def presence_sources(cls) -> tuple[str, ...]:
        """Which ``presence:`` the method accepts: 'label', 'concept_model', both or none."""
        out = []
        if cls.inputs & {"labels", "classes"}:
            out.append(LABEL)
        if cls.inputs & {"concept_model", "similarity"}:
            out.append("concept_model")
        return tuple(out)

    @classmethod
    def presence_value(cls) -> str:
        """The concept-model value it reads: raw ``score`` (similarity) or ``probability``."""
        return "score" if "similarity" in cls.inputs else "probability"

    def check(self, where: str, entry: Mapping[str, Any]) -> None:
        """Extra checks of a config entry (raise ``ValueError`` naming ``where``); none by default."""
        return None


#: name -> explainer class, in registration order
EXPLAINERS: dict[str, type[Explainer]] = {}


def register_explainer(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: add an :class:`Explainer` subclass under its ``name`` (a later class with the
    same name replaces the earlier one)."""
    if not (isinstance(cls, type) and issubclass(cls, Explainer)):
        raise TypeError(f"{cls!r} is not an Explainer subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__}: set the class attribute name (the config's method: value)")
    unknown = set(cls.inputs) - INPUTS
    if unknown or not cls.inputs:
        raise TypeError(f"{cls.__name__}.inputs = {sorted(cls.inputs)}: use a non-empty subset of {sorted(INPUTS)}")
    if "imported" in cls.inputs and len(cls.inputs) > 1:
        raise TypeError(f"{cls.__name__}: an import reads its file only; inputs must be {{'imported'}}")
    EXPLAINERS[name] = cls
    return cls


def explainer_names() -> list[str]:
    """The registered method names (the values the config's ``method:`` accepts)."""
    return list(EXPLAINERS)


def get_explainer(name: str) -> Explainer:
    """An instance of the explainer registered as ``name``; unknown names list the registered ones."""
    cls = EXPLAINERS.get(name)
    if cls is None:
        raise ValueError(f"unknown explanation method {name!r}; registered: {explainer_names()}")
    return cls()


def check_params(cls: type[Explainer], params: Mapping[str, Any] | None, where: str) -> None:
    """Fail on a ``params:`` key the method does not understand."""
    unknown = sorted(set(params or {}) - set(cls.params))
    if unknown:
        raise ValueError(f"{where}.params: {unknown} not understood by {cls.name}; allowed: {list(cls.params)}")

