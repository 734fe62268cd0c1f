"""Neuron explanations and the activations they predict.

An explanation E of a neuron (SPEC sec. 1) has one of four kinds. Its structured form is a
JSON-serialisable dict:

    {"kind": "simple", "concept": "dog"}
    {"kind": "linear", "terms": [[0.42, "dog"], [0.10, "cat"]], "bias": 0.0}
    {"kind": "compositional", "formula": "(dog OR cat) AND NOT grass"}
    {"kind": "clustered", "clusters": [{"lower": 0.5, "upper": 1.5, "formula": "dog"}, ...]}

The score of an explanation is the correlation between a neuron's activations and the explanation's
predicted activation s(x, E) (SPEC sec. 2; seed 001 eqs. 22-27):

    simple          s = [c_t]                                            (eq. 22)
    linear          s = sum_j w_j [c_tj] (+ bias)                        (eq. 23)
    compositional   AND = a*b, OR = 1-(1-a)(1-b), NOT = 1-a, recursively  (eqs. 24-26)
    clustered       s = sum_j ((l_j + u_j) / 2) s(F_j)                   (eq. 27)

Formulas use the operators AND, OR, NOT (in any case: ``dark and not bright`` is ``dark AND NOT
bright``), parentheses, and precedence NOT > AND > OR; AND and OR associate to the left. A concept
name is a run of other words ("ground beetle", "sea_lion", "t-shirt"), or a double-quoted string
(backslash escapes ``\\"`` and ``\\\\``) for names that contain an operator word, parentheses, quotes
or irregular spacing: ``"salt and pepper" OR "black or white"`` (``formula_to_text`` adds the quotes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import pandas as pd

__all__ = [
    "Concept",
    "And",
    "Or",
    "Not",
    "Node",
    "parse_formula",
    "formula_to_text",
    "formula_concepts",
    "evaluate_formula",
    "Explanation",
    "predicted_activation",
    "predicted_matrix",
    "KINDS",
    "TABLE_COLUMNS",
    "explanation_table",
]

KINDS = ("simple", "linear", "compositional", "clustered")
KEYWORDS = ("AND", "OR", "NOT")


# ----------------------------------------------------------------------------------------------
# Formula syntax tree
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Concept:
    """A leaf: the presence [c_t] of one concept."""

    name: str


@dataclass(frozen=True)
class And:
    """Conjunction; probabilistic logic a*b (seed 001 eq. 24)."""

    a: Node
    b: Node


@dataclass(frozen=True)
class Or:
    """Disjunction; probabilistic logic 1-(1-a)(1-b) (seed 001 eq. 25)."""

    a: Node
    b: Node


@dataclass(frozen=True)
class Not:
    """Negation; probabilistic logic 1-a (seed 001 eq. 26)."""

    a: Node


Node = Union[Concept, And, Or, Not]  # noqa: UP007 (runtime alias used in isinstance-free code)


@dataclass
class _Token:
    kind: str  # "(", ")", "WORD", "QUOTED", "AND", "OR", "NOT"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch == '"':
            start, i, buf = i, i + 1, []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted concept name starting at position {start} in {text!r}")
                ch = text[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise ValueError(f"dangling backslash at position {i} in {text!r}")
                    buf.append(text[i + 1])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    buf.append(ch)
                    i += 1
            tokens.append(_Token("QUOTED", "".join(buf), start))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in '()"':
                i += 1
            word = text[start:i]
            upper = word.upper()
            tokens.append(_Token(upper if upper in KEYWORDS else "WORD", word, start))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def error(self, what: str) -> ValueError:
        tok = self.peek()
        where = f"position {tok.pos} ({tok.text!r})" if tok else f"end of input (position {len(self.text)})"
        return ValueError(f"malformed formula {self.text!r}: {what} at {where}")

    def parse(self) -> Node:
        if not self.tokens:
            raise ValueError(f"malformed formula {self.text!r}: empty formula at position 0")
        node = self.or_expr()
        if self.peek() is not None:
            raise self.error("unexpected token")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.i += 1
            node = Or(node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while (tok := self.peek()) is not None and tok.kind == "AND":
            self.i += 1
            node = And(node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind == "NOT":
            self.i += 1
            return Not(self.not_expr())
        return self.atom()

    def atom(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise self.error("expected a concept, NOT or '('")
        if tok.kind == "(":
            self.i += 1
            node = self.or_expr()
            close = self.peek()
            if close is None or close.kind != ")":
                raise self.error(f"expected ')' to close '(' at position {tok.pos}")
            self.i += 1
            return node
        if tok.kind == "QUOTED":
            self.i += 1
            return Concept(tok.text)
        if tok.kind == "WORD":
            words = []
            while (t := self.peek()) is not None and t.kind == "WORD":
                words.append(t.text)
                self.i += 1
            return Concept(" ".join(words))
        raise self.error("expected a concept, NOT or '('")


def parse_formula(text: str) -> Node:
    """Parse a compositional formula into a syntax tree of Concept / And / Or / Not.

    Precedence NOT > AND > OR, left associative; see the module docstring for the grammar.
    Raises ValueError naming the position of the first offending token.
    """
    if not isinstance(text, str):
        raise TypeError(f"formula must be a string, got {type(text).__name__}")
    return _parse_cached(text)


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str) -> Node:
    # trees are immutable (frozen dataclasses), so a formula parsed again (validation, to_text, concepts)
    # can share the tree
    return _Parser(text).parse()


def _needs_quotes(name: str) -> bool:
    if not name or name != " ".join(name.split()):
        return True
    if any(ch in name for ch in '()"\\'):
        return True
    return any(w.upper() in KEYWORDS for w in name.split())


def _name_to_text(name: str) -> str:
    if _needs_quotes(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


_PRECEDENCE = {Or: 1, And: 2, Not: 3, Concept: 4}


def formula_to_text(node: Node) -> str:
    """Write a syntax tree back as text with the fewest parentheses; parse_formula round-trips it."""
    if isinstance(node, Concept):
        return _name_to_text(node.name)
    if isinstance(node, Not):
        inner = formula_to_text(node.a)
        return "NOT " + (inner if _PRECEDENCE[type(node.a)] >= 3 else f"({inner})")
    if isinstance(node, And | Or):
        prec = _PRECEDENCE[type(node)]
        left = formula_to_text(node.a)
        right = formula_to_text(node.b)
        if _PRECEDENCE[type(node.a)] < prec:
            left = f"({left})"
        if _PRECEDENCE[type(node.b)] <= prec:  # left associative: equal precedence on the right needs ()
            right = f"({right})"
        return f"{left} {'AND' if isinstance(node, And) else 'OR'} {right}"
    raise TypeError(f"not a formula node: {node!r}")


def formula_concepts(node: Node) -> list[str]:
    """Concept names in order of first appearance (left to right)."""
    out: list[str] = []

    def walk(n: Node) -> None:
        if isinstance(n, Concept):
            if n.name not in out:
                out.append(n.name)
        elif isinstance(n, Not):
            walk(n.a)
        else:
            walk(n.a)
            walk(n.b)

    walk(node)
    return out


def evaluate_formula(node: Node, lookup: Callable[[str], np.ndarray]) -> np.ndarray:
    """Probabilistic logic (seed 001 eqs. 24-26): AND = a*b, OR = 1-(1-a)(1-b), NOT = 1-a."""
    if isinstance(node, Concept):
        return np.asarray(lookup(node.name), dtype=np.float64)
    if isinstance(node, Not):
        return 1.0 - evaluate_formula(node.a, lookup)
    a = evaluate_formula(node.a, lookup)
    b = evaluate_formula(node.b, lookup)
    if isinstance(node, And):
        return a * b
    return 1.0 - (1.0 - a) * (1.0 - b)


# ----------------------------------------------------------------------------------------------
# Explanation objects
# ----------------------------------------------------------------------------------------------
def _check_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{where} must be a number, got {value!r}")
    return float(value)


@dataclass
class Explanation:
    """One explanation: ``kind`` in KINDS and ``payload`` (the structured dict without "kind").

    Build one with ``Explanation.from_dict({"kind": "simple", "concept": "dog"})``.
    """

    kind: str
    payload: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.payload = _validate(self.kind, dict(self.payload))

    # --- construction / serialisation ---------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping | str) -> Explanation:
        """From the structured dict (or its JSON text)."""
        if isinstance(d, str):
            d = json.loads(d)
        if not isinstance(d, Mapping) or "kind" not in d:
            raise ValueError(f"an explanation dict needs a 'kind' key (one of {KINDS}); got {d!r}")
        payload = {k: v for k, v in d.items() if k != "kind"}
        return cls(d["kind"], payload)

    @classmethod
    def simple(cls, concept: str) -> Explanation:
        return cls("simple", {"concept": concept})

    def to_dict(self) -> dict:
        return {"kind": self.kind, **json.loads(json.dumps(self.payload))}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # --- views --------------------------------------------------------------------------------
    def to_text(self) -> str:
        """Human-readable text: 'dog'; '0.42*dog + 0.10*cat'; the formula; '[l,u]: F; ...'."""
        p = self.payload
        if self.kind == "simple":
            return p["concept"]
        if self.kind == "linear":
            parts = []
            for i, (w, name) in enumerate(p["terms"]):
                sign = "-" if w < 0 else "+"
                mag = f"{abs(w):.2f}*{_name_to_text(name)}"
                parts.append(("-" + mag if w < 0 else mag) if i == 0 else f" {sign} {mag}")
            bias = p["bias"]  # always set by _validate
            if bias:
                parts.append(f" {'-' if bias < 0 else '+'} {abs(bias):.2f}" if parts else f"{bias:.2f}")
            return "".join(parts) if parts else "0"
        if self.kind == "compositional":
            return formula_to_text(parse_formula(p["formula"]))
        return "; ".join(
            f"[{c['lower']:g},{c['upper']:g}]: {formula_to_text(parse_formula(c['formula']))}"
            for c in p["clusters"]
        )

    def concepts(self) -> list[str]:
        """Unique concept names in order of appearance."""
        p = self.payload
        if self.kind == "simple":
            names = [p["concept"]]
        elif self.kind == "linear":
            names = [name for _, name in p["terms"]]
        elif self.kind == "compositional":
            names = formula_concepts(parse_formula(p["formula"]))
        else:
            names = [n for c in p["clusters"] for n in formula_concepts(parse_formula(c["formula"]))]
        return list(dict.fromkeys(names))

    @property
    def length(self) -> int:
        """The paper's l: number of unique concepts (seed 001 B.6)."""
        return len(self.concepts())


