"""The SLURM profile against a real Slurm (issue 12, item 2; docs/cluster.md).

The test starts a single-node Slurm on this machine (Debian's slurm-wlm and munge; loopback only, its
state under a temporary folder, non-default ports; tools/slurm_local.py), submits the tiny study
(config/tiny.yaml) through snakemake-executor-plugin-slurm with profiles/slurm, and checks that every
table and Parquet equals a local run's. It then stops the daemons it started.

Run with ``make test-slurm`` (marker ``slurm``; needs root, installs slurm-wlm and munge when missing).
It is deselected from ``make test``: two tiny runs take several minutes on two cores. The dry-run checks
of the profile and of a sweep's DAG at the end need no Slurm and run with the other tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import REPO, copy_workflow, run_snakemake, snakemake_cmd

TOOL = REPO / "tools" / "slurm_local.py"
# Columns that hold wall times or host facts, which differ between any two runs.
VOLATILE = re.compile(r"(seconds|runtime|elapsed|duration|wall|_time$|^time|timestamp|host|\[s\])", re.I)  # "[s]": runtime columns of the paper-layout Tables 8 and 9
# Files that are measurements of the run itself, not results.
VOLATILE_FILES = {"tables/runtime.csv"}


def _free_ports(n: int, start: int = 16817) -> list[int]:
    ports = []
    for port in range(start, start + 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free ports for slurmctld/slurmd")


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (make test-slurm runs as root in CI)")
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()):
        pytest.skip("slurm-wlm and munge are not installed: apt-get install slurm-wlm munge (make test-slurm does)")
    root = Path("/tmp") / f"na-slurm-{os.getpid()}"  # short: munge's socket path must fit in 108 bytes
    ctld, slurmd = _free_ports(2)
    started = _tool("start", str(root), "--ctld-port", str(ctld), "--slurmd-port", str(slurmd))
    if started.returncode != 0:
        _tool("stop", str(root))
        raise AssertionError(f"could not start Slurm:\n{started.stdout}\n{started.stderr}")
    info = json.loads(started.stdout.strip().splitlines()[-1])
    try:
        yield info
    finally:
        stopped = _tool("stop", str(root))
        assert stopped.returncode == 0, stopped.stderr
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, slurm_cluster) -> dict:
    """The tiny study run twice from one snapshot of the workflow: locally (--cores 2) and through
    profiles/slurm. The local run goes on while the Slurm run waits between status checks."""
    snapshot = copy_workflow(tmp_path_factory.mktemp("snapshot"))
    local = tmp_path_factory.mktemp("tiny_local") / "w"
    work = tmp_path_factory.mktemp("tiny_slurm") / "w"
    shutil.copytree(snapshot, local)
    shutil.copytree(snapshot, work)
    env = {**os.environ, "PYTHONPATH": str(local / "src"), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    local_proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml"],
        cwd=local, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    args = [
        "--profile", "profiles/slurm",
        "--configfile", "config/tiny.yaml",
        # the cluster's settings, as a user passes them: its partition, and small defaults for a small node
        "--default-resources", f"slurm_partition={slurm_cluster['partition']}", "mem_mb=2000", "runtime=30",
        "--slurm-no-account", "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--latency-wait", "10",
        "--retries", "0",
    ]
    t = time.perf_counter()
    proc = snakemake_cmd(work, *args)
    wall = time.perf_counter() - t
    local_out, _ = local_proc.communicate()
    local_wall = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        slurm_logs = sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
        tails = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in slurm_logs[-3:])
        raise AssertionError(f"snakemake --profile profiles/slurm failed:\n{log[-6000:]}\n{tails}")
    assert local_proc.returncode == 0, f"the local run failed:\n{local_out[-5000:]}"
    print(f"\nslurm run {wall:.0f} s; local run (alongside) {local_wall:.0f} s")
    return {"slurm": work, "slurm_wall": wall, "slurm_log": log, "local": local}


@pytest.fixture(scope="module")
def slurm_run(runs) -> tuple[Path, float, str]:
    return runs["slurm"], runs["slurm_wall"], runs["slurm_log"]


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    keep = [c for c in a.columns if not VOLATILE.search(str(c))]
    if list(a.columns) != list(b.columns):
        return f"columns differ: {list(a.columns)} vs {list(b.columns)}"
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    for c in keep:
        x, y = a[c], b[c]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            if not np.allclose(x.to_numpy(float), y.to_numpy(float), rtol=1e-5, atol=1e-6, equal_nan=True):
                diff = np.nanmax(np.abs(x.to_numpy(float) - y.to_numpy(float)))
                return f"column {c!r} differs (max abs diff {diff:.3g})"
        elif not x.astype(str).equals(y.astype(str)):
            return f"column {c!r} differs"
    return None


def _result_files(res: Path) -> set[str]:
    return {
        str(p.relative_to(res)) for p in res.rglob("*") if p.suffix in (".parquet", ".csv") and p.is_file()
    }


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_run_equals_local_run(runs):
    """Every table and Parquet the tiny study makes through Slurm equals the local run's."""
    work, local = runs["slurm"], runs["local"]
    res_s, res_l = work / "results" / "tiny", local / "results" / "tiny"
    files_l, files_s = _result_files(res_l), _result_files(res_s)
    assert files_l, "the local run made no tables"
    assert files_s == files_l, f"only local: {sorted(files_l - files_s)}; only slurm: {sorted(files_s - files_l)}"
    assert any(f.startswith("tables/") for f in files_l) and any(f.startswith("scores/") for f in files_l)
    bad = {}
    for rel in sorted(files_l - VOLATILE_FILES):
        read = pd.read_parquet if rel.endswith(".parquet") else pd.read_csv
        problem = _frames_equal(read(res_l / rel), read(res_s / rel))
        if problem:
            bad[rel] = problem
    assert not bad, f"{len(bad)} of {len(files_l)} files differ between the Slurm and the local run: {bad}"
    print(f"\n{len(files_l)} files compared, all equal")


