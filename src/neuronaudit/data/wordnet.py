"""WordNet 3.0 for nltk, offline, and the ImageNet superclass hierarchy built from it.

**Setting up WordNet.** nltk reads WordNet from ``<nltk_data>/corpora/wordnet/``. Where nltk already
finds it (a user ran ``nltk.download('wordnet')``) that copy is used. Otherwise :func:`ensure_wordnet`
builds it from Debian's packages ``wordnet-base`` + ``wordnet-sense-index`` (``/usr/share/wordnet``):
the database files are copied into ``$XDG_CACHE_HOME/neuronaudit/nltk_data/corpora/wordnet/``
(default ``~/.cache/...``; override with ``NEURONAUDIT_NLTK_DATA``) and the ``lexnames`` file that
Debian omits is generated: the 45 standard lexicographer files, numbered 0-44 (WordNet's
``lexnames(5WN)`` manual page), each line ``<number>\\t<name>\\t<syntactic category>``.

**Superclasses (SPEC sec. 2).** The published SigLIP calibrations were fitted against ImageNet-val
one-hot labels plus WordNet superclasses: every hypernym (transitive closure over ``hypernyms`` and
``instance_hypernyms``) of the ImageNet classes is a superclass whose members are the classes below
it; superclasses with more than 300 member classes are dropped (they are too generic to be visual
concepts, e.g. ``entity``, ``object``, ``whole``).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")

# lexnames(5WN): the 45 lexicographer files, in number order; category 1 noun, 2 verb, 3 adj, 4 adv.
LEXNAMES = (
    [("adj.all", 3), ("adj.pert", 3), ("adv.all", 4)]
    + [
        (f"noun.{n}", 1)
        for n in (
            "Tops act animal artifact attribute body cognition communication event feeling food group "
            "location motive object person phenomenon plant possession process quantity relation shape "
            "state substance time"
        ).split()
    ]
    + [
        (f"verb.{n}", 2)
        for n in (
            "body change cognition communication competition consumption contact creation emotion "
            "motion perception possession social stative weather"
        ).split()
    ]
    + [("adj.ppl", 3)]
)
assert len(LEXNAMES) == 45

# Files nltk's WordNetCorpusReader reads (index.sense and cntlist.rev for sense keys and counts).
_WORDNET_FILES = (
    [f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")]
    + [f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")]
    + ["index.sense", "cntlist.rev"]
)


def nltk_data_dir() -> Path:
    """Where neuronaudit keeps its own nltk data (``NEURONAUDIT_NLTK_DATA`` or the user's cache)."""
    if os.environ.get("NEURONAUDIT_NLTK_DATA"):
        return Path(os.environ["NEURONAUDIT_NLTK_DATA"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "neuronaudit" / "nltk_data"


def write_lexnames(path: str | os.PathLike) -> None:
    """Write WordNet's ``lexnames`` file (0-44, name, syntactic category), as nltk expects it."""
    lines = [f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES)]
    Path(path).write_text("".join(lines))


def _install_from_debian(target: Path, source: Path = DEBIAN_WORDNET) -> None:
    missing = [
        f for f in _WORDNET_FILES if not (source / f).is_file() and f not in ("index.sense", "cntlist.rev")
    ]
    if missing:
        raise FileNotFoundError(
            f"WordNet 3.0 not found: {source} lacks {missing}. Install it with "
            "'apt-get install wordnet-base wordnet-sense-index' (Debian/Ubuntu, as root), or run "
            "python -c \"import nltk; nltk.download('wordnet')\" on a machine with internet access."
        )
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _WORDNET_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    if (source / "lexnames").is_file():
        shutil.copyfile(source / "lexnames", tmp / "lexnames")
    else:
        write_lexnames(tmp / "lexnames")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


@functools.lru_cache(maxsize=1)
def ensure_wordnet():
    """Return nltk's WordNet reader, setting up the corpus from Debian's files if nltk lacks it."""
    import nltk  # deferred: nltk loads only when WordNet is needed

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        root = nltk_data_dir()
        target = root / "corpora" / "wordnet"
        if not (target / "lexnames").is_file() or not (target / "data.noun").is_file():
            _install_from_debian(target)
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    from nltk.corpus import wordnet as wn  # deferred with nltk

    wn.ensure_loaded()
    return wn


def synset_of(wnid: str):
    """The noun synset of a WordNet id such as ``n02084071`` (offset-based, WordNet 3.0)."""
    wn = ensure_wordnet()
    if not (len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit()):
        raise ValueError(f"{wnid!r} is not a WordNet noun id (expected 'n' + 8 digits, e.g. 'n02084071')")
    return wn.synset_from_pos_and_offset("n", int(wnid[1:]))


def wnid_of(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"


def readable_name(synset) -> str:
    """First lemma with underscores as spaces: ``dog.n.01`` -> ``dog``."""
    return synset.lemma_names()[0].replace("_", " ")


def wordnet_names(wnids: Iterable[str], unique: bool = True) -> dict[str, str]:
    """Readable names of WordNet ids; with ``unique``, clashing names get their synset's second
    lemma in parentheses (``crane (bird)``-style), or the wnid when there is none."""
    wnids = list(dict.fromkeys(wnids))
    names = {w: readable_name(synset_of(w)) for w in wnids}
    if not unique:
        return names
    groups: dict[str, list[str]] = defaultdict(list)
    for w, n in names.items():
        groups[n].append(w)
    for n, ws in groups.items():
        if len(ws) > 1:
            for w in ws:
                lemmas = [lm.replace("_", " ") for lm in synset_of(w).lemma_names()[1:]]
                names[w] = f"{n} ({lemmas[0]})" if lemmas else f"{n} ({w})"
    # a second round of clashes (same second lemma) falls back to the wnid
    seen: dict[str, int] = defaultdict(int)
    for n in names.values():
        seen[n] += 1
    return {w: (n if seen[n] == 1 else f"{n} [{w}]") for w, n in names.items()}


def hypernym_closure(synset) -> set:
    """All ancestors of a synset over ``hypernyms`` and ``instance_hypernyms`` (excluding itself)."""
    return set(synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms()))


def imagenet_superclasses(
    wnids: Iterable[str], max_subclasses: int = 300, min_subclasses: int = 2
) -> dict[str, set[str]]:
    """Superclass wnid -> the given class wnids below it in WordNet (SPEC sec. 2).

    A superclass is any hypernym (transitive) of a class in ``wnids`` that is not itself in ``wnids``;
    its members are the classes it covers. Superclasses covering more than ``max_subclasses`` classes
    are dropped (the paper's rule, 300); those covering fewer than ``min_subclasses`` are dropped
    too (with one member, a superclass's label equals that class's label). Use
    :func:`wordnet_names` for readable names, e.g. ``n02084071`` -> ``dog`` (118 ImageNet classes).
    """
    wnids = list(dict.fromkeys(wnids))
    classes = set(wnids)
    members: dict[str, set[str]] = defaultdict(set)
    for w in wnids:
        for anc in hypernym_closure(synset_of(w)):
            aw = wnid_of(anc)
            if aw not in classes:
                members[aw].add(w)
    return {s: m for s, m in sorted(members.items()) if min_subclasses <= len(m) <= max_subclasses}
