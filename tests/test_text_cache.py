"""Text embeddings are computed once and reused across jobs (issue 8: ConSE re-encoded the 1,000
class names in every job)."""

from __future__ import annotations

import numpy as np

import neuronaudit.text as text


def test_cache_hit_returns_same_embeddings_without_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONAUDIT_CACHE", str(tmp_path))
    first = text.encode_texts(["a dog", "a red car", "sky"])
    files = list(tmp_path.glob("text-*.npy"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(text, "_encode", lambda *a, **k: calls.append(a) or np.zeros((3, 384), np.float32))
    again = text.encode_texts(["a dog", "a red car", "sky"])
    assert not calls and np.array_equal(first, again)
    # other texts or another order are another entry
    text.encode_texts(["sky", "a dog", "a red car"])
    assert len(calls) == 1 and len(list(tmp_path.glob("text-*.npy"))) == 2


def test_cache_off_and_damaged_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONAUDIT_CACHE", "off")
    assert text.embedding_cache_dir() is None
    monkeypatch.setenv("NEURONAUDIT_CACHE", str(tmp_path))
    ref = text.encode_texts(["cat"], cache=False)
    text.encode_texts(["cat"])
    (entry,) = tmp_path.glob("text-*.npy")
    entry.write_bytes(b"not numpy")
    again = text.encode_texts(["cat"])
    np.testing.assert_allclose(again, ref, atol=1e-6)
    assert np.load(entry).shape == (1, 384)  # replaced


def _fake_model(folder, weights: bytes):
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    return str(folder)


def test_cache_key_follows_the_weights_bytes_not_their_path(tmp_path):
    """The same model file in another venv or clone (another path, another mtime) keys the same
    entries, so a fresh clone does not re-encode the vocabulary; other bytes key other entries. The
    file's digest is computed once per copy and kept beside the entries."""
    cache = tmp_path / "cache"
    cache.mkdir()
    a = _fake_model(tmp_path / "venv1", b"weights v1" * 1000)
    b = _fake_model(tmp_path / "venv2", b"weights v1" * 1000)
    c = _fake_model(tmp_path / "venv3", b"weights v2" * 1000)
    key_a = text._cache_key(["a dog", "sky"], a, cache)
    assert text._cache_key(["a dog", "sky"], b, cache) == key_a
    assert text._cache_key(["a dog", "sky"], c, cache) != key_a
    assert text._cache_key(["sky", "a dog"], a, cache) != key_a
    assert len(list(cache.glob("weights-*.sha256"))) == 3  # one digest per copy of the file
    # the memo is used: a digest kept for a's (path, size, mtime) is what a's key follows
    for m in cache.glob("weights-*.sha256"):
        m.unlink()
    assert text._cache_key(["a dog", "sky"], a, cache) == key_a
    (memo_a,) = cache.glob("weights-*.sha256")
    memo_a.write_text("0" * 64)
    assert text._cache_key(["a dog", "sky"], a, cache) != key_a
    # without a cache folder the key is the same content key
    assert text._cache_key(["a dog", "sky"], b, None) == key_a
