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
