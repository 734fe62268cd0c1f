"""Two versions of ``neuronaudit/sampling.py`` timed against each other in one process (``sampling_grid``
at the paper's N = 50,000, 30 seeds, 8 sample sizes, 3 samplers), alternated, best and median of six
runs each, CPU time per pair; and whether their outputs are identical.

    git show 20379f8:src/neuronaudit/sampling.py > /tmp/old.py
    PYTHONPATH=src python benchmarks/ab_grid.py /tmp/old.py src/neuronaudit/sampling.py [pairs] [threads]

A change to the engine that keeps the estimator (same draws, same sums) must print ``identical: True``;
one that changes the random streams prints False and the largest |difference| of rho_hat.
"""

import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_eval import synthetic


def load(path: str, name: str):
    """Import a copy of ``path`` as module ``name``. A copy: numba caches compiled kernels per source file,
    and a cache written under another module name would break the package's own import of that file."""
    copy = Path(tempfile.mkdtemp(prefix="ab_grid_")) / f"{name}.py"
    shutil.copyfile(path, copy)
    spec = importlib.util.spec_from_file_location(name, copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    a_mod, b_mod = load(sys.argv[1], "sampling_a"), load(sys.argv[2], "sampling_b")
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    acts, c, g = synthetic(50_000, max(k, 64))
    kw = dict(neuron_index=np.arange(k), concept_index=np.arange(k), n_threads=threads)
    ra, rb = a_mod.sampling_grid(acts, c, g, **kw), b_mod.sampling_grid(acts, c, g, **kw)  # also compiles
    print(f"identical: {ra.equals(rb)}; max |difference| of rho_hat: {np.nanmax(np.abs(ra.rho_hat - rb.rho_hat)):.3g}")
    ta, tb = [], []
    for r in range(6):
        for m, t in ((a_mod, ta), (b_mod, tb)) if r % 2 == 0 else ((b_mod, tb), (a_mod, ta)):
            c0 = time.process_time()
            m.sampling_grid(acts, c, g, **kw)
            t.append(time.process_time() - c0)
    ta, tb = np.array(ta) / k * 1e3, np.array(tb) / k * 1e3
    print(f"{k} pairs, {threads} thread(s), CPU ms per pair (best / median): A {ta.min():.3f} / {np.median(ta):.3f}, "
          f"B {tb.min():.3f} / {np.median(tb):.3f}; A / B = {ta.min() / tb.min():.2f} / {np.median(ta / tb):.2f}")


if __name__ == "__main__":
    main()
