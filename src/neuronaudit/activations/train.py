"""A small CNN native to the default study's data, trained on its training split.

Architecture (28x28 grey input): conv1(32) -> conv2(64) -> pool -> conv3(128) -> pool -> fc1(256) -> fc2.
Explainable layers: ``conv2``, ``conv3`` (spatial mean), ``fc1`` (after ReLU: ``relu_fc1``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from neuronaudit.data.images import DEFAULT_MAX_FAILED_FRACTION, ImageDecodeError, ImageSource, SkippedImages

log = logging.getLogger(__name__)


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.conv3 = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(128 * 7 * 7, 256)
        self.relu_fc1 = nn.ReLU()
        self.dropout = nn.Dropout(0.3)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv2(self.conv1(x)))
        x = self.pool2(self.conv3(x))
        x = self.relu_fc1(self.fc1(x.flatten(1)))
        return self.fc2(self.dropout(x))


def train_small_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    num_classes: int = 10,
) -> tuple[SmallCNN, dict[str, float]]:
    """Train on uint8 images (N, 28, 28) with integer labels; returns the model and training metrics.

    Inputs are normalised like the model's inference transform: x/255, then (x - 0.5) / 0.5.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy((images.astype(np.float32) / 255.0 - 0.5) / 0.5).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    model = SmallCNN(num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    metrics = {}
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        total, correct, loss_sum = 0, 0, 0.0
        for start in tqdm(range(0, len(x), batch_size), desc=f"train epoch {epoch + 1}/{epochs}", mininterval=5):
            idx = order[start : start + batch_size]
            logits = model(x[idx])
            loss = loss_fn(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
            total += len(idx)
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / total, "train_accuracy": correct / total}
        log.info("epoch %d: loss %.4f accuracy %.4f", epoch + 1, metrics["train_loss"], metrics["train_accuracy"])
    return model.eval(), metrics


@torch.inference_mode()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 512) -> float:
    x = torch.from_numpy((images.astype(np.float32) / 255.0 - 0.5) / 0.5).unsqueeze(1)
    preds = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((preds.numpy() == labels).mean())


def manifest_arrays(manifest, split: str, size: int = 28, skipped=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Grey uint8 images (N, size, size) and integer labels of one split, decoded through the manifest.

    Images that cannot be decoded are left out and added to ``skipped`` (a
    :class:`~neuronaudit.data.images.SkippedImages`) when given, else raised."""
    import pandas as pd

    if not isinstance(manifest, pd.DataFrame):
        manifest = pd.read_parquet(manifest)
    classes = sorted(manifest["label"].unique())
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise ValueError(f"manifest has no '{split}' images; set dataset.splits.{split} in the config")
    source = ImageSource.from_manifest(rows)
    images, keep = [], []
    for i in tqdm(range(len(source)), desc=f"load {split}", mininterval=5):
        try:
            images.append(np.asarray(source.load(i).convert("L").resize((size, size))))
            keep.append(i)
        except ImageDecodeError as exc:
            if skipped is None:
                raise
            skipped.add(source.image_ids[i], source.uris[i], str(exc))
    if skipped is not None:
        skipped.n_images += len(source)
    if not images:
        raise ValueError(f"no image of the '{split}' split could be decoded")
    labels = rows["label"].iloc[keep].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return np.stack(images), labels, classes


def fit_on_manifest(manifest, epochs: int = 3, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                    max_failed_fraction: float | None = None):
    """Train the small CNN on the manifest's ``train`` split; report accuracy on ``val`` too.

    Undecodable images are skipped, named in the log and in ``metrics["skipped"]``; beyond
    ``max_failed_fraction`` (``images.max_failed_fraction``, default 0.01) training fails naming them."""
    import pandas as pd

    if max_failed_fraction is None:
        max_failed_fraction = DEFAULT_MAX_FAILED_FRACTION
    if not isinstance(manifest, pd.DataFrame):
        manifest = pd.read_parquet(manifest)
    skipped = SkippedImages("train_small_cnn", 0)
    x, y, classes = manifest_arrays(manifest, "train", skipped=skipped)
    skipped.finish(log, max_failed_fraction)
    model, metrics = train_small_cnn(x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, num_classes=len(classes))
    if (manifest["split"] == "val").any():
        val_skipped = SkippedImages("train_small_cnn (val accuracy)", 0)
        xv, yv, _ = manifest_arrays(manifest, "val", skipped=val_skipped)
        val_skipped.finish(log, max_failed_fraction)
        metrics["val_accuracy"] = accuracy(model, xv, yv)
        skipped.failed += val_skipped.failed
        skipped.n_images += val_skipped.n_images
    metrics["classes"] = classes
    metrics["skipped"] = skipped.to_dict(max_failed_fraction)
    return model, metrics
