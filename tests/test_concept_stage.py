"""The concept-model stages share one backbone pass: embeddings computed from stored pooled
features must equal those computed from the images directly (real EfficientNet-Lite weights)."""

import numpy as np
import pytest

from neuronaudit.activations.extract import extract_activations
from neuronaudit.activations.models import load_model
from neuronaudit.concepts.backbones import backbone_key, shared_backbone
from neuronaudit.concepts.backends import get_concept_model
from neuronaudit.concepts.stage import backend_spec, embed_from_features
from neuronaudit.data.datasets import build_dataset
from neuronaudit.data.images import ImageSource
from neuronaudit.io import read_matrix, write_table


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    d = tmp_path_factory.mktemp("fm")
    m, _ = build_dataset({"adapter": "fashion_mnist", "splits": {"val": 24}, "compute_attributes": False})
    write_table(m, d / "manifest.parquet")
    return d, m


@pytest.mark.parametrize("backend", ["conse", "probe"])
def test_embeddings_from_features_equal_direct_embeddings(fmnist, backend):
    d, manifest = fmnist
    spec = {"backend": backend, "variant": 0, "input_size": 64, "calibration": "fit"}
    backbone = shared_backbone(spec)
    assert backbone_key(backbone) == "efficientnet_lite0_64px"
    src = ImageSource.from_manifest(manifest)
    feats = d / f"{backend}_features.parquet"
    extract_activations(src, load_model(backbone), backbone["layers"], {"features": feats}, progress=False)
    embed_from_features(spec, str(feats), str(d / "manifest.parquet"), str(d / f"{backend}.parquet"))
    via_features = read_matrix(d / f"{backend}.parquet")["embedding"]
    direct, failed = get_concept_model(backend_spec(spec)).encode_images(src, batch_size=8, progress=False)
    assert not failed
    np.testing.assert_allclose(via_features, direct, rtol=1e-4, atol=1e-4)


def test_open_clip_embeds_images_itself():
    assert shared_backbone({"backend": "open_clip", "arch": "RN50"}) is None
