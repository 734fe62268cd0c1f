"""Dataset adapters: a manifest of images and their ground-truth concept labels.

``build_dataset(cfg)`` returns ``(manifest, labels)`` (schemas in docs/schemas.md):

* manifest — one row per image: ``image_id`` (str), ``source`` (image URI, see
  :mod:`neuronaudit.data.images`), ``label`` (class name), ``split`` (``train`` fits probes and the
  small CNN; ``val`` is the probing set D for explanation generation and sampling studies; ``test`` is
  held out for automated scoring).
* labels — long table of every (image, concept) pair: ``image_id``, ``concept``, ``kind`` (``class``,
  ``superclass`` or ``attribute``), ``present`` (int8 0/1).

Adapters (``dataset.adapter``): ``fashion_mnist`` (idx files), ``image_folder`` (ImageNet-val layout
with WordNet-id class folders, or a flat folder plus a labels CSV), ``torchvision`` (any
``torchvision.datasets`` class the user has on disk: CIFAR10/100, Places365, ImageNet).

Images that cannot be decoded while the pixel attributes are computed are left out of the manifest
and labels, named in the log and in the build report (``dataset_report.json``); the build fails only
beyond ``images.max_failed_fraction`` (docs/datasets.md). The dataset block of the config is recorded
in the manifest's metadata (:func:`dataset_spec`), and :func:`check_dataset_spec` refuses a manifest
built from another dataset block.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from neuronaudit.data import wordnet
from neuronaudit.data.attributes import attribute_presence
from neuronaudit.data.images import (
    DEFAULT_MAX_FAILED_FRACTION,
    ImageDecodeError,
    SkippedImages,
    open_image,
    open_torchvision_dataset,
    read_idx,
)
from neuronaudit.io import read_meta

log = logging.getLogger(__name__)
WNID = re.compile(r"^n\d{8}$")

FASHION_MNIST_CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]  # fmt: skip
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


class DatasetError(RuntimeError):
    """Missing or malformed dataset files; the message says how to obtain or fix them."""


@dataclass
class Pool:
    """Candidate images of one origin (``train`` or ``test`` file, or ``all``)."""

    ids: list[str]
    uris: list[str]
    labels: list[str]
    name: str


def assign_splits(pools: dict[str, Pool], sizes: dict[str, int | None], seed: int) -> pd.DataFrame:
    """Seeded split assignment: ``train`` from the train pool, ``val``/``test`` from the test pool
    (or all from the ``all`` pool); a size of ``None`` means "the rest of the pool"."""
    rng = np.random.default_rng(seed)
    rows = []
    order = {name: list(rng.permutation(len(p.ids))) for name, p in pools.items()}
    wanted = [(s, sizes.get(s)) for s in ("train", "val", "test") if s in sizes]
    # fixed-size splits first, so that "the rest" is well defined
    for split, n in sorted(wanted, key=lambda kv: kv[1] is None):
        pool_name = "all" if "all" in pools else ("train" if split == "train" else "test")
        pool, free = pools[pool_name], order[pool_name]
        take = len(free) if n is None else int(n)
        if take > len(free):
            raise DatasetError(
                f"dataset.splits.{split}: asked for {take} images but only {len(free)} remain in the "
                f"'{pool_name}' pool; lower the split sizes"
            )
        chosen, order[pool_name] = sorted(free[:take]), free[take:]
        rows += [(pool.ids[i], pool.uris[i], pool.labels[i], split) for i in chosen]
    df = pd.DataFrame(rows, columns=["image_id", "source", "label", "split"])
    split_rank = {"train": 0, "val": 1, "test": 2}
    df["_r"] = df["split"].map(split_rank)
    return df.sort_values(["_r", "image_id"], kind="stable").drop(columns="_r").reset_index(drop=True)


# -- adapters -------------------------------------------------------------------------------------


def fashion_mnist_pools(root: str) -> dict[str, Pool]:
    pools = {}
    for pool, (img_file, lab_file) in FASHION_MNIST_FILES.items():
        img_path, lab_path = Path(root) / img_file, Path(root) / lab_file
        for p in (img_path, lab_path):
            if not p.exists():
                raise DatasetError(
                    f"Fashion-MNIST file {p} not found. Install Debian's dataset-fashion-mnist "
                    "(`apt-get install dataset-fashion-mnist`, files land in /usr/share/datasets/fashion-mnist) "
                    "or point dataset.root at a folder holding the four idx .gz files "
                    "(torchvision.datasets.FashionMNIST(root, download=True) fetches them where online)."
                )
        labels = read_idx(str(lab_path))
        n = len(labels)
        pools[pool] = Pool(
            ids=[f"fmnist-{pool}-{i:05d}" for i in range(n)],
            uris=[f"idx:{img_path}#{i}" for i in range(n)],
            labels=[FASHION_MNIST_CLASSES[int(c)] for c in labels],
            name=pool,
        )
    return pools


def image_folder_pool(root: str, labels_csv: str | None = None, class_names: dict[str, str] | None = None) -> dict[str, Pool]:
    """Class-folder layout (``root/<class or wnid>/<image>``) or a flat folder plus a CSV of
    ``filename,label``. WordNet ids are kept as labels (``n01440764``); readable names go in the labels
    table through ``class_names``."""
    rootp = Path(root)
    if not rootp.is_dir():
        raise DatasetError(f"dataset.root {root!r} is not a folder; for ImageNet, point it at the validation folder "
                           "with one sub-folder per WordNet id (n01440764/...), see docs/datasets.md")
    files: list[tuple[str, str]] = []
    if labels_csv:
        with open(labels_csv, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
                raise DatasetError(f"{labels_csv}: needs the header 'filename,label' (got {reader.fieldnames})")
            for row_no, row in enumerate(reader, start=2):
                if not row["filename"] or not row["label"]:
                    raise DatasetError(f"{labels_csv}, line {row_no}: empty filename or label")
                files.append((str(rootp / row["filename"]), row["label"]))
    else:
        for class_dir in sorted(p for p in rootp.iterdir() if p.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append((str(f), class_dir.name))
    if not files:
        raise DatasetError(f"no images found under {root} (extensions {sorted(IMAGE_EXTENSIONS)})")
    ids = [os.path.relpath(f, rootp) for f, _ in files]
    return {"all": Pool(ids, [f for f, _ in files], [lab for _, lab in files], "all")}


def torchvision_pool(name: str, root: str, kwargs: dict[str, Any] | None = None) -> dict[str, Pool]:
    from urllib.parse import urlencode

    import torchvision.datasets as tvd  # deferred: only for the torchvision adapter

    if not hasattr(tvd, name):
        raise DatasetError(f"dataset.torchvision.name {name!r} is not a torchvision dataset")
    kwargs = dict(kwargs or {})
    try:
        ds = open_torchvision_dataset(getattr(tvd, name), root, kwargs)
    except (RuntimeError, FileNotFoundError) as exc:
        raise DatasetError(f"torchvision {name} not found under {root}: {exc}. Download it on a machine that is "
                           "online (download=True) and copy the folder here.") from exc
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = [t for _, t in getattr(ds, "samples", getattr(ds, "imgs", []))]
    classes = getattr(ds, "classes", None)
    query = urlencode(kwargs)
    uris = [f"torchvision:{name}:{root}?{query}#{i}" for i in range(len(ds))]
    labels = [classes[int(t)] if classes else str(int(t)) for t in targets]
    return {"all": Pool([f"{name.lower()}-{i:06d}" for i in range(len(ds))], uris, labels, "all")}


# -- labels ---------------------------------------------------------------------------------------


def fashion_mnist_hierarchy() -> dict[str, list[str]]:
    text = resources.files("neuronaudit.data").joinpath("hierarchies/fashion_mnist.yaml").read_text()
    return yaml.safe_load(text)


def _images_for_attributes(
    manifest: pd.DataFrame, thumb: int = 64, skipped: SkippedImages | None = None
) -> tuple[np.ndarray, bool, np.ndarray]:
    """Pixel arrays for attribute computation: idx images at native size; others as RGB thumbnails.

    Returns ``(images, black_background, ok)``: ``ok`` marks the rows that could be decoded (the
    others are zero images, and are added to ``skipped``)."""
    ok = np.ones(len(manifest), bool)
    if manifest["source"].str.startswith("idx:").all():
        parts = manifest["source"].str.slice(4).str.rpartition("#")
        stacks = [read_idx(path)[parts[2][parts[0] == path].astype(int).to_numpy()] for path in parts[0].unique()]
        # keep manifest order
        out = np.empty((len(manifest), *stacks[0].shape[1:]), np.uint8)
        for path, stack in zip(parts[0].unique(), stacks, strict=True):
            out[(parts[0] == path).to_numpy()] = stack
        return out, True, ok
    from tqdm import tqdm

    arr = np.zeros((len(manifest), thumb, thumb, 3), np.uint8)
    ids, uris = manifest["image_id"].to_numpy(), manifest["source"].to_numpy()
    for i in tqdm(range(len(manifest)), desc="attributes", mininterval=5):
        try:
            arr[i] = np.asarray(open_image(uris[i]).resize((thumb, thumb)))
        except ImageDecodeError as exc:
            ok[i] = False
            if skipped is not None:
                skipped.add(ids[i], uris[i], str(exc))
    return arr, False, ok


def build_labels(
    manifest: pd.DataFrame,
    class_names: dict[str, str] | None = None,
    superclasses: dict[str, list[str]] | None = None,
    attributes: dict[str, float] | None = None,
    with_attributes: bool = True,
    images: tuple[np.ndarray, bool] | None = None,
) -> pd.DataFrame:
    """Dense long table of ground-truth presence for classes, superclasses and pixel attributes
    (``images``: the decoded pixel stack and background flag, else decoded here)."""
    labels = manifest["label"].map(lambda c: (class_names or {}).get(c, c)).to_numpy()
    concepts: dict[str, tuple[str, np.ndarray]] = {}
    for c in sorted(set(labels)):
        concepts[c] = ("class", labels == c)
    for sup, members in (superclasses or {}).items():
        if sup in concepts:  # a superclass that is also a class name keeps the class meaning
            continue
        concepts[sup] = ("superclass", np.isin(labels, list(members)))
    if with_attributes:
        if images is None:
            skipped = SkippedImages("build_dataset", len(manifest))
            pixels, black, _ = _images_for_attributes(manifest, skipped=skipped)
            if skipped.failed:
                raise ImageDecodeError(skipped.failed[0][1], "cannot be decoded; use build_dataset, which skips such files")
        else:
            pixels, black = images
        for name, present in attribute_presence(pixels, black, attributes).items():
            concepts.setdefault(name, ("attribute", present))
    n = len(manifest)
    names = list(concepts)
    return pd.DataFrame(
        {
            "image_id": np.tile(manifest["image_id"].to_numpy(), len(names)),
            "concept": pd.Categorical(np.repeat(names, n), categories=names),
            "kind": pd.Categorical(np.repeat([concepts[c][0] for c in names], n)),
            "present": np.concatenate([concepts[c][1] for c in names]).astype(np.int8),
        }
    )


def labels_matrix(labels: pd.DataFrame, image_ids, concepts: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Dense (images x concepts) int8 matrix from the long labels table, rows in ``image_ids`` order."""
    if concepts is None:
        concepts = list(dict.fromkeys(labels["concept"].astype(str)))
    wide = labels.pivot_table(index="image_id", columns="concept", values="present", observed=True, aggfunc="max")
    missing = [c for c in concepts if c not in wide.columns]
    if missing:
        raise KeyError(f"labels have no concept(s) {missing}")
    unknown = pd.Index(image_ids).difference(wide.index)
    if len(unknown):
        raise KeyError(f"labels have no rows for {len(unknown)} image(s), e.g. {list(unknown[:5])}")
    return wide.loc[list(image_ids), concepts].to_numpy(np.int8), concepts


