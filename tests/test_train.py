"""neuronaudit.activations.train: the small CNN, its training loop and manifest loading, on a few tiny images."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from neuronaudit.activations.train import (
    SmallCNN,
    accuracy,
    fit_on_manifest,
    manifest_arrays,
    train_small_cnn,
)
from neuronaudit.data.images import ImageDecodeError, SkippedImages


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the tiny model trains fastest that way on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n=24, seed=0):
    """Two classes that differ in brightness: dark (label 0) and bright (label 1) 28x28 uint8 images."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, size=(n, 28, 28)) + 180 * y[:, None, None]
    return x.astype(np.uint8), y


def test_architecture_and_explainable_layers():
    m = SmallCNN(num_classes=3).eval()
    with torch.no_grad():
        out = m(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 3)
    names = dict(m.named_modules())
    assert {"conv2", "conv3", "fc1", "relu_fc1", "fc2"} <= set(names)
    assert names["fc1"].in_features == 128 * 7 * 7 and names["fc1"].out_features == 256
    assert isinstance(names["relu_fc1"], torch.nn.ReLU)


def test_one_epoch_metrics_determinism_and_eval_mode():
    x, y = _images(n=12)
    model, metrics = train_small_cnn(x, y, epochs=1, batch_size=8, seed=3, num_classes=2)
    assert not model.training  # returned in eval mode
    assert set(metrics) == {"epoch", "train_loss", "train_accuracy"} and metrics["epoch"] == 1
    assert np.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 0
    assert 0 <= metrics["train_accuracy"] <= 1 and (metrics["train_accuracy"] * 12) % 1 == 0
    again, metrics2 = train_small_cnn(x, y, epochs=1, batch_size=8, seed=3, num_classes=2)
    assert metrics2 == metrics
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    other, _ = train_small_cnn(x, y, epochs=1, batch_size=8, seed=4, num_classes=2)
    assert not torch.equal(model.fc2.weight, other.fc2.weight)
    assert model.fc2.out_features == 2


def test_training_learns_and_accuracy_matches_a_manual_count():
    x, y = _images(n=16)
    model, metrics = train_small_cnn(x, y, epochs=2, batch_size=8, lr=1e-3, seed=0, num_classes=2)
    assert metrics["epoch"] == 2
    xt, yt = _images(n=16, seed=1)
    acc = accuracy(model, xt, yt, batch_size=5)
    inp = torch.from_numpy((xt.astype(np.float32) / 255.0 - 0.5) / 0.5).unsqueeze(1)
    with torch.no_grad():
        manual = float((model(inp).argmax(1).numpy() == yt).mean())
    assert acc == manual == accuracy(model, xt, yt)
    assert acc >= 0.9  # brightness separates the classes


def _write_manifest(tmp_path, n_train=6, n_val=4, bad=False):
    rows = []
    for i in range(n_train + n_val):
        label = ["cat", "ant"][i % 2]
        img = Image.new("RGB", (32, 32), (250, 250, 250) if label == "cat" else (10, 10, 10))
        path = tmp_path / f"im{i}.png"
        img.save(path)
        rows.append({"image_id": f"im{i}", "source": str(path), "label": label,
                     "split": "train" if i < n_train else "val"})
    if bad:
        (tmp_path / "bad.png").write_bytes(b"not an image")
        rows.append({"image_id": "bad", "source": str(tmp_path / "bad.png"), "label": "cat", "split": "train"})
    return pd.DataFrame(rows)


def test_manifest_arrays_decode_resize_and_label_by_sorted_class(tmp_path):
    man = _write_manifest(tmp_path)
    x, y, classes = manifest_arrays(man, "train")
    assert classes == ["ant", "cat"]  # sorted over all splits
    assert x.shape == (6, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [1, 0] * 3)  # cat = 1, ant = 0
    assert x[0].min() > 200 and x[1].max() < 20  # grey values kept
    xs, _, _ = manifest_arrays(man, "val", size=14)
    assert xs.shape == (4, 14, 14)
    with pytest.raises(ValueError, match="manifest has no 'test' images; set dataset.splits.test"):
        manifest_arrays(man, "test")


def test_manifest_arrays_undecodable_images(tmp_path):
    man = _write_manifest(tmp_path, bad=True)
    with pytest.raises(ImageDecodeError):
        manifest_arrays(man, "train")
    skipped = SkippedImages("t", 0)
    x, y, _ = manifest_arrays(man, "train", skipped=skipped)
    assert len(x) == len(y) == 6 and skipped.image_ids == ["bad"] and skipped.n_images == 7
    only_bad = man[man["image_id"] == "bad"]
    with pytest.raises(ValueError, match="no image of the 'train' split could be decoded"):
        manifest_arrays(only_bad, "train", skipped=SkippedImages("t", 0))


def test_fit_on_manifest_from_a_parquet_file(tmp_path):
    man = _write_manifest(tmp_path, bad=True)
    path = tmp_path / "manifest.parquet"
    man.to_parquet(path)
    model, metrics = fit_on_manifest(str(path), epochs=1, batch_size=4, max_failed_fraction=0.2)
    assert metrics["classes"] == ["ant", "cat"] and metrics["epoch"] == 1
    assert 0 <= metrics["val_accuracy"] <= 1
    assert metrics["skipped"]["n_images"] == 11 and metrics["skipped"]["n_failed"] == 1
    assert metrics["skipped"]["max_failed_fraction"] == 0.2
    assert model.fc2.out_features == 2
    # without a val split there is no val accuracy
    _, m2 = fit_on_manifest(man[man["split"] == "train"].drop(index=man.index[-1]), epochs=1, batch_size=4)
    assert "val_accuracy" not in m2 and m2["skipped"]["n_failed"] == 0
