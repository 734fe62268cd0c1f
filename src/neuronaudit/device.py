"""Run-time choices shared by the model stages: device, threads, and the GPU path's settings.

On the CPU nothing here changes what the stages do. On CUDA the model stages (activation extraction,
concept-model embedding) decode images in DataLoader workers (:func:`loader_workers`), copy pinned
batches to the GPU without blocking, run the forward pass under bf16 autocast (:func:`autocast`) with
cuDNN autotuning on (:func:`prepare_cuda`); docs/gpu.md has the measured throughput.
"""

from __future__ import annotations

import contextlib
import os

#: most decode workers the GPU path starts by default (more rarely pays: the GPU or the copy limits)
MAX_GPU_WORKERS = 16


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


def is_cuda(device: str) -> bool:
    """True for ``cuda`` / ``cuda:N`` when CUDA is really there (a CPU-only machine stays on the CPU path)."""
    import torch  # deferred: importing this module (every job script) does not load torch

    return str(device).startswith("cuda") and torch.cuda.is_available()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: a Slurm or cgroup allotment), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_workers(device: str, workers: int | None = None) -> int:
    """DataLoader decode workers for a model stage on ``device``.

    An explicit ``workers`` wins. On the CPU the default is 0 (decode in the main process: the cores
    run the model). On CUDA it is every core but one, at most :data:`MAX_GPU_WORKERS`: JPEG decoding
    and resizing, not the GPU, limit small models there (docs/gpu.md).
    """
    if workers is not None:
        return max(0, int(workers))
    if not str(device).startswith("cuda"):
        return 0
    return max(1, min(MAX_GPU_WORKERS, available_cores() - 1))


def prepare_cuda() -> None:
    """Settings of the GPU path: cuDNN picks the fastest convolution for the (fixed) batch shape."""
    import torch  # deferred: importing this module (every job script) does not load torch

    torch.backends.cudnn.benchmark = True


def autocast(device: str, dtype: str = "bfloat16"):
    """bf16 autocast on CUDA (matrix products and convolutions in bf16, reductions in float32); on any
    other device a no-op context, so CPU results are unchanged float32."""
    import torch  # deferred: importing this module (every job script) does not load torch

    if is_cuda(device) and dtype not in (None, "float32"):
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return contextlib.nullcontext()
