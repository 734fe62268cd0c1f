"""Image sources: the one way every stage reads images.

A manifest row's ``source`` column is a URI that :func:`open_image` decodes:

* ``/abs/or/relative/path.jpg`` — an image file (any format PIL reads);
* ``idx:/path/t10k-images-idx3-ubyte.gz#123`` — image 123 of an idx file (Fashion-MNIST, MNIST);
* ``torchvision:CIFAR10:/root?split=test#17`` — item 17 of a torchvision dataset the user has on disk.

:class:`ImageSource` wraps a list of such URIs and is what concept models and activation extraction
iterate over; :func:`iterate_batches` turns it into preprocessed tensor batches with a DataLoader
(workers and pinned memory where CUDA exists), decoding each image once per stage. Unreadable images
are reported, not raised: the batch iterator yields the indices it had to skip.

**Decoding rules (docs/datasets.md).** Every image comes out as 8-bit RGB. Modes PIL does not scale
on its own are scaled here: 16-bit grey (``I;16*``) is divided by 257 (65535 -> 255); ``I`` (32-bit
int) likewise when its values fit 0..65535, else stretched from its min..max; ``F`` (float) is
multiplied by 255 when it lies in [0, 1], kept when in [0, 255], divided by 257 when in [0, 65535],
else stretched. Palette, LA/PA, RGBA, CMYK, YCbCr and 1-bit images go through PIL's own conversion
(alpha is dropped). A file that cannot be decoded (garbage, truncated: PIL's
``ImageFile.LOAD_TRUNCATED_IMAGES`` is left off, so a truncated file is an error, not grey pixels)
raises :class:`ImageDecodeError`, whose message names the file.

**Skipped images.** Every stage that decodes images skips the ones that fail, names them in its log
and in a JSON report (:class:`SkippedImages`), and fails only when more than
``images.max_failed_fraction`` of them fail (:func:`max_failed_fraction` reads the key from a config).
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
    import torchvision.datasets as tvd  # deferred: only for the torchvision adapter

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


class ImageDecodeError(OSError):
    """An image that cannot be decoded; the message starts with its URI (file name)."""

    def __init__(self, uri: str, cause: BaseException | str) -> None:
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"{uri}: {detail}")
        self.uri, self.detail = uri, detail

    def __reduce__(self):  # picklable (DataLoader workers)
        return (self.__class__, (self.uri, self.detail))


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth pixel values -> uint8 by the rules of the module docstring."""
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode in _SIXTEEN_BIT or (mode == "I" and lo >= 0 and hi <= 65535):
        out = a / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        out = a * 255.0
    elif mode == "F" and lo >= 0 and hi <= 255:
        out = a
    elif mode == "F" and lo >= 0 and hi <= 65535:
        out = a / 257.0
    else:  # values outside every known range: stretch min..max
        out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(np.nan_to_num(out)), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB, scaling 16-bit / int / float modes properly (module docstring)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        img = Image.fromarray(_scale_to_uint8(np.asarray(img), mode), "L")
    elif (mode == "P" and "transparency" in img.info) or mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def open_image(uri: str) -> Image.Image:
    """Decode one image URI (see module docstring) into an 8-bit RGB PIL image.

    Raises :class:`ImageDecodeError` (naming the URI) for any file that cannot be decoded."""
    try:
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
                im.load()  # decodes every byte: a truncated file raises here
                img = im.copy()
        return to_rgb(img)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes one error type naming the file
        raise ImageDecodeError(uri, exc) from exc


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
            img = self.source.load(i)
        except ImageDecodeError as exc:  # reported, the run goes on
            return i, None, str(exc)
        try:
            return i, self.transform(img), None
        except Exception as exc:  # noqa: BLE001 - a preprocessing error is reported like a decode error
            return i, None, f"{self.source.uris[i]}: {type(exc).__name__}: {exc}"


def _collate(items):
    import torch  # deferred: image decoding and manifests work without torch

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
    import torch  # deferred: image decoding and manifests work without torch
    from torch.utils.data import DataLoader  # deferred with torch

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


# -- skipped images: one key, one report format for every stage that decodes images ----------------

