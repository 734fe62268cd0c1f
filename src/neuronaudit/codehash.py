"""Which library code a pipeline script runs, found from its imports, and a hash of it.

Snakemake reruns a job when its script changes, but not when a library module the script imports
changes. Each rule therefore passes ``code=<hash>`` as a param (docs/caching.md); the hash covers the
script's *import closure*: every ``neuronaudit`` module it imports, the modules those import, and so
on (imports inside functions included), plus the package ``__init__`` files on the way. Nothing is
listed by hand, so a module imported only transitively still reruns the stage when it changes.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "neuronaudit"


def _module_file(root: Path, dotted: str) -> Path | None:
    """``neuronaudit.a.b`` -> ``root/a/b.py`` or ``root/a/b/__init__.py`` (root = src/neuronaudit)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(root: Path, file: Path) -> str:
    rel = file.relative_to(root).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=4096)
def _imports(file: Path, root: Path, mtime_ns: int) -> tuple[str, ...]:
    """Dotted names a file imports (absolute, ``neuronaudit`` only; ``from x import y`` gives x and x.y)."""
    tree = ast.parse(file.read_text(), filename=str(file))
    inside = file.is_relative_to(root)
    package = _module_name(root, file) if inside else ""
    if inside and file.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return tuple(sorted(n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")))


def import_closure(scripts: list[str | Path], root: str | Path) -> list[Path]:
    """Library files (under ``root`` = src/neuronaudit) that ``scripts`` import, directly or not."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    todo = [Path(s).resolve() for s in scripts]
    out: set[Path] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        if f.is_relative_to(root):
            out.add(f)
        for name in _imports(f, root, f.stat().st_mtime_ns):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                target = _module_file(root, ".".join(parts[:i]))
                if target is not None and target not in seen:
                    todo.append(target)
    return sorted(out)


def code_hash(scripts: list[str | Path], root: str | Path, extra: list[str | Path] = ()) -> str:
    """Hash of the import closure of ``scripts`` (and any ``extra`` library files): a rule's ``code`` param."""
    root = Path(root).resolve()
    files = sorted(set(import_closure(scripts, root)) | {Path(e).resolve() for e in extra})
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
