"""A rule's code hash covers its script's whole import closure (issue 8: no hand-kept module lists)."""

from __future__ import annotations

from pathlib import Path

from neuronaudit.codehash import code_hash, import_closure

from .conftest import REPO


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "src" / "neuronaudit"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from . import helper\n")
    (root / "sub" / "helper.py").write_text("import numpy\n")
    (root / "a.py").write_text("from .b import f\n")
    (root / "b.py").write_text("def f():\n    from neuronaudit import c  # lazy import\n    return c\n")
    (root / "c.py").write_text("X = 1\n")
    (root / "unused.py").write_text("")
    (root / "uses_sub.py").write_text("from neuronaudit.sub.helper import thing\n")
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom neuronaudit.a import f\nfrom neuronaudit import uses_sub\n")
    return root, script


def test_closure_follows_relative_lazy_and_package_imports(tmp_path):
    root, script = _tree(tmp_path)
    names = {p.relative_to(root).as_posix() for p in import_closure([script], root)}
    assert names == {"__init__.py", "a.py", "b.py", "c.py", "uses_sub.py", "sub/__init__.py", "sub/helper.py"}


def test_editing_a_transitive_module_changes_the_hash(tmp_path):
    root, script = _tree(tmp_path)
    before = code_hash([script], root)
    (root / "unused.py").write_text("Y = 2\n")
    assert code_hash([script], root) == before
    (root / "c.py").write_text("X = 2\n")  # imported only by b, only inside a function
    assert code_hash([script], root) != before


def test_real_scripts_reach_the_modules_they_run():
    root = REPO / "src" / "neuronaudit"
    names = {p.relative_to(root).as_posix() for p in import_closure([REPO / "workflow/scripts/score_explanations.py"], root)}
    # aggregation.py was missing from the hand-kept list of the scoring stage
    assert {"scoring.py", "explanations.py", "io.py", "aggregation.py"} <= names
