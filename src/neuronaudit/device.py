"""Run-time choices shared by the model stages: device and threads."""

from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    import torch  # deferred: importing this module (every job script) does not load torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; set device: cpu or auto")
    return device


def set_threads(threads: int) -> None:
    import torch  # deferred: importing this module (every job script) does not load torch

    torch.set_num_threads(max(1, int(threads)))
