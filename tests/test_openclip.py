"""open_clip backend with a tiny randomly initialised model.

This checks PLUMBING, not quality: no CLIP/SigLIP weights can be installed here, so the model is a
2-layer ViT / 2-layer text transformer with random weights and the bundled BPE tokenizer. It checks
that images stream through, text is encoded without a prompt template, cosines and calibration are
wired up, published (a, b) are found by architecture name and tokenizer hub errors are explained.
"""

import glob
import json
import os

import numpy as np
import pytest

from neuronaudit.concepts.backends import get_concept_model
from neuronaudit.concepts.calibration import calibrate
from neuronaudit.concepts.openclip import published_calibration
from neuronaudit.data.images import ImageSource

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("openclip") / "neuronaudit-tiny-test.json"
    cfg.write_text(json.dumps(TINY))
    return get_concept_model(
        {
            "backend": "open_clip",
            "arch": "neuronaudit-tiny-test",
            "model_config": str(cfg),
            "calibration": [50, -0.1],
        }
    )


@pytest.fixture(scope="module")
def source():
    foolbox = pytest.importorskip("foolbox")
    files = sorted(glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "cifar10_*.png")))[:6]
    return ImageSource([os.path.basename(f) for f in files], [*files[:5], "/nonexistent/image.png"])


def test_plumbing_images_text_presence(tiny, source):
    emb, failed = tiny.encode_images(source, batch_size=4, progress=False)
    assert emb.shape == (6, 32) and emb.dtype == np.float32
    assert [i for i, _ in failed] == [5] and np.isnan(emb[5]).all()
    np.testing.assert_allclose(np.linalg.norm(emb[:5], axis=1), 1.0, atol=1e-5)
    txt = tiny.encode_text(["dog", "a photo of a dog"])
    assert txt.shape == (2, 32)
    assert not np.allclose(txt[0], txt[1])  # the raw string is encoded, no template is added
    prob, raw = tiny.presence(emb[:5], ["dog", "a photo of a dog"])
    np.testing.assert_allclose(raw, emb[:5] @ txt.T, atol=1e-5)
    np.testing.assert_allclose(prob, calibrate(raw, 50, -0.1), atol=1e-6)


def test_published_calibration_by_arch_name():
    assert published_calibration("ViT-SO400M-14-SigLIP-384") == (58.0, -0.13)
    assert published_calibration("hf-hub:timm/ViT-L-16-SigLIP-384") == (60.0, -0.09)
    assert published_calibration("RN50") is None


def test_unknown_arch_and_missing_checkpoint_are_explained():
    with pytest.raises(ValueError, match="close matches"):
        get_concept_model({"backend": "open_clip", "arch": "ViT-SO400M-14-SigLIP-385"})
    with pytest.raises(FileNotFoundError, match="neither"):
        get_concept_model({"backend": "open_clip", "arch": "RN50", "pretrained": "/no/such/file.pt"})


def test_tokenizer_hub_error_says_it_must_be_local(monkeypatch):
    import open_clip

    def offline(name, *a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(open_clip, "get_tokenizer", offline)
    with pytest.raises(RuntimeError, match="must be available locally"):
        get_concept_model({"backend": "open_clip", "arch": "ViT-SO400M-14-SigLIP-384", "pretrained": None})
