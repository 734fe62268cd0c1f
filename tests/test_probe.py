"""Linear / MLP probes on EfficientNet-Lite2 features of real Fashion-MNIST images (Debian's idx files)."""

import os

import numpy as np
import pytest

from neuronaudit.concepts.backends import get_concept_model
from neuronaudit.concepts.probe import ProbeConceptModel
from neuronaudit.data.images import ImageSource, read_idx

ROOT = "/usr/share/datasets/fashion-mnist"
NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(f"{ROOT}/train-images-idx3-ubyte.gz"),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)


def _split(prefix, n):
    images = f"{ROOT}/{prefix}-images-idx3-ubyte.gz"
    labels = read_idx(f"{ROOT}/{prefix}-labels-idx1-ubyte.gz")[:n]
    source = ImageSource([f"{prefix}{i}" for i in range(n)], [f"idx:{images}#{i}" for i in range(n)])
    return source, (labels[:, None] == np.arange(10)).astype(np.float32)


@pytest.fixture(scope="module")
def features():
    probe = ProbeConceptModel(input_size=96)
    train, y_train = _split("train", 200)
    test, y_test = _split("t10k", 150)
    f_train, failed = probe.encode_images(train, batch_size=100, progress=False)
    f_test, _ = probe.encode_images(test, batch_size=100, progress=False)
    assert failed == [] and f_train.shape == (200, 1280)
    return probe, f_train, y_train, f_test, y_test


def _mean_auc(y, score):
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[:, c], score[:, c]) for c in range(y.shape[1])]))


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_probe_beats_chance_on_held_out_images(features, head):
    probe, f_train, y_train, f_test, y_test = features
    probe.head = head
    probe.fit(f_train, y_train, NAMES)
    prob, raw = probe.presence(f_test, NAMES)
    assert prob.shape == raw.shape == (150, 10)
    auc = _mean_auc(y_test, raw)
    assert auc > 0.93  # measured 0.970 (linear) / 0.970 (mlp) with 200 training images
    # prior-corrected probabilities are roughly calibrated: mean p near the class rate 0.1
    assert 0.04 < prob.mean() < 0.16
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-raw.astype(np.float64))), rtol=1e-5)


def test_unknown_concepts_are_an_error_listing_known_ones(features):
    probe, f_train, y_train, f_test, _ = features
    probe.head = "linear"
    probe.fit(f_train, y_train, NAMES)
    with pytest.raises(KeyError, match="Trouser"):
        probe.presence(f_test, ["Trouser", "zebra"])
    with pytest.raises(NotImplementedError, match="no text encoder"):
        probe.encode_text(["zebra"])


def test_save_load_round_trip(features, tmp_path):
    probe, f_train, y_train, f_test, _ = features
    probe.head = "linear"
    probe.fit(f_train, y_train, NAMES)
    path = tmp_path / "probe.npz"
    probe.save(path)
    loaded = get_concept_model({"backend": "probe", "path": str(path)})
    np.testing.assert_allclose(
        loaded.scores(f_test, NAMES[::-1]), probe.scores(f_test, NAMES[::-1]), rtol=1e-6
    )
    assert loaded.features["input_size"] == 96


def test_degenerate_concepts_get_a_constant_probability(features):
    probe, f_train, y_train, f_test, _ = features
    probe.head = "linear"
    y = np.concatenate([y_train, np.zeros((200, 1), np.float32)], axis=1)
    with pytest.warns(UserWarning, match="no positive"):
        probe.fit(f_train, y, [*NAMES, "never"])
    prob, _ = probe.presence(f_test, ["never"])
    np.testing.assert_allclose(prob, 0.5 / 201, rtol=1e-4)


def test_config_shorthand_variant():
    probe = get_concept_model({"backend": "probe", "variant": 0, "input_size": 64})
    assert probe.features == {"source": "efficientnet_lite", "variant": 0, "input_size": 64}
