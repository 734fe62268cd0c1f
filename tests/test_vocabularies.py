"""Concept vocabularies and the WordNet superclasses of ImageNet (SPEC sec. 2, 6)."""

import os

import pytest

from neuronaudit.data.vocabularies import (
    imagenet_class_names,
    imagenet_wnids,
    load_vocabulary,
    read_concept_file,
)

HAS_WORDNET = os.path.exists("/usr/share/wordnet/data.noun")


def test_wordfreq_20k():
    words = load_vocabulary("words20k")
    assert 18000 < len(words) <= 20000  # 20,000 most common, alphabetic only (19,583 with wordfreq 3.1)
    assert words[:3] == ["the", "to", "and"] or "the" in words[:5]
    assert all(w.isalpha() for w in words)
    assert len(load_vocabulary({"kind": "wordfreq", "n": 1000})) <= 1000
    assert (
        load_vocabulary({"source": "wordfreq", "n": 300})
        == words[: len(load_vocabulary({"source": "wordfreq", "n": 300}))]
    )


def test_imagenet_names():
    assert len(imagenet_class_names(unique=False)) == 1000
    names = load_vocabulary("imagenet")
    assert len(names) == len(set(names)) == 998  # 'missile' and 'sunglasses' name two classes each
    assert imagenet_class_names(unique=False)[243] == "Bullmastiff"
    assert imagenet_wnids()[0] == "n01440764"


def test_dataset_vocabulary():
    assert load_vocabulary("dataset", dataset_concepts=["a", "b", "a"]) == ["a", "b"]
    with pytest.raises(ValueError, match="dataset_concepts"):
        load_vocabulary("dataset")


def test_user_file(tmp_path):
    path = tmp_path / "concepts.txt"
    path.write_text("# my concepts\nstriped\n\nred car  # a comment\nstriped\n")
    with pytest.warns(UserWarning, match="duplicate"):
        assert read_concept_file(path) == ["striped", "red car"]
    with pytest.warns(UserWarning):
        assert load_vocabulary(str(path)) == ["striped", "red car"]
    with pytest.raises(FileNotFoundError, match="one concept per line"):
        load_vocabulary({"kind": "file", "path": str(tmp_path / "missing.txt")})
    with pytest.raises(ValueError, match="kind"):
        load_vocabulary({"kind": "colours"})


@pytest.mark.skipif(not HAS_WORDNET, reason="apt-get install wordnet-base wordnet-sense-index")
def test_wordnet_nouns_and_superclasses(tmp_path, monkeypatch):
    from neuronaudit.data import wordnet

    monkeypatch.setenv("NEURONAUDIT_NLTK_DATA", str(tmp_path / "nltk_data"))
    wordnet.ensure_wordnet.cache_clear()
    nouns = load_vocabulary("wordnet_nouns")
    assert len(nouns) > 100000 and "dog" in nouns and "ice cream" in nouns
    # the corpus set-up from Debian's files generates the lexnames file Debian omits
    # (done directly: an earlier test in this process may already have set nltk up)
    wordnet._install_from_debian(tmp_path / "wn")
    lexnames = (tmp_path / "wn" / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45 and lexnames[5].split() == ["05", "noun.animal", "1"]
    assert (tmp_path / "wn" / "data.noun").is_file()

    supers = wordnet.imagenet_superclasses(imagenet_wnids())
    names = wordnet.wordnet_names(supers)
    dog = next(s for s, n in names.items() if n == "dog")
    assert len(supers[dog]) == 118 and "n02108422" in supers[dog]  # bullmastiff is a dog
    assert all(2 <= len(m) <= 300 for m in supers.values())
    assert len(set(names.values())) == len(names)
    assert "entity" not in names.values()  # > 300 subclasses: dropped (SPEC sec. 2)
