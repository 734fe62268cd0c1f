"""Image sources: the one way every stage reads images.

A manifest row's ``source`` column is a URI that :func:`open_image` decodes:

* ``/abs/or/relative/path.jpg`` — an image file (any format PIL reads);
* ``idx:/path/t10k-images-idx3-ubyte.gz#123`` — image 123 of an idx file (Fashion-MNIST, MNIST);
* ``torchvision:CIFAR10:/root?split=test#17`` — item 17 of a torchvision dataset the user has on disk.

:class:`ImageSource` wraps a list of such URIs and is what concept models and activation extraction
iterate over; :func:`iterate_batches` turns it into preprocessed tensor batches with a DataLoader
(workers and pinned memory where CUDA exists), decoding each image once per stage. Unreadable images
are reported, not raised: the batch iterator yields the indices it had to skip.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

import numpy as np
from PIL import Image


@functools.lru_cache(maxsize=8)
def read_idx(path: str) -> np.ndarray:
    """Read an idx(.gz) file (the MNIST / Fashion-MNIST format) into a uint8/int array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic number); re-obtain it (see docs/datasets.md)")
    dtype_code, ndim = data[2], data[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise ValueError(f"{path}: unknown idx dtype code {dtype_code:#x}")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated idx file ({arr.size} values for shape {shape}); re-obtain it")
    return arr.reshape(shape)


@functools.lru_cache(maxsize=4)
def _torchvision_dataset(name: str, root: str, query: str):
    import torchvision.datasets as tvd

    kwargs = {k: v[0] for k, v in parse_qs(query).items()}
    if "train" in kwargs:
        kwargs["train"] = kwargs["train"].lower() in ("1", "true", "yes")
    return open_torchvision_dataset(getattr(tvd, name), root, kwargs)


def open_torchvision_dataset(cls, root: str, kwargs: dict):
    """Instantiate a torchvision dataset class without ever downloading (``download=False`` where the
    class takes it)."""
    import inspect

    if "download" in inspect.signature(cls).parameters:
        kwargs = {**kwargs, "download": False}
    return cls(root=root, **kwargs)


def open_image(uri: str) -> Image.Image:
    """Decode one image URI (see module docstring) into an RGB PIL image."""
    if uri.startswith("idx:"):
        path, _, index = uri[4:].rpartition("#")
        img = Image.fromarray(read_idx(path)[int(index)])
    elif uri.startswith("torchvision:"):
        rest, _, index = uri[len("torchvision:") :].rpartition("#")
        name, _, loc = rest.partition(":")
        root, _, query = loc.partition("?")
        img = _torchvision_dataset(name, root, query)[int(index)][0]
    else:
        with Image.open(uri) as im:
            img = im.copy()
    return img.convert("RGB")


@dataclass
class ImageSource:
    """An ordered list of images, by id and URI."""

    image_ids: Sequence[str]
    uris: Sequence[str]

    def __post_init__(self) -> None:
        if len(self.image_ids) != len(self.uris):
            raise ValueError("ImageSource: image_ids and uris differ in length")

    def __len__(self) -> int:
        return len(self.uris)

    def load(self, i: int) -> Image.Image:
        return open_image(self.uris[i])

    @classmethod
    def from_manifest(cls, manifest, split: str | None = None) -> ImageSource:
        """Images of a manifest DataFrame (or Parquet path) in manifest order, optionally one split."""
        import pandas as pd

        if not isinstance(manifest, pd.DataFrame):
            manifest = pd.read_parquet(manifest)
        if split is not None:
            manifest = manifest[manifest["split"] == split]
        return cls(list(manifest["image_id"]), list(manifest["source"]))


class _TorchImages:
    """torch Dataset view of an ImageSource; a failed decode yields (index, None)."""

    def __init__(self, source: ImageSource, transform: Callable) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        try:
            return i, self.transform(self.source.load(i)), None
        except Exception as exc:  # noqa: BLE001 - any decode error is reported, the run goes on
            return i, None, f"{type(exc).__name__}: {exc}"


def _collate(items):
    import torch

    ok = [(i, x) for i, x, err in items if err is None]
    bad = [(i, err) for i, x, err in items if err is not None]
    idx = [i for i, _ in ok]
    batch = torch.stack([x for _, x in ok]) if ok else None
    return idx, batch, bad


@dataclass
class Batch:
    indices: list[int]  # positions in the source of the images in ``tensor``
    tensor: object  # torch.Tensor (B, C, H, W) or None if every image failed
    failed: list[tuple[int, str]]  # (position, error) of images that could not be decoded


def iterate_batches(
    source: ImageSource,
    transform: Callable,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "cpu",
) -> Iterator[Batch]:
    """Decode and preprocess each image once, in order, in batches (DataLoader, pinned memory on CUDA)."""
    import torch
    from torch.utils.data import DataLoader

    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if device.startswith("cuda") else 0
    loader = DataLoader(
        _TorchImages(source, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.startswith("cuda") and torch.cuda.is_available(),
        persistent_workers=False,
    )
    for idx, tensor, bad in loader:
        yield Batch(idx, tensor, bad)