def _validate(kind: str, p: dict) -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown explanation kind {kind!r}; expected one of {KINDS}")
    if kind == "simple":
        if not isinstance(p.get("concept"), str) or not p["concept"]:
            raise ValueError(f"simple explanation needs a non-empty string 'concept'; got {p!r}")
    elif kind == "linear":
        terms = p.get("terms")
        if not isinstance(terms, list | tuple):
            raise ValueError(f"linear explanation needs 'terms' = [[w, concept], ...]; got {p!r}")
        clean = []
        for i, t in enumerate(terms):
            if not isinstance(t, list | tuple) or len(t) != 2 or not isinstance(t[1], str):
                raise ValueError(f"linear term {i} must be [weight, concept]; got {t!r}")
            clean.append([_check_number(t[0], f"weight of linear term {i}"), t[1]])
        p["terms"] = clean
        p["bias"] = _check_number(p.get("bias", 0.0), "linear bias")
    elif kind == "compositional":
        if not isinstance(p.get("formula"), str):
            raise ValueError(f"compositional explanation needs a string 'formula'; got {p!r}")
        parse_formula(p["formula"])
    else:
        clusters = p.get("clusters")
        if not isinstance(clusters, list | tuple) or not clusters:
            raise ValueError(f"clustered explanation needs a non-empty 'clusters' list; got {p!r}")
        clean = []
        for i, c in enumerate(clusters):
            if not isinstance(c, Mapping) or not {"lower", "upper", "formula"} <= set(c):
                raise ValueError(f"cluster {i} needs keys lower, upper, formula; got {c!r}")
            parse_formula(c["formula"])
            clean.append(
                {
                    "lower": _check_number(c["lower"], f"cluster {i} lower"),
                    "upper": _check_number(c["upper"], f"cluster {i} upper"),
                    "formula": c["formula"],
                }
            )
        p["clusters"] = clean
    return p


