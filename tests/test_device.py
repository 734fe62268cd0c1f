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
