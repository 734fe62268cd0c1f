"""open_clip image-text models as concept models (the paper's SigLIP / CLIP; SPEC sec. 2).

    raw_{x,t} = cos(f_img(x), f_txt(t)),   [c_t]_x = sigmoid(a (raw_{x,t} + b))

with the raw concept string as the text (no prompt template). Any open_clip architecture works:
``pretrained`` is an open_clip pretrained tag (``"webli"``, ``"openai"``; downloaded from the hub, so
on users' machines), a local checkpoint file, or None (random initialisation: tests only). ``(a, b)``
is the published calibration of the architecture (:data:`~neuronaudit.concepts.calibration.PUBLISHED`,
e.g. ViT-SO400M-14-SigLIP-384 with webli: 58, -0.13), a given ``[a, b]``, or fitted with
:meth:`~neuronaudit.concepts.base.ConceptModel.fit_calibration`.

SigLIP models use a Hugging Face tokenizer that open_clip fetches from the hub; it must already be in
the local Hugging Face cache (``HF_HOME``) where the machine is offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuronaudit.concepts.base import ConceptModel, _as_concepts, parse_calibration
from neuronaudit.concepts.calibration import PUBLISHED
from neuronaudit.device import autocast, is_cuda, loader_workers


def published_calibration(arch: str) -> tuple[float, float] | None:
    """The paper's (a, b) for an open_clip architecture (``hf-hub:timm/<arch>`` names work too)."""
    key = arch.split("/")[-1] if arch.startswith("hf-hub:") else arch
    return PUBLISHED.get(key)


class OpenClipConceptModel(ConceptModel):
    backend = "open_clip"

    def __init__(
        self,
        arch: str,
        pretrained: str | None = None,
        calibration: Any = "published",
        device: str = "cpu",
        model_config: str | None = None,
        text_batch_size: int = 256,
    ) -> None:
        import open_clip  # deferred: open_clip loads only when this backend is used (~3 s)

        if model_config is not None:
            # a JSON model config (file or folder) registered under its file name, e.g. a tiny test model
            open_clip.add_model_config(model_config)
        known = set(open_clip.list_models())
        if arch not in known and not arch.startswith("hf-hub:"):
            import difflib

            raise ValueError(
                f"open_clip has no architecture {arch!r}; close matches: "
                f"{difflib.get_close_matches(arch, sorted(known), 5)} (see open_clip.list_models())"
            )
        tags = open_clip.list_pretrained_tags_by_model(arch) if arch in known else []
        if pretrained and pretrained not in tags and not Path(pretrained).exists():
            raise FileNotFoundError(
                f"open_clip {arch}: pretrained {pretrained!r} is neither one of its tags {tags} nor an existing file"
            )
        # the tokenizer first: it is what fails offline for SigLIP, before a large model is built
        try:
            self.tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types; re-raise with the fix
            raise RuntimeError(
                f"open_clip tokenizer for {arch!r} could not be built ({type(exc).__name__}: {exc}). SigLIP and "
                "other Hugging Face-tokenizer models fetch their tokenizer from the hub: it must be available "
                "locally. On a machine with internet access run "
                f"`python -c \"import open_clip; open_clip.get_tokenizer('{arch}')\"` and copy its Hugging Face "
                "cache (HF_HOME, default ~/.cache/huggingface) here, then set HF_HUB_OFFLINE=1."
            ) from exc
        self.name, self.arch, self.pretrained = arch, arch, pretrained
        self.model, _, self._preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained or None
        )
        self.model.eval()
        if calibration == "published":
            self.calibration = published_calibration(arch)
        elif calibration == "fit":
            self.calibration = None
        else:
            self.calibration = parse_calibration(calibration)
        self.text_batch_size = text_batch_size
        self.device = "cpu"
        self.to(device)
        self._dim: int | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> OpenClipConceptModel:
        if "arch" not in spec:
            raise ValueError(
                f"open_clip concept model spec {spec!r} needs 'arch' (e.g. 'ViT-SO400M-14-SigLIP-384')"
            )
        return cls(
            spec["arch"],
            pretrained=spec.get("pretrained"),
            calibration=spec.get("calibration", "published"),
            device=spec.get("device", "cpu"),
            model_config=spec.get("model_config"),
        )

    @property
    def image_transform(self):
        return self._preprocess

    @property
    def embedding_dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode_text(["a"]).shape[1])
        return self._dim

    def to(self, device: str) -> OpenClipConceptModel:
        if device != self.device:
            self.model.to(device)
            self.device = device
        return self

    def encode_images(self, source, batch_size: int = 64, device: str = "cpu", workers: int | None = None,
                      progress: bool = True):
        """:meth:`ConceptModel.encode_images` with the GPU path's decode workers
        (:func:`neuronaudit.device.loader_workers`: every core but one on CUDA, none on the CPU)."""
        return super().encode_images(source, batch_size, device, loader_workers(device, workers), progress)

    def _embed_batch(self, x):
        # bf16 autocast on CUDA (docs/gpu.md); float32 on the CPU as before
        with autocast(self.device):
            emb = self.model.encode_image(x, normalize=True)
        return emb.float() if is_cuda(self.device) else emb

    def encode_text(self, concepts: Sequence[str]) -> np.ndarray:
        import torch  # deferred with open_clip

        concepts = _as_concepts(concepts)
        out = []
        with torch.inference_mode():
            for s in range(0, len(concepts), self.text_batch_size):
                tokens = self.tokenizer(concepts[s : s + self.text_batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "arch": self.arch, "pretrained": self.pretrained}
