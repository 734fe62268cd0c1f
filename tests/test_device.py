"""neuronaudit.device: device and thread choices of the model stages."""

import pytest
import torch

from neuronaudit.device import resolve_device, set_threads


def test_auto_picks_cuda_only_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device() == "cpu"  # auto is the default
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_explicit_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("mps") == "mps"  # passed through
    for dev in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError, match=f"device '{dev}' requested but CUDA is not available; set device: cpu or auto"):
            resolve_device(dev)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"


def test_set_threads_at_least_one():
    before = torch.get_num_threads()
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2
        set_threads(0)
        assert torch.get_num_threads() == 1
        set_threads(-3)
        assert torch.get_num_threads() == 1
        set_threads("1")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_loader_workers_cpu_none_cuda_all_cores_but_one(monkeypatch):
    import neuronaudit.device as dev

    assert dev.loader_workers("cpu") == 0  # the CPU path decodes in the main process, as before
    assert dev.loader_workers("cpu", 3) == 3 and dev.loader_workers("cuda", 0) == 0
    assert dev.loader_workers("cuda", -2) == 0
    monkeypatch.setattr(dev, "available_cores", lambda: 16)
    assert dev.loader_workers("cuda") == 15 and dev.loader_workers("cuda:1") == 15
    monkeypatch.setattr(dev, "available_cores", lambda: 96)
    assert dev.loader_workers("cuda") == dev.MAX_GPU_WORKERS
    monkeypatch.setattr(dev, "available_cores", lambda: 1)
    assert dev.loader_workers("cuda") == 1


def test_autocast_only_on_a_real_gpu(monkeypatch):
    from neuronaudit.device import autocast, is_cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not is_cuda("cuda") and not is_cuda("cpu")
    x = torch.randn(4, 4)
    with autocast("cuda"), autocast("cpu"):  # CUDA asked for but absent: plain float32
        assert (x @ x).dtype == torch.float32


def test_bench_gpu_skips_cleanly_without_a_gpu():
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no CUDA GPU: skipped"
