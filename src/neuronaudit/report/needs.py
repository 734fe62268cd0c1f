"""What a study needs from outside the repository before its first job (issue 11, item 6).

:func:`study_needs` reads a (validated) config and lists the paths the user must provide (dataset root,
label CSV, vocabulary files, imported explanations, extra crowd answers), with whether each exists, and
the weights a run downloads on first use unless they are already in the local caches (torchvision /
timm / open_clip weights, the sentence-transformers text model of Table 5). :func:`needs_message` turns
that into the note the workflow prints when it parses a config whose paths are missing here, so
``snakemake -n --configfile config/paper.yaml`` says up front what a real run needs.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

__all__ = ["study_needs", "needs_message"]


def _exists(pattern: str, base: Path) -> bool:
    path = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    if "{" in pattern:  # a per-layer pattern such as imports/milan_{model}_{layer}.csv: any match
        return bool(glob.glob(re.sub(r"\{[^}]*\}", "*", str(path))))
    return path.exists()


def study_needs(config: dict, base: str | Path = ".") -> dict[str, list[tuple[str, str, bool]]]:
    """``{"paths": [(config key, path, exists)], "downloads": [(config key, what, False)]}``."""
    base = Path(base)
    paths: list[tuple[str, str, bool]] = []
    ds = config.get("dataset", {})
    if ds.get("root"):
        paths.append(("dataset.root", str(ds["root"]), _exists(str(ds["root"]), base)))
    if ds.get("labels_csv"):
        paths.append(("dataset.labels_csv", str(ds["labels_csv"]), _exists(str(ds["labels_csv"]), base)))
    for name, vocab in (config.get("vocabularies") or {}).items():
        if vocab.get("source") == "file" and vocab.get("path"):
            paths.append((f"vocabularies.{name}.path", vocab["path"], _exists(vocab["path"], base)))
    for name, spec in ((config.get("explain") or {}).get("methods") or {}).items():
        if spec.get("method") == "import" and spec.get("path"):
            paths.append((f"explain.methods.{name}.path", spec["path"], _exists(spec["path"], base)))
    crowd = config.get("crowd") or {}
    if crowd.get("enabled", True):
        for k, answer in enumerate(crowd.get("answers") or []):
            paths.append((f"crowd.answers[{k}]", answer, _exists(answer, base)))

    downloads: list[tuple[str, str, bool]] = []
    for name, m in (config.get("models") or {}).items():
        source = m.get("source")
        if source == "torchvision" and m.get("weights", "random") not in ("random", None):
            downloads.append((f"models.{name}", f"torchvision {m.get('arch')} weights {m['weights']}", False))
        elif source == "timm" and m.get("pretrained", True):
            downloads.append((f"models.{name}", f"timm {m.get('arch')} pretrained weights", False))
    for name, cm in (config.get("concept_models") or {}).items():
        if cm.get("backend") == "open_clip":
            downloads.append((f"concept_models.{name}", f"open_clip {cm.get('arch')} ({cm.get('pretrained')})", False))
    downstream = config.get("downstream") or {}
    if downstream.get("models"):
        downloads.append(("downstream.text_model", f"sentence-transformers {downstream.get('text_model')}", False))
    return {"paths": paths, "downloads": downloads}


def needs_message(config: dict, base: str | Path = ".", always: bool = False) -> str:
    """The note printed before any job: "" when every user path exists (unless ``always``)."""
    needs = study_needs(config, base)
    missing = [p for p in needs["paths"] if not p[2]]
    if not missing and not always:
        return ""
    lines = [f"Note: study {config.get('study')!r} needs, before its first job:"]
    if needs["paths"]:
        lines.append("  paths you provide (set them in the config or with --config):")
        lines += [f"    {key}: {path}  [{'found' if ok else 'MISSING here'}]" for key, path, ok in needs["paths"]]
    if needs["downloads"]:
        lines.append("  weights downloaded on first use unless already cached (a machine without internet needs them in"
                     " ~/.cache/torch, ~/.cache/huggingface):")
        lines += [f"    {key}: {what}" for key, what, _ in needs["downloads"]]
    return "\n".join(lines)