@pytest.mark.slurm
@pytest.mark.slow
def test_jobs_went_through_slurm_in_groups(slurm_run):
    """Jobs were submitted with sbatch (each has a Slurm job id and log), and the small per-layer jobs
    were bundled into group jobs, so there are fewer submissions than jobs."""
    work, _, log = slurm_run
    ids = set(re.findall(r"SLURM (?:run ID|jobid)[^\d]*(\d+)", log, re.I)) | set(
        re.findall(r"external jobid '?(\d+)", log, re.I)
    )
    logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert logs, f"no Slurm job logs under .snakemake/slurm_logs:\n{log[-3000:]}"
    submitted = max(len(ids), len(logs))
    done = re.search(r"(\d+) of (\d+) steps \(100%\) done", log)
    assert done, log[-3000:]
    n_jobs = int(done.group(2))
    assert 1 < submitted < n_jobs, (submitted, n_jobs)
    assert any("group" in p.parts[-2] or "group" in p.name for p in logs) or "group" in log.lower()


@pytest.mark.slurm
@pytest.mark.slow
def test_memory_request_follows_the_input_size(slurm_run):
    """mem_mb() of common.smk: an explain job asked Slurm for 1000 MB + 4 x its inputs' size."""
    work, _, _ = slurm_run
    logs = sorted((work / ".snakemake" / "slurm_logs" / "rule_explain").rglob("*.log"))
    assert logs
    for path in logs:
        text = path.read_text()
        inputs = re.search(r"^\s+input: (.+)$", text, re.M).group(1).split(", ")
        mem = int(re.search(r"^\s+resources: .*?\bmem_mb=(\d+)", text, re.M).group(1))
        size_mb = sum((work / f).stat().st_size for f in inputs) / 1024**2
        assert mem == int(1000 + 4 * size_mb), (path, mem, size_mb)


@pytest.mark.slurm
@pytest.mark.slow
def test_noop_after_slurm_run(slurm_run):
    """The Slurm run leaves complete metadata: a local dry run afterwards has nothing to do."""
    work, _, _ = slurm_run
    out = run_snakemake(work, "-n").stdout
    assert "Nothing to be done" in out, out[-3000:]


# --- the profile and a sweep's DAG, without Slurm (dry runs; the plugin is in requirements.txt) ---


def _dry_run(work: Path, *args: str) -> str:
    proc = snakemake_cmd(work, "-n", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _jobs(text: str) -> list[dict]:
    """Each job of a dry run (group members included): its rule, reason and resources lines."""
    jobs = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(1)})
        elif jobs and (m := re.match(r"^\s+(reason|resources): (.*)$", line)):
            jobs[-1][m.group(1)] = m.group(2)
    return jobs


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("dry"))


def test_slurm_profile_plans_groups_and_gpus(workflow_copy):
    """profiles/slurm on the tiny study: small jobs bundled into group jobs, every job with a reason,
    GPUs requested by the image forward passes unless the study pins device: cpu."""
    args = ["--profile", "profiles/slurm", "--configfile", "config/tiny.yaml"]
    out = _dry_run(workflow_copy, *args)
    groups = set(re.findall(r"Group job (\w+)", out))
    assert {"studies", "scores", "tables"} <= groups, groups
    jobs = _jobs(out)
    assert jobs and all(j.get("reason") for j in jobs), [j["rule"] for j in jobs if not j.get("reason")]
    gpu_rules = {"image_features", "embed_images", "extract_activations_lite0", "extract_activations_cnn"}
    assert {j["rule"] for j in jobs} >= gpu_rules
    for j in jobs:  # tiny.yaml: device: cpu
        if j["rule"] in gpu_rules:
            assert "gpu=0" in j["resources"], j
    jobs = _jobs(_dry_run(workflow_copy, *args, "--config", "device=auto"))
    for j in jobs:
        if j["rule"] in gpu_rules:
            assert "gpu=1" in j["resources"], j
        elif j["rule"] in ("setting1", "build_dataset"):
            assert "gpu=" not in j["resources"], j


@pytest.mark.timing
def test_sweep_dag_is_fast_and_every_job_has_a_reason(workflow_copy):
    """config/examples/sweep.yaml: 50 (model, layer) pairs of >= 1,152 neurons; `snakemake -n` lists
    every job with its reason, well within the time a user waits (benchmarks/bench_dag.py: <= 10 s)."""
    t = time.perf_counter()
    out = _dry_run(workflow_copy, "--configfile", "config/examples/sweep.yaml", "--cores", "2")
    wall = time.perf_counter() - t
    jobs = _jobs(out)
    pairs = {(m, layer) for m, layer in re.findall(r"explanations/(\w+)/(\w+)/le_label\.parquet", out)}
    assert len(pairs) == 50
    total = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    assert len(jobs) == total > 50 * 8
    assert all(j.get("reason") for j in jobs)
    assert wall < 30, f"dry run of a 50-pair sweep took {wall:.1f} s"