def _as_explanation(e: Explanation | Mapping | str) -> Explanation:
    if isinstance(e, Explanation):
        return e
    if isinstance(e, str):
        return Explanation.simple(e)
    return Explanation.from_dict(e)


PresenceLike = Union[Mapping[str, np.ndarray], Callable[[str], np.ndarray]]  # noqa: UP007


def predicted_activation(expl: Explanation | Mapping | str, presence: PresenceLike) -> np.ndarray:
    """Predicted activation s(x, E) over the inputs (SPEC sec. 2; seed 001 eqs. 22-27).

    ``presence`` maps a concept name to its presence [c_t] over the N inputs (0/1 or soft), either as
    a mapping or a callable. Raises KeyError listing every concept the explanation names that
    ``presence`` lacks.
    """
    e = _as_explanation(expl)
    if callable(presence) and not isinstance(presence, Mapping):
        lookup = presence
    else:
        missing = [c for c in e.concepts() if c not in presence]
        if missing:
            raise KeyError(f"presence lacks concepts {missing} named by explanation {e.to_text()!r}")
        lookup = presence.__getitem__
    p = e.payload
    if e.kind == "simple":
        return np.asarray(lookup(p["concept"]), dtype=np.float64).copy()
    if e.kind == "linear":
        out = None
        for w, name in p["terms"]:
            term = w * np.asarray(lookup(name), dtype=np.float64)
            out = term if out is None else out + term
        if out is None:
            raise ValueError("linear explanation with no terms has no input length; give at least one term")
        return out + p["bias"]
    if e.kind == "compositional":
        return evaluate_formula(parse_formula(p["formula"]), lookup)
    out = None
    for c in p["clusters"]:
        term = 0.5 * (c["lower"] + c["upper"]) * evaluate_formula(parse_formula(c["formula"]), lookup)
        out = term if out is None else out + term
    return out


