"""Mutation testing of the statistical core (``make mutate``): killed / total per module.

Each module is mutated by mutmut (PyPI) in a scratch copy of the repository (``src/``, ``tests/``,
``pyproject.toml``), so the checkout is never touched, and each mutant is run against that module's
fast unit tests. A mutant is *killed* when a test fails (or times out); a *survivor* is a change to
the code that no test noticed. docs/testing.md lists every survivor as equivalent (with the reason)
or names the test that now kills it.

    python tools/mutate.py                     # every module below
    python tools/mutate.py sampling.py         # one module (".py" optional: crowd/aggregate)
    python tools/mutate.py --show              # also print the diff of each survivor
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

REPO = Path(__file__).resolve().parents[1]

# module (under src/neuronaudit) -> the fast unit tests that exercise it
MODULES: dict[str, list[str]] = {
    "scoring.py": ["tests/test_scoring.py", "tests/test_explanations.py"],
    "explanations.py": ["tests/test_explanations.py", "tests/test_scoring.py"],
    "sampling.py": ["tests/test_sampling.py", "tests/test_engine_reference.py", "tests/test_setting1_intervals.py"],
    "aggregation.py": ["tests/test_aggregation.py"],
    "raters.py": ["tests/test_raters.py", "tests/test_ratings_validation.py"],
    "studies/setting1.py": ["tests/test_studies.py", "tests/test_sampling.py", "tests/test_engine_reference.py",
                            "tests/test_setting1_intervals.py"],
    "studies/setting2.py": ["tests/test_studies.py", "tests/test_engine_reference.py"],
    "crowd/aggregate.py": ["tests/test_crowd_aggregate.py", "tests/test_crowd_interval.py"],
    "crowd/interval.py": ["tests/test_crowd_interval.py", "tests/test_crowd_aggregate.py"],
}
TARGET = 0.90


def _tests_for(module: str) -> list[str]:
    """The module's listed tests plus any tests/test_mutants_<name>.py written to kill its survivors: <name>
    is the module's stem for the top-level and studies modules (test_mutants_setting1.py) and
    <package>_<stem> for the crowd package (test_mutants_crowd_aggregate*.py)."""
    path = Path(module)
    name = f"crowd_{path.stem}" if path.parent.name == "crowd" else path.stem
    extra = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob(f"test_mutants_{name}*.py"))
    return [t for t in MODULES[module] + extra if (REPO / t).exists()]


def _canonical(module: str) -> str:
    """``crowd/aggregate``, ``crowd/aggregate.py`` and ``src/neuronaudit/crowd/aggregate.py`` all name the same
    module of MODULES."""
    module = module.removeprefix("src/").removeprefix("neuronaudit/")
    return module if module.endswith(".py") else f"{module}.py"


def run_module(module: str, workers: int, show: bool) -> tuple[int, int, list[str]]:
    scratch = Path(tempfile.mkdtemp(prefix="mutate-"))
    try:
        for item in ("src", "tests"):
            shutil.copytree(REPO / item, scratch / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        tests = _tests_for(module)
        config = "\n".join(
            [
                "",
                "[tool.mutmut]",
                'source_paths = ["src/neuronaudit"]',
                f'only_mutate = ["src/neuronaudit/{module}"]',
                f"pytest_add_cli_args_test_selection = {tests!r}".replace("'", '"'),
                'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow and not timing"]',
                "",
            ]
        )
        pyproject = (REPO / "pyproject.toml").read_text()
        pyproject = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject)
        (scratch / "pyproject.toml").write_text(pyproject + config)
        env = {**os.environ, "MPLBACKEND": "Agg"}
        mutmut = [sys.executable, "-m", "mutmut"]
        run = subprocess.run([*mutmut, "run", "--max-children", str(workers)], cwd=scratch, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if run.returncode != 0:
            print(run.stdout[-3000:], file=sys.stderr)
        res = subprocess.run([*mutmut, "results", "--all", "true"], cwd=scratch, env=env, capture_output=True, text=True)
        status = dict(re.findall(r"^\s*(\S+): (\w[\w ]*)$", res.stdout, re.M))
        if not status:
            raise RuntimeError(f"mutmut found no mutants for {module}:\n{run.stderr[-3000:]}\n{res.stderr[-2000:]}")
        killed = sum(v in ("killed", "timeout") for v in status.values())
        survivors = sorted(k for k, v in status.items() if v not in ("killed", "timeout"))
        if show:
            for name in survivors:
                diff = subprocess.run([*mutmut, "show", name], cwd=scratch, env=env, capture_output=True, text=True)
                print(f"--- {name} ({status[name]})\n{diff.stdout.strip()}\n")
        return killed, len(status), [f"{k} ({status[k]})" for k in survivors]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: {', '.join(MODULES)})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--show", action="store_true", help="print the diff of every survivor")
    args = parser.parse_args(argv)
    modules = [_canonical(m) for m in args.modules] or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {list(MODULES)}")
    rows, failed = [], False
    for module in modules:
        t0 = time.perf_counter()
        killed, total, survivors = run_module(module, args.workers, args.show)
        rows.append((module, killed, total, time.perf_counter() - t0))
        print(f"{module:22s} killed {killed:4d} / {total:4d} = {killed / total:6.1%}   ({time.perf_counter() - t0:.0f} s)", flush=True)
        for s in survivors:
            print(f"    survived: {s}")
        failed |= killed / total < TARGET
    print(f"\n{'module':22s} {'killed':>7s} {'total':>6s} {'share':>7s}")
    for module, killed, total, _ in rows:
        print(f"{module:22s} {killed:7d} {total:6d} {killed / total:7.1%}{'' if killed / total >= TARGET else '  < 90%'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
