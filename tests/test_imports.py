"""The package's import structure: every module imports on its own (no import cycles), and no module
imports ``neuronaudit`` inside a function (a lazy import hides a cycle and the code_version closure's
structure); heavy third-party packages (torch, open_clip ...) may still be imported where used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "neuronaudit"

#: in-function ``neuronaudit`` imports that are deliberate: "path:function" -> why (none today)
ALLOWED_LAZY: dict[str, str] = {}


def _modules() -> list[str]:
    out = []
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """One subprocess per module, so an import cycle (which depends on which module comes first)
    shows up; run in batches of subprocesses started from one parent to stay cheap."""
    code = (
        "import subprocess, sys\n"
        "bad = []\n"
        "for m in sys.argv[1:]:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
        "    if r.returncode:\n"
        "        bad.append(f'{m}: ' + r.stderr.strip().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *_modules()], capture_output=True, text=True,
                       env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert r.returncode == 0, f"modules that fail to import on their own:\n{r.stdout}{r.stderr[-2000:]}"


def _lazy_imports() -> list[str]:
    found = []
    for p in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(p.read_text(), filename=str(p))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                names = []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if node.level == 0 else ["neuronaudit (relative)"]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                if any(n == "neuronaudit" or n.startswith("neuronaudit") for n in names):
                    found.append(f"{p.relative_to(SRC).as_posix()}:{fn.name}:{node.lineno}")
    return sorted(set(found))


def test_no_in_function_imports_of_the_package():
    lazy = _lazy_imports()
    unexplained = [x for x in lazy if x.rsplit(":", 1)[0] not in ALLOWED_LAZY]
    assert not unexplained, ("import these at the top of the module (move shared code to break a cycle), or add "
                             f"them to ALLOWED_LAZY with the reason: {unexplained}")


@pytest.mark.parametrize("module", ["neuronaudit.explainers.stage", "neuronaudit.studies.automated",
                                    "neuronaudit.config"])
def test_light_modules_do_not_load_torch(module):
    """The Snakefile (config validation, check_method) and the score jobs import these: no torch."""
    r = subprocess.run([sys.executable, "-c", f"import sys, {module}; print('torch' in sys.modules)"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