def predicted_matrix(
    explanations: Sequence[Explanation | Mapping | str],
    concept_index: Mapping[str, int] | Sequence[str],
    presence_matrix: np.ndarray,
) -> np.ndarray:
    """Predicted activations of many explanations at once: (N, E).

    ``presence_matrix`` is (N, T) with column ``concept_index[name]`` holding [c_name]. Simple and
    linear explanations are one sparse-weight matrix product; formulas are evaluated column-wise.
    Raises KeyError listing, per explanation, the concepts the matrix lacks.
    """
    exps = [_as_explanation(e) for e in explanations]
    if not isinstance(concept_index, Mapping):
        concept_index = {name: i for i, name in enumerate(concept_index)}
    pm = np.asarray(presence_matrix)
    if pm.ndim != 2:
        raise ValueError(f"presence_matrix must be 2-D (N, T); got shape {pm.shape}")
    missing = {i: [c for c in e.concepts() if c not in concept_index] for i, e in enumerate(exps)}
    missing = {i: m for i, m in missing.items() if m}
    if missing:
        detail = "; ".join(f"explanation {i} ({exps[i].to_text()!r}): {m}" for i, m in list(missing.items())[:20])
        raise KeyError(f"presence matrix lacks concepts named by {len(missing)} explanation(s): {detail}")
    n, t = pm.shape
    out = np.empty((n, len(exps)))  # float64
    linear_cols = [i for i, e in enumerate(exps) if e.kind in ("simple", "linear")]
    if linear_cols:
        weights = np.zeros((t, len(linear_cols)))
        bias = np.zeros(len(linear_cols))
        for j, i in enumerate(linear_cols):
            e = exps[i]
            terms = [[1.0, e.payload["concept"]]] if e.kind == "simple" else e.payload["terms"]
            for w, name in terms:
                weights[concept_index[name], j] += w
            bias[j] = e.payload["bias"] if e.kind == "linear" else 0.0
        used = np.flatnonzero(np.any(weights != 0, axis=1))
        out[:, linear_cols] = pm[:, used] @ weights[used] + bias  # float64 weights: a float64 product
    lookup = lambda name: pm[:, concept_index[name]]  # noqa: E731
    for i, e in enumerate(exps):
        if e.kind in ("compositional", "clustered"):
            out[:, i] = predicted_activation(e, lookup)
    return out


# ----------------------------------------------------------------------------------------------
# The explanation table: one row per (neuron, method), as every generator and importer writes it
# ----------------------------------------------------------------------------------------------
#: columns of the normalised explanation table (dtypes and meaning: docs/explainers.md):
#: neuron int, method str, explanation str (``to_text``), structured str (JSON of ``to_dict``),
#: length int (``Explanation.length``), params str (JSON), source_score float (the method's own score; NaN if none)
TABLE_COLUMNS = ["neuron", "method", "explanation", "structured", "length", "params", "source_score"]


def explanation_table(
    neurons: Iterable[int],
    method: str | Sequence[str],
    structured: Sequence[dict],
    params: str | dict | Sequence[str] = "{}",
    source_score=None,
) -> pd.DataFrame:
    """Build the normalised explanation table (:data:`TABLE_COLUMNS`) from explanation dicts, each
    validated by :meth:`Explanation.from_dict`."""
    neurons = np.asarray(list(neurons), dtype=np.int64)
    if len(neurons) != len(structured):
        raise ValueError(f"{len(neurons)} neurons but {len(structured)} explanations")
    texts, lengths, blobs = [], [], []
    for d in structured:
        e = Explanation.from_dict(d)
        texts.append(e.to_text())
        lengths.append(int(e.length))
        blobs.append(json.dumps(e.to_dict(), sort_keys=True))
    if isinstance(params, dict):
        params = json.dumps(params, sort_keys=True)
    n = len(neurons)
    df = pd.DataFrame(
        {
            "neuron": neurons,
            "method": [method] * n if isinstance(method, str) else list(method),
            "explanation": texts,
            "structured": blobs,
            "length": np.asarray(lengths, dtype=np.int64),
            "params": [params] * n if isinstance(params, str) else list(params),
            "source_score": (
                np.full(n, np.nan) if source_score is None else np.asarray(source_score, dtype=float)
            ),
        }
    )
    return df[TABLE_COLUMNS]
