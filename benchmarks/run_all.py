"""`make bench`: every benchmark, one after the other. Figures are ratios to a baseline measured in
the same run (these machines are noisy); absolute times are printed for context only.
Pass --quick for a fast smoke run."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
quick = ["--quick"] if "--quick" in sys.argv else []
for script in ("bench_extract.py", "bench_eval.py", "bench_explainers.py", "bench_noop.py"):
    print(f"\n##### {script}", flush=True)
    args = quick if script != "bench_noop.py" else []
    rc = subprocess.call([sys.executable, str(HERE / script), *args])
    if rc:
        sys.exit(rc)
