"""LINE's proposers: the step that turns the concept history into a new concept to try.

Interface (:class:`Proposer`): ``propose(ranked, tried, mode, rng) -> Proposal``, where ``ranked`` is the
history's (concept, score) pairs best first, ``tried`` every concept scored so far for this neuron,
``mode`` ``"iterate"`` or ``"summary"`` (SPEC sec. 6: the last step summarises the top 3).

* :class:`EmbeddingProposer` (offline, ``line_offline``): explores a concept vocabulary in sentence-
  embedding space (all-MiniLM-L6-v2 by default) around the history's best concepts and never proposes
  a concept already tried. Iterate: the anchor is the mean of the top ``top_k`` concepts' embeddings
  weighted by how far each scores above the history's worst (plus a small floor); the proposal is drawn
  among the ``n_candidates`` untried vocabulary concepts nearest the anchor with probability
  proportional to exp(cos / temperature). Summary: the anchor is the plain mean of the top 3, and the
  nearest untried concept is taken (deterministic). The trace (anchor concepts, weights, candidates
  and their cosines) is the proposal's ``raw`` text.
* :class:`LLMProposer` (``line``): a transformers chat model (default Llama-3.2-1B-Instruct) prompted
  with the history; the prompts are package files (``prompts/line_iterate.txt``,
  ``prompts/line_summary.txt``) or files given in the config; temperature, top-p, seed and
  max_new_tokens configurable. transformers is an optional extra (``pip install -e .[line]``).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Proposal", "Proposer", "EmbeddingProposer", "LLMProposer", "parse_answer", "read_prompt",
           "format_prompt", "clean_vocabulary", "normalise_concept"]


@dataclass
class Proposal:
    concept: str
    raw: str = ""  # the LLM's raw text, or the offline proposer's JSON trace
    prompt: str = ""  # the LLM prompt ('' offline)


def normalise_concept(text: str) -> str:
    """Lower-case, single spaces, no surrounding punctuation: the key under which concepts repeat."""
    return re.sub(r"\s+", " ", str(text)).strip().strip(".,;:!?\"'`*").strip().lower()


def clean_vocabulary(concepts: Sequence[str], min_letters: int = 3) -> list[str]:
    """Vocabulary entries worth proposing: at least ``min_letters`` letters, only letters, spaces,
    hyphens and apostrophes (drops numbers, 'a', 'i', 's' ...); duplicates after normalising dropped."""
    seen, out = set(), []
    for c in concepts:
        key = normalise_concept(c)
        if sum(ch.isalpha() for ch in key) < min_letters or not re.fullmatch(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*", key):
            continue
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


class Proposer(ABC):
    name: str = ""

    @abstractmethod
    def propose(self, ranked: Sequence[tuple[str, float]], tried: Sequence[str], mode: str,
                rng: np.random.Generator) -> Proposal: ...

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}


class EmbeddingProposer(Proposer):
    """Offline proposer: nearest untried vocabulary concepts to the history's best, in embedding space.

    ``encode(texts) -> (n, D)`` L2-normalised embeddings (default: :func:`neuronaudit.text.encode_texts`);
    the vocabulary is encoded once, other concepts (class names, ...) on first use.
    """

    name = "embedding"

    def __init__(self, vocabulary: Sequence[str], encode: Callable[[list[str]], np.ndarray], *, top_k: int = 3,
                 n_candidates: int = 5, temperature: float = 0.05, text_model: str = "all-MiniLM-L6-v2",
                 vocabulary_name: str = "") -> None:
        self.vocabulary = list(vocabulary)
        if not self.vocabulary:
            raise ValueError("the offline LINE proposer needs a non-empty vocabulary")
        self.encode = encode
        self.top_k, self.n_candidates, self.temperature = int(top_k), int(n_candidates), float(temperature)
        self.text_model, self.vocabulary_name = text_model, vocabulary_name
        self.emb = np.asarray(encode(self.vocabulary), dtype=np.float32)
        self._keys = [normalise_concept(c) for c in self.vocabulary]
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._extra: dict[str, np.ndarray] = {}

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "vocabulary": self.vocabulary_name, "n_vocabulary": len(self.vocabulary),
                "text_model": self.text_model, "top_k": self.top_k, "n_candidates": self.n_candidates,
                "temperature": self.temperature}

    def embed(self, concepts: Sequence[str]) -> np.ndarray:
        """Embeddings of any concepts: vocabulary rows, or encoded once and kept."""
        missing = [c for c in concepts if normalise_concept(c) not in self._index and c not in self._extra]
        if missing:
            for c, e in zip(missing, np.asarray(self.encode(list(missing)), dtype=np.float32), strict=True):
                self._extra[c] = e
        return np.stack([self.emb[self._index[normalise_concept(c)]] if normalise_concept(c) in self._index
                         else self._extra[c] for c in concepts])

    def propose(self, ranked, tried, mode, rng) -> Proposal:
        top = list(ranked[: (3 if mode == "summary" else self.top_k)])
        names = [c for c, _ in top]
        scores = np.array([s for _, s in top], dtype=np.float64)
        if mode == "summary":
            weights = np.full(len(top), 1.0 / len(top))
        else:
            worst = min(s for _, s in ranked)
            margin = np.nan_to_num(scores - worst, nan=0.0) + 1e-3
            weights = margin / margin.sum()
        anchor = (weights[:, None] * self.embed(names)).sum(axis=0)
        anchor /= max(float(np.linalg.norm(anchor)), 1e-12)
        sims = self.emb @ anchor
        blocked = {normalise_concept(t) for t in tried}
        blocked |= {b + "s" for b in blocked} | {b[:-1] for b in blocked if b.endswith("s")}  # plural / singular
        want = 1 if mode == "summary" else self.n_candidates
        cands: list[int] = []
        for size in (want + 3 * len(blocked) + 8, len(sims)):  # the nearest few first; all if they are tried
            size = min(size, len(sims))
            near = np.argpartition(-sims, size - 1)[:size] if size < len(sims) else np.arange(len(sims))
            near = near[np.lexsort((near, -sims[near]))]  # by cosine, ties by vocabulary order
            cands = [int(i) for i in near if self._keys[i] not in blocked][:want]
            if len(cands) == want or size == len(sims):
                break
        if not cands:
            raise RuntimeError(f"the offline LINE proposer has tried every concept of its vocabulary ({len(self.vocabulary)})")
        cs = sims[cands].astype(np.float64)
        if len(cands) == 1:
            pick = 0
        else:
            p = np.exp((cs - cs.max()) / max(self.temperature, 1e-6))
            pick = int(rng.choice(len(cands), p=p / p.sum()))
        trace = {"mode": mode, "anchor": names, "weights": [round(float(w), 4) for w in weights],
                 "candidates": [self.vocabulary[i] for i in cands], "cosines": [round(float(c), 4) for c in cs],
                 "picked": self.vocabulary[cands[pick]]}
        return Proposal(self.vocabulary[cands[pick]], raw=json.dumps(trace))


# ------------------------------------------------------------------------------------------- the LLM
PROMPT_FILES = {"iterate": "line_iterate.txt", "summary": "line_summary.txt"}


def read_prompt(mode: str, path: str | Path | None = None) -> str:
    """The prompt template of ``mode``: the package file, or ``path``. It must contain ``{concepts}``
    (and, for iterate, ``{tried}``)."""
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("neuronaudit.explainers.line").joinpath("prompts", PROMPT_FILES[mode]).read_text("utf-8")
    need = ["{concepts}"] + (["{tried}"] if mode == "iterate" else [])
    missing = [k for k in need if k not in text]
    if missing:
        raise ValueError(f"LINE {mode} prompt {path or PROMPT_FILES[mode]}: lacks {missing}; keep these placeholders")
    return text


def format_prompt(template: str, ranked: Sequence[tuple[str, float]], tried: Sequence[str]) -> str:
    concepts = "\n".join(f"{c}: {s:.3f}" for c, s in ranked)
    return template.replace("{concepts}", concepts).replace("{tried}", ", ".join(tried)).strip()


def parse_answer(text: str) -> str:
    """The concept inside <answer>...</answer> (the last one), else the last non-empty line."""
    found = re.findall(r"<answer>\s*(.*?)\s*(?:</answer>|$)", text, flags=re.S | re.I)
    candidate = next((f for f in reversed(found) if f.strip()), "")
    if not candidate:
        lines = [x for x in text.splitlines() if x.strip() and not x.strip().startswith("<")]
        candidate = lines[-1] if lines else ""
    candidate = re.sub(r"</?\w+>", " ", candidate.splitlines()[0] if candidate.strip() else "")
    return normalise_concept(candidate)[:80]


class LLMProposer(Proposer):
    """A transformers chat model proposes the next concept (LINE's LLM step).

    ``model`` is a hub id or a local directory (loaded with ``AutoModelForCausalLM`` /
    ``AutoTokenizer``), or an already built (model, tokenizer) pair (tests). Sampling uses
    ``temperature`` / ``top_p``; ``seed`` + the neuron's step seed every call (``torch.manual_seed``), so
    a rerun gives the same text on the same hardware. A proposal that repeats a tried concept or is empty
    is asked again up to ``retries`` times (the raw texts of all tries are kept)."""

    name = "llm"

    def __init__(self, model: Any = "meta-llama/Llama-3.2-1B-Instruct", *, tokenizer: Any = None,
                 temperature: float = 0.5, top_p: float = 0.9, max_new_tokens: int = 160, seed: int = 0,
                 prompt_iterate: str | None = None, prompt_summary: str | None = None, device: str = "cpu",
                 retries: int = 2, dtype: str = "auto") -> None:
        try:
            import torch  # noqa: F401
            import transformers
        except ImportError as exc:  # pragma: no cover - the extra is installed in CI
            raise ImportError("the LLM proposer needs transformers: pip install -e .[line]") from exc
        self.model_name = model if isinstance(model, str) else type(model).__name__
        if isinstance(model, str):
            kw = {} if dtype == "auto" else {"dtype": getattr(__import__("torch"), dtype)}
            tokenizer = transformers.AutoTokenizer.from_pretrained(model)
            model = transformers.AutoModelForCausalLM.from_pretrained(model, **kw)
        if tokenizer is None:
            raise ValueError("LLMProposer: give the tokenizer with a built model")
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.device = device
        self.temperature, self.top_p, self.max_new_tokens = float(temperature), float(top_p), int(max_new_tokens)
        self.seed, self.retries = int(seed), int(retries)
        self.prompt_paths = {"iterate": prompt_iterate, "summary": prompt_summary}
        self.templates = {m: read_prompt(m, p) for m, p in self.prompt_paths.items()}

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_name, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed, "retries": self.retries,
                "prompts": {m: p or PROMPT_FILES[m] for m, p in self.prompt_paths.items()}}

    def generate_text(self, prompt: str, seed: int) -> str:
        import torch

        msgs = [{"role": "user", "content": prompt}]
        ids = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        ids = {k: v.to(self.device) for k, v in ids.items()}
        torch.manual_seed(seed)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(**ids, do_sample=self.temperature > 0, temperature=self.temperature or None,
                                      top_p=self.top_p, max_new_tokens=self.max_new_tokens, pad_token_id=pad)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    def propose(self, ranked, tried, mode, rng) -> Proposal:
        ranked = list(ranked[:3]) if mode == "summary" else list(ranked)
        prompt = format_prompt(self.templates[mode], ranked, tried)
        seen = {normalise_concept(t) for t in tried}
        raws, concept = [], ""
        for attempt in range(self.retries + 1):
            raw = self.generate_text(prompt, self.seed + int(rng.integers(2**31)) + attempt)
            raws.append(raw)
            concept = parse_answer(raw)
            if concept and concept not in seen:
                break
        if not concept:
            concept = ranked[0][0]  # nothing usable: the best so far is re-scored, and the record says so
        return Proposal(concept, raw="\n-----\n".join(raws), prompt=prompt)
