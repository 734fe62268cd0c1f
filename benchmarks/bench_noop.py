"""No-op rerun benchmark (issue 2): how long Snakemake takes to decide there is nothing to do.

Times `snakemake --cores 2` on the default study when its results are already there (run `make run`
first), next to the bare `snakemake --version` start-up in the same run as the baseline. If
results/default is missing it uses config/tiny.yaml in a temporary copy (running it once first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t, out.stdout + out.stderr


def main() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sm = [sys.executable, "-m", "snakemake", "--cores", "2"]
    if (REPO / "results" / "default" / "manifest.parquet").exists():
        work, extra, label = REPO, [], "default study"
    else:
        work = Path(tempfile.mkdtemp())
        for item in ("Snakefile", "workflow", "config", "src", "envs", "requirements.txt"):
            src = REPO / item
            (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
        env["PYTHONPATH"] = str(work / "src")
        extra, label = ["--configfile", "config/tiny.yaml"], "tiny study (results/default missing)"
        print("running the tiny study once first ...", flush=True)
        timed(sm + extra, work, env)
    base, _ = timed([sys.executable, "-m", "snakemake", "--version"], work, env)
    noop, out = timed(sm + extra, work, env)
    done = "Nothing to be done" in out
    print(f"== no-op rerun, {label}")
    print(f"snakemake start-up (--version)   : {base:6.2f} s")
    print(f"no-op rerun                      : {noop:6.2f} s   ({'nothing to be done' if done else 'JOBS RAN: not a no-op'})")
    print(f"ratio no-op / start-up           : {noop / base:6.2f}")


if __name__ == "__main__":
    main()
