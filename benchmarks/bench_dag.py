"""DAG-building benchmark for model-layer sweeps (issue 12, item 3): `snakemake -n` on a sweep config.

Target: <= 10 s for 50 (model, layer) pairs of >= 1,000 neurons each, and a reason for every job in
the dry run. The config is config/examples/sweep.yaml (10 EfficientNet-Lite entries x 5 layers of
1,152-1,280 neurons); ``--pairs N`` generates a larger sweep from it (more model entries, same layers).
Three states of the results folder are timed, in a temporary copy of the workflow:

    fresh       no results: every job planned
    up to date  every output present: nothing to do (the no-op a resumed sweep starts with)
    stale       the manifest touched: every job downstream of it planned again, each with its reason

and the fresh state once more through the SLURM profile (groups; snakemake-executor-plugin-slurm) and
with a LINE method sharded 4 ways per layer (scattergather), next to the bare `snakemake --version` start-up. Neuron counts do not enter the DAG: no input function
reads activations (they read the config, the manifest's dataset block once, and import paths' existence).

    python benchmarks/bench_dag.py [--pairs 50] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "config" / "examples" / "sweep.yaml"


def sweep_config(pairs: int) -> dict:
    """config/examples/sweep.yaml, with model entries repeated (new names) until it has ``pairs`` pairs."""
    cfg = yaml.safe_load(SWEEP.read_text())
    base = list(cfg["models"].items())
    layers = len(base[0][1]["layers"])
    if pairs % layers:
        raise SystemExit(f"--pairs must be a multiple of {layers} (layers per model in {SWEEP.name})")
    models = {}
    for i in range(pairs // layers):
        name, spec = base[i % len(base)]
        models[name if i < len(base) else f"{name}_r{i // len(base)}"] = spec
    cfg["models"] = models
    return cfg


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - t, out.stdout + out.stderr


def plan(text: str) -> tuple[int, int]:
    """(jobs planned, jobs whose entry names a reason) in a dry run's output (group members included)."""
    total = re.search(r"^total\s+(\d+)\s*$", text, re.M)
    jobs, with_reason, current = [], 0, None
    for line in text.splitlines():
        if re.match(r"^\s*(?:local)?(?:rule|checkpoint) \w+:$", line):
            current = len(jobs)
            jobs.append(False)
        elif current is not None and re.match(r"^\s+reason: \S", line):
            jobs[current] = True
    with_reason = sum(jobs)
    return (int(total.group(1)) if total else len(jobs)), with_reason


def outputs(text: str) -> list[str]:
    """Output files listed by `snakemake --summary`."""
    lines = [line.split("\t") for line in text.splitlines()]
    start = next(i for i, row in enumerate(lines) if row[0] == "output_file")
    return [row[0] for row in lines[start + 1 :] if len(row) > 2 and row[0]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="fresh state only")
    args = ap.parse_args()
    cfg = sweep_config(args.pairs)
    neurons = "1,152-1,280"
    work = Path(tempfile.mkdtemp(prefix="bench_dag_"))
    try:
        for item in ("Snakefile", "workflow", "config", "src", "envs", "profiles", "requirements.txt"):
            src = REPO / item
            (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
        (work / "config" / "bench_sweep.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(work / "src")}
        sm = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/bench_sweep.yaml"]
        base, _ = timed([sys.executable, "-m", "snakemake", "--version"], work, env)
        timed(sm + ["-n"], work, env)  # warm: architecture names checked once and cached (check_names)
        rows = []
        t, out = timed(sm + ["-n"], work, env)
        rows.append(("fresh", t, *plan(out)))
        if not args.quick:
            t, out = timed(sm + ["-n", "--profile", "profiles/slurm"], work, env)
            rows.append(("fresh, profiles/slurm", t, *plan(out)))
            schema = yaml.safe_load((work / "workflow" / "schemas" / "config.schema.yaml").read_text())
            if "line" in schema["properties"]:  # LINE sharded 4 ways per layer: 4 x 50 more jobs
                line_cfg = {**cfg, "line": {"shards": 4}}
                line_cfg["explain"] = {**cfg["explain"], "methods": {**cfg["explain"]["methods"], "line_offline": {"method": "line"}}}
                (work / "config" / "bench_sweep_line.yaml").write_text(yaml.safe_dump(line_cfg, sort_keys=False))
                sm_line = [*sm[:-1], "config/bench_sweep_line.yaml"]
                t, out = timed(sm_line + ["-n"], work, env)
                rows.append(("fresh, + LINE (4 shards per layer)", t, *plan(out)))
            _, summary = timed(sm + ["--summary"], work, env)
            files = outputs(summary)
            stamp = time.time() - 60
            for f in files:
                p = work / f
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
                os.utime(p, (stamp, stamp))
            t, out = timed(sm + ["-n"], work, env)
            done = "Nothing to be done" in out
            rows.append(("up to date" + ("" if done else " (JOBS PLANNED: not a no-op)"), t, *plan(out)))
            (work / "results" / cfg["study"] / "manifest.parquet").touch()
            t, out = timed(sm + ["-n"], work, env)
            rows.append(("stale (manifest touched)", t, *plan(out)))
        n_models = len(cfg["models"])
        print(f"== DAG build, {args.pairs} (model, layer) pairs ({n_models} models, {neurons} neurons per layer)")
        print(f"{'snakemake start-up (--version)':<48}: {base:6.2f} s")
        for name, t, jobs, reasons in rows:
            ok = "every job has a reason" if reasons == jobs else f"ONLY {reasons} REASONS"
            print(f"{'snakemake -n, ' + name:<48}: {t:6.2f} s   {jobs:5d} jobs   ({ok if jobs else 'nothing to do'})")
        worst = max(t for _, t, _, _ in rows)
        print(f"{'slowest dry run':<48}: {worst:6.2f} s   (target <= 10 s at 50 pairs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
