"""Check architecture names before any job runs (Snakemake calls this while it builds the DAG).

A typo in a timm, torchvision or open_clip architecture would otherwise pass ``snakemake -n`` and
fail only when its job starts, after earlier jobs have run. Looking a name up needs the package
imported (about a second for timm/torchvision, more for open_clip), so the workflow caches a passed
check per (names, package versions) and repeats it only when those change.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata as md
import json
from pathlib import Path
from typing import Any

_PACKAGES = ("timm", "torchvision", "open_clip_torch")


def names_to_check(models: dict[str, dict[str, Any]], concept_models: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(config key, source, architecture) for every entry whose name a package must know."""
    out = []
    for key, spec in sorted(models.items()):
        if spec.get("source") in ("timm", "torchvision"):
            out.append((f"models.{key}.arch", spec["source"], str(spec.get("arch") or spec.get("name"))))
    for key, spec in sorted(concept_models.items()):
        if spec.get("backend") == "open_clip" and not str(spec.get("arch", "")).startswith("hf-hub:"):
            out.append((f"concept_models.{key}.arch", "open_clip", str(spec.get("arch"))))
    return out


def _available(source: str) -> list[str]:
    if source == "timm":
        import timm  # deferred: each library loads only when its catalog is asked for

        return timm.list_models()
    if source == "torchvision":
        import torchvision.models as tvm  # deferred: see timm above

        return tvm.list_models()
    if source == "open_clip":
        import open_clip  # deferred: see timm above

        return open_clip.list_models()
    raise ValueError(source)


def unknown_names(entries: list[tuple[str, str, str]]) -> list[str]:
    """Error lines for the entries whose architecture the package does not know."""
    errors = []
    cache: dict[str, list[str]] = {}
    for key, source, arch in entries:
        if source not in cache:
            cache[source] = _available(source)
        if arch not in cache[source]:
            close = difflib.get_close_matches(arch, cache[source], 5)
            errors.append(f"{key}: {source} has no architecture {arch!r}; close matches: {close}")
    return errors


def check_names(
    models: dict[str, dict[str, Any]], concept_models: dict[str, dict[str, Any]], cache_dir: str | Path | None = None
) -> None:
    """Raise ValueError naming every unknown architecture; remember a pass in ``cache_dir``."""
    entries = names_to_check(models, concept_models)
    if not entries:
        return
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    key = hashlib.sha256(json.dumps([entries, versions]).encode()).hexdigest()[:16]
    stamp = Path(cache_dir) / f"names-{key}.ok" if cache_dir else None
    if stamp is not None and stamp.exists():
        return
    errors = unknown_names(entries)
    if errors:
        raise ValueError("unknown model architecture(s):\n  - " + "\n  - ".join(errors))
    if stamp is not None:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(entries) + "\n")
