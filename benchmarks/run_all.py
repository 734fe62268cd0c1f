"""`make bench`: every benchmark, one after the other. Figures are ratios to a competent baseline or
to a faithful re-implementation of the peer's published algorithm (benchmarks/peers/), measured in the
same process (these machines are noisy); absolute times are printed for context only.

    bench_eval.py        Setting 1 grid at paper scale vs the competent per-pair NumPy baseline
    bench_explainers.py  CLIP-Dissect vs the peer's soft_wpmi; LE vs the peer (GLM-SAGA + Adam greedy),
                         quality on held-out rows; LE peak memory at C = 20,000
    bench_extract.py     extraction end to end vs a bare forward pass
    bench_noop.py        no-op Snakemake rerun vs `snakemake --version`
    bench_dag.py         `snakemake -n` on a 50-pair model-layer sweep: DAG time, jobs, a reason per job
    bench_app.py         rating app: p50/p95/p99 latency of submitting a task, 20 concurrent raters, both durability modes (absolute)
    bench_crowd.py       crowd aggregation of 2,000 explanations x 180 x 3 raters; 100,000-row MTurk import
    bench_gpu.py         the GPU path end to end vs bare forward (prints "no CUDA GPU: skipped" without one)
    bench_line.py        LINE's offline loop: per-iteration cost by part, neurons per minute (1 and 2 processes)

About 8 minutes on 2 cores. Pass --quick for a fast smoke run (small sizes: the figures are then not
the issue's)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
quick = ["--quick"] if "--quick" in sys.argv else []
for script in ("bench_extract.py", "bench_eval.py", "bench_explainers.py", "bench_noop.py", "bench_dag.py", "bench_app.py",
               "bench_crowd.py", "bench_gpu.py", "bench_line.py"):
    print(f"\n##### {script}", flush=True)
    args = quick if script != "bench_noop.py" else []
    rc = subprocess.call([sys.executable, str(HERE / script), *args])
    if rc:
        sys.exit(rc)