DEFAULT_MAX_FAILED_FRACTION = 0.01
FAILED_KEY = "images.max_failed_fraction"
_OLD_FAILED_KEY = "activations.max_failed_fraction"


class TooManyFailedImages(RuntimeError):
    """More images than ``images.max_failed_fraction`` could not be decoded; the message names them."""


def max_failed_fraction(config: dict) -> float:
    """The tolerated fraction of undecodable images, from a (schema-filled) config.

    ``images.max_failed_fraction`` is the key; ``activations.max_failed_fraction``, its old name, is
    still accepted and wins when set (it defaults to null)."""
    import logging

    new = (config.get("images") or {}).get("max_failed_fraction")
    old = (config.get("activations") or {}).get("max_failed_fraction")
    if old is None:
        return float(DEFAULT_MAX_FAILED_FRACTION if new is None else new)
    if new is not None and float(new) != DEFAULT_MAX_FAILED_FRACTION and float(new) != float(old):
        raise ValueError(
            f"{FAILED_KEY}={new} and its old name {_OLD_FAILED_KEY}={old} disagree; set only {FAILED_KEY}"
        )
    logging.getLogger(__name__).warning(
        "%s is the old name of %s; using %s=%s for every stage",
        _OLD_FAILED_KEY,
        FAILED_KEY,
        _OLD_FAILED_KEY,
        old,
    )
    return float(old)


@dataclass
class SkippedImages:
    """Images a stage could not decode: counted, named in the log and a JSON report, and fatal only
    beyond ``max_failed_fraction``."""

    stage: str  # e.g. "build_dataset", "image_features efficientnet_lite0_64px"
    n_images: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (image_id, source, error)
    note: str | None = None

    def add(self, image_id: str, source: str, error: str) -> None:
        self.failed.append((str(image_id), str(source), str(error)))

    @property
    def failed_fraction(self) -> float:
        return len(self.failed) / max(self.n_images, 1)

    @property
    def image_ids(self) -> list[str]:
        return [i for i, _, _ in self.failed]

    def check(self, max_fraction: float, report_hint: str | None = None) -> None:
        """Raise :class:`TooManyFailedImages` naming the files and the key when too many failed
        (and when every image failed, whatever the fraction)."""
        n = len(self.failed)
        if n == 0 or (self.failed_fraction <= max_fraction and n < self.n_images):
            return
        shown = "; ".join(f"{src} ({err.removeprefix(src + ': ')})" for _, src, err in self.failed[:10])
        more = f"; and {n - 10} more" if n > 10 else ""
        where = f" (all listed in {report_hint})" if report_hint else " (all listed in the log)"
        raise TooManyFailedImages(
            f"{self.stage}: {n} of {self.n_images} images ({self.failed_fraction:.1%}) could not be decoded, "
            f"more than {FAILED_KEY}={max_fraction}: {shown}{more}{where}. Fix or remove these files, or raise "
            f"{FAILED_KEY} in the config to skip them (docs/datasets.md)"
        )

    def log(self, logger, max_fraction: float | None = None) -> None:
        for image_id, src, err in self.failed:
            where = err if err.startswith(src) else f"{src}: {err}"
            logger.warning("%s: skipped image %s: %s", self.stage, image_id, where)
        if self.failed:
            logger.warning(
                "%s: %d of %d images could not be decoded and were skipped (%s=%s)",
                self.stage,
                len(self.failed),
                self.n_images,
                FAILED_KEY,
                max_fraction,
            )

    def to_dict(self, max_fraction: float | None = None) -> dict:
        out = {
            "stage": self.stage,
            "n_images": self.n_images,
            "n_failed": len(self.failed),
            "failed_fraction": self.failed_fraction,
            "max_failed_fraction": max_fraction,
            "failed": [{"image_id": i, "source": s, "error": e} for i, s, e in self.failed],
        }
        if self.note:
            out["note"] = self.note
        return out

    def finish(self, logger, max_fraction: float, report_hint: str | None = None) -> None:
        """Log every skipped image, then fail if there are too many (the log keeps the full list)."""
        self.log(logger, max_fraction)
        self.check(max_fraction, report_hint)