def dataset_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """The canonical dataset block (keys sorted at every level, JSON values): what the manifest records
    and :func:`check_dataset_spec` compares. Every key of the block changes the manifest or labels."""

    def canon(obj):
        if isinstance(obj, dict):
            return {str(k): canon(obj[k]) for k in sorted(obj)}
        if isinstance(obj, list | tuple):
            return [canon(v) for v in obj]
        return obj

    return json.loads(json.dumps(canon(dict(cfg)), default=str))


class DatasetSpecMismatch(DatasetError):
    """A results folder built from another dataset block than the config's."""


def recorded_dataset_spec(manifest_path: str | os.PathLike) -> dict[str, Any] | None:
    """The dataset block a manifest was built from (None for a manifest that records none)."""
    spec = read_meta(manifest_path).get("dataset")
    return dataset_spec(spec) if isinstance(spec, dict) else None


def _spec_difference(old: dict[str, Any], new: dict[str, Any], prefix: str = "dataset") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "(unset)"), new.get(k, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _spec_difference(a, b, f"{prefix}.{k}")
        elif a != b:
            out.append(f"{prefix}.{k}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


def check_dataset_spec(manifest_path: str | os.PathLike, cfg: dict[str, Any]) -> None:
    """Refuse to reuse a manifest built from another dataset block than ``cfg`` (the config's
    ``dataset`` section), with a message naming the differing keys and what to do.

    Snakemake rebuilds the manifest when the dataset block changes only if it still has the old run's
    records (``.snakemake/metadata``) and the ``params`` rerun trigger is on; with ``--rerun-triggers
    mtime``, or a results folder copied from elsewhere, the old manifest would silently be reused and
    new results mixed with old ones. A manifest that records no dataset block is accepted."""
    old = recorded_dataset_spec(manifest_path)
    if old is None:
        return
    new = dataset_spec(cfg)
    if old == new:
        return
    folder = os.path.dirname(os.fspath(manifest_path)) or "."
    diff = "; ".join(_spec_difference(old, new))
    raise DatasetSpecMismatch(
        f"{folder} was built from another dataset than this config's ({diff}). Its results would be mixed "
        f"with the new dataset's: use another study name, or delete {folder} (or just its manifest.parquet, "
        "which rebuilds everything) and run again (docs/datasets.md)"
    )


def _wordnet_superclasses(cfg: dict[str, Any], adapter: str, labels: pd.Series, notes: list[str]) -> bool:
    """Whether to make WordNet superclasses: ``dataset.wordnet_superclasses`` null (the schema's
    default) means on for image_folder; either way only when every class is a WordNet id."""
    wanted = cfg.get("wordnet_superclasses")
    if wanted is None:
        wanted = adapter == "image_folder"
    if not wanted:
        return False
    classes = sorted(labels.unique())
    bad = [c for c in classes if not WNID.match(str(c))]
    if bad:
        msg = (
            f"dataset.wordnet_superclasses is on but {len(bad)} of {len(classes)} class names are not WordNet ids "
            f"(e.g. {bad[:3]}), so no WordNet class names or superclasses are made; name the class folders by "
            "WordNet id (n01440764, ...) as in ImageNet's validation folder, or set dataset.wordnet_superclasses: "
            "false to silence this (docs/datasets.md)"
        )
        log.warning(msg)
        notes.append(msg)
        return False
    return True


def build_dataset(
    cfg: dict[str, Any], max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION, with_report: bool = False
):
    """Manifest and labels for the ``dataset`` section of a config (filled by the schema's defaults).

    Images that cannot be decoded for the pixel attributes are left out of both tables and named in
    the log; beyond ``max_failed_fraction`` of the images (``images.max_failed_fraction``) the build
    fails naming them. With ``with_report`` also returns the build report (a dict: skipped images,
    WordNet notes), which the pipeline writes as ``dataset_report.json``."""
    adapter = cfg["adapter"]
    class_names: dict[str, str] | None = None
    superclasses: dict[str, list[str]] | None = None
    notes: list[str] = []
    if adapter == "fashion_mnist":
        pools = fashion_mnist_pools(cfg.get("root") or "/usr/share/datasets/fashion-mnist")
        superclasses = fashion_mnist_hierarchy()
    elif adapter == "image_folder":
        if not cfg.get("root"):
            raise DatasetError("dataset.root: the image_folder adapter needs the folder of images (docs/datasets.md)")
        pools = image_folder_pool(cfg["root"], cfg.get("labels_csv"))
    elif adapter == "torchvision":
        tv = cfg["torchvision"]
        pools = torchvision_pool(tv["name"], cfg["root"], tv.get("kwargs"))
    else:
        raise DatasetError(f"dataset.adapter {adapter!r}: use fashion_mnist, image_folder or torchvision")
    manifest = assign_splits(pools, cfg.get("splits") or {"val": None}, int(cfg.get("seed") or 0))
    if _wordnet_superclasses(cfg, adapter, manifest["label"], notes):
        wnids = sorted(manifest["label"].unique())
        class_names = wordnet.wordnet_names(wnids)
        sup = wordnet.imagenet_superclasses(wnids, max_subclasses=int(cfg.get("max_subclasses") or 300))
        sup_names = wordnet.wordnet_names(sup)
        superclasses = {sup_names[s]: [class_names[w] for w in members] for s, members in sup.items()}
    with_attributes = cfg.get("compute_attributes", True) is not False
    skipped = SkippedImages("build_dataset", len(manifest))
    pixels = None
    if with_attributes:
        images, black, ok = _images_for_attributes(manifest, skipped=skipped)
        skipped.finish(log, max_failed_fraction)
        if not ok.all():
            manifest = manifest[ok].reset_index(drop=True)
            images = images[ok]
        pixels = (images, black)
    else:
        skipped.note = ("images are not decoded while building the dataset (dataset.compute_attributes is false); "
                        "each later stage skips and reports undecodable ones")
    labels = build_labels(manifest, class_names, superclasses, cfg.get("attributes"), with_attributes, images=pixels)
    if class_names:
        manifest = manifest.assign(label=manifest["label"].map(lambda w: class_names.get(w, w)))
    if not with_report:
        return manifest, labels
    report = skipped.to_dict(max_failed_fraction)
    report |= {
        "n_manifest": len(manifest),
        "splits": {str(k): int(v) for k, v in manifest["split"].value_counts().items()},
        "n_superclasses": len(superclasses or {}),
        "wordnet_superclasses": bool(class_names),
        "notes": notes,
    }
    return manifest, labels, report
