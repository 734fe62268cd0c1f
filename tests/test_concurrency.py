"""Two runs writing one results folder never corrupt an output (issue 7, item 7).

Every output is written under a unique temporary name beside it and renamed into place, so a reader
sees the old complete file or the new complete file, never a half-written one, and two writers never
trip over each other's temporary file (the old fixed name `.x.parquet.partial` made the second rename
fail with FileNotFoundError)."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from neuronaudit.io import (
    atomic_path,
    read_matrix,
    read_table,
    write_csv,
    write_json,
    write_matrix,
    write_table,
)

from .conftest import copy_workflow, run_snakemake


def _writer(path: str, kind: str, tag: int, rounds: int) -> None:
    for r in range(rounds):
        n = 2000 + 50 * tag
        if kind == "table":
            write_table(pd.DataFrame({"writer": np.full(n, tag), "round": r, "x": np.arange(n, dtype=float)}), path)
        else:
            acts = np.full((n, 64), float(tag), dtype=np.float32)
            write_matrix(path, [f"i{k}" for k in range(n)], {"activation": acts}, columns=[f"u{k}" for k in range(64)])


def _reader(path: str, kind: str, seconds: float, queue) -> None:
    reads, bad = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if kind == "table":
                df = read_table(path)
                tag = int(df["writer"].iloc[0])
                ok = (df["writer"] == tag).all() and len(df) == 2000 + 50 * tag and (df["x"].to_numpy() == np.arange(len(df))).all()
            else:
                m = read_matrix(path)
                a = m["activation"]
                tag = int(a[0, 0])
                ok = a.shape == (2000 + 50 * tag, 64) and (a == tag).all() and len(m.image_ids) == a.shape[0]
            reads += 1
            if not ok:
                bad.append("mixed content")
        except FileNotFoundError:
            pass  # not written yet
        except Exception as exc:  # a truncated or interleaved file
            bad.append(repr(exc))
    queue.put((reads, bad))


@pytest.mark.parametrize("kind", ["table", "matrix"])
def test_concurrent_writers_and_reader_see_only_complete_files(tmp_path, kind):
    path = str(tmp_path / "out.parquet")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    reader = ctx.Process(target=_reader, args=(path, kind, 4.0, queue))
    writers = [ctx.Process(target=_writer, args=(path, kind, tag, 25)) for tag in range(3)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
        assert w.exitcode == 0, f"a writer failed (exit {w.exitcode})"
    reads, bad = queue.get(timeout=60)
    reader.join(10)
    assert not bad, bad[:5]
    assert reads > 0
    assert not list(tmp_path.glob(".*partial*")), "temporary files left behind"
    pq.read_table(path)  # the final file is complete


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    out = tmp_path / "t.csv"
    write_csv(pd.DataFrame({"a": [1, 2]}), out)
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert pd.read_csv(out)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    write_json({"a": 1}, tmp_path / "j.json")
    assert (tmp_path / "j.json").read_text().strip().startswith("{")


@pytest.mark.slow
def test_two_snakemake_runs_on_one_folder(tmp_path):
    """Two real runs of the dataset stage at once on one results folder (lock skipped, as happens
    when Snakemake's lock folder is removed by a third run ending): both succeed, the output is whole."""
    import os
    import subprocess
    import sys

    work = copy_workflow(tmp_path / "w")
    env = {**os.environ, "PYTHONPATH": str(work / "src")}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config/tiny.yaml",
           "--nolock", "--forceall", "results/tiny/manifest.parquet", "--config", "dataset={compute_attributes: false}"]
    procs = [subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    manifest = pd.read_parquet(work / "results" / "tiny" / "manifest.parquet")
    assert len(manifest) == 700
    assert not list((work / "results" / "tiny").glob(".*partial*"))
    dry = run_snakemake(work, "-n", "results/tiny/manifest.parquet", "--config", "dataset={compute_attributes: false}")
    assert "Nothing to be done" in dry.stdout + dry.stderr
