"""Parquet intermediates shared by every stage.

Two layouts are used (full schemas in docs/schemas.md):

* **Long tables** (manifest, labels, explanations, sampling results): ordinary columns, written with
  :func:`write_table`.
* **Matrix files** (activations, embeddings, presence): one row per image, in manifest order, with
  a string ``image_id`` column and one or more ``FixedSizeList<float32>`` columns holding a row of the
  matrix each (``activation``, ``embedding``, ``probability``, ``score``). The names of the matrix
  columns (neurons, concepts) are stored once in the file's key-value metadata under
  ``neuronaudit.columns`` (a JSON list), beside ``neuronaudit.meta`` (JSON provenance: config hash,
  model, versions). Reading a matrix back is a zero-copy reshape of the flattened list column, which is
  why neurons are not separate Parquet columns (2,048 to 20,000 columns make Parquet metadata slow).

Matrix files are written in row groups by :class:`MatrixWriter`, so extraction streams to disk and
its peak memory does not grow with the number of images.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"neuronaudit.meta"
COLUMNS_KEY = b"neuronaudit.columns"


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions of the packages that shape a result, plus caller-given fields (config hash, model...)."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("neuronaudit", "numpy", "torch", "torchvision", "timm", "open_clip_torch", "pandas"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"versions": versions, **extra}


def _schema_metadata(columns: list[str] | None, meta: dict[str, Any] | None) -> dict[bytes, bytes]:
    out = {META_KEY: json.dumps(meta or {}, default=str).encode()}
    if columns is not None:
        out[COLUMNS_KEY] = json.dumps([str(c) for c in columns]).encode()
    return out


def _atomic_target(path: str | os.PathLike) -> tuple[Path, Path]:
    """The final path and a fresh temporary name beside it (same folder, so the rename is atomic).

    The temporary name is unique per writer (``mkstemp``), so two runs that write the same output at
    once (two Snakemake processes on one results folder) each write their own file and the last rename
    wins: a reader only ever sees a complete file, never a half-written or interleaved one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    return path, Path(tmp)


_UMASK = os.umask(0)  # read once (os.umask can only be read by setting it): no race with threads later
os.umask(_UMASK)


def _replace(tmp: Path, path: Path) -> None:
    """Atomically publish ``tmp`` as ``path`` (permissions as a normally created file)."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write any output atomically: ``with atomic_path(out) as tmp: fig.savefig(tmp)``.

    The body writes ``tmp`` (a unique name beside ``path``, keeping its suffix so libraries that
    infer the format from it still work); on success it replaces ``path`` in one rename, on error it
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)


def write_json(obj: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """``json.dump`` to ``path`` atomically (indent 2 unless given)."""
    kwargs.setdefault("indent", 2)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, default=str, **kwargs) + "\n")


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs: Any) -> None:
    """``DataFrame.to_csv`` to ``path`` atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_table(df: pd.DataFrame, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
    """Write a long table with provenance metadata, atomically (a crash leaves no half file)."""
    path, tmp = _atomic_target(path)
    table = pa.Table.from_pandas(df, preserve_index=False)
    md = dict(table.schema.metadata or {})
    md.update(_schema_metadata(None, meta))
    try:
        pq.write_table(table.replace_schema_metadata(md), tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a long table through one open file handle (a concurrent rename of ``path`` cannot mix
    two versions of the file, as separate opens for the footer and the pages could)."""
    with open(path, "rb") as fh:
        return pq.ParquetFile(fh).read(columns=columns).to_pandas()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    md = pq.read_schema(path).metadata or {}
    return json.loads(md.get(META_KEY, b"{}"))


class MatrixWriter:
    """Stream rows of one or more equally long matrices to a matrix Parquet file.

    >>> with MatrixWriter(path, {"activation": 512}, columns=neuron_names, meta=...) as w:
    ...     for ids, acts in batches:
    ...         w.write(ids, activation=acts)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        widths: dict[str, int],
        columns: list[str] | None = None,
        meta: dict[str, Any] | None = None,
        row_group_size: int = 4096,
    ) -> None:
        self.path, self._tmp = _atomic_target(path)
        self.widths = dict(widths)
        fields = [pa.field("image_id", pa.string())]
        fields += [pa.field(name, pa.list_(pa.float32(), w)) for name, w in self.widths.items()]
        self.schema = pa.schema(fields, metadata=_schema_metadata(columns, meta))
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        self._row_group_size = row_group_size
        self._buf: list[pa.RecordBatch] = []
        self._buffered = 0
        self.rows = 0

    def write(self, image_ids, **arrays: np.ndarray) -> None:
        if set(arrays) != set(self.widths):
            raise ValueError(f"MatrixWriter for {self.path}: expected arrays {sorted(self.widths)}, got {sorted(arrays)}")
        ids = pa.array([str(i) for i in image_ids], pa.string())
        cols = [ids]
        for name, width in self.widths.items():
            arr = np.ascontiguousarray(arrays[name], dtype=np.float32)
            if arr.ndim != 2 or arr.shape != (len(ids), width):
                raise ValueError(
                    f"MatrixWriter for {self.path}: array {name!r} has shape {arr.shape}, expected ({len(ids)}, {width})"
                )
            cols.append(pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), width))
        self._buf.append(pa.RecordBatch.from_arrays(cols, schema=self.schema))
        self._buffered += len(ids)
        self.rows += len(ids)
        if self._buffered >= self._row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._writer.write_table(pa.Table.from_batches(self._buf, schema=self.schema))
            self._buf, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        _replace(self._tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> MatrixWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_matrix(
    path: str | os.PathLike,
    image_ids,
    arrays: dict[str, np.ndarray],
    columns: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write whole matrices at once (see :class:`MatrixWriter` for streaming)."""
    widths = {k: int(np.shape(v)[1]) for k, v in arrays.items()}
    with MatrixWriter(path, widths, columns=columns, meta=meta) as w:
        w.write(list(image_ids), **arrays)


@dataclass
class Matrix:
    """A matrix file read back: ``values[name]`` is an (images x columns) float32 array."""

    image_ids: np.ndarray
    values: dict[str, np.ndarray]
    columns: list[str] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def _list_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    width = col.type.list_size
    flat = pa.concat_arrays([c.flatten() for c in col.chunks]) if col.num_chunks else pa.array([], pa.float32())
    return flat.to_numpy(zero_copy_only=False).reshape(-1, width)


def read_matrix(path: str | os.PathLike, names: list[str] | None = None) -> Matrix:
    """Read a matrix file; ``names`` selects which matrix columns to load (default: all)."""
    with open(path, "rb") as fh:  # one handle: schema and data come from the same file version
        pf = pq.ParquetFile(fh)
        schema = pf.schema_arrow
        matrix_cols = [f.name for f in schema if pa.types.is_fixed_size_list(f.type)]
        if names is None:
            names = matrix_cols
        missing = [n for n in names if n not in matrix_cols]
        if missing:
            raise KeyError(f"{path}: no matrix column(s) {missing}; it has {matrix_cols}")
        table = pf.read(columns=["image_id", *names])
    md = schema.metadata or {}
    columns = json.loads(md[COLUMNS_KEY]) if COLUMNS_KEY in md else None
    meta = json.loads(md.get(META_KEY, b"{}"))
    return Matrix(
        image_ids=table.column("image_id").to_numpy(zero_copy_only=False),
        values={n: _list_to_numpy(table.column(n)) for n in names},
        columns=columns,
        meta=meta,
    )
