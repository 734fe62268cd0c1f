"""Activation extraction: one forward pass per model feeds every requested layer.

For each layer a forward hook reduces the module's output to one scalar per neuron (SPEC sec. 1):

* ``mean`` (default for 4-D conv maps): spatial mean over H, W — ResNet-50 ``layer4`` style;
* ``cls`` (default for 3-D token sequences): the CLS token, ``output[:, 0]`` — ViT ``mlp[1]`` style;
* ``none`` (2-D outputs): as is.

``keep_maps`` additionally streams the pre-pool 2-D maps (N, C, H, W, float16) to a ``.npy`` memmap
for methods that need them. Rows are written in manifest order, streamed in row groups
(:class:`neuronaudit.io.MatrixWriter`), so peak memory does not grow with the number of images.
Images that cannot be decoded are skipped (no row), named in the log and the returned report
(written as ``extraction_report.json`` / ``features/{backbone}.report.json``), and the run fails, naming
them, only if more than ``images.max_failed_fraction`` of the images fail (docs/datasets.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from neuronaudit.activations.models import LoadedModel, resolve_module
from neuronaudit.data.images import (  # noqa: F401 (TooManyFailedImages re-exported)
    DEFAULT_MAX_FAILED_FRACTION,
    ImageSource,
    SkippedImages,
    TooManyFailedImages,
    iterate_batches,
)
from neuronaudit.device import autocast, is_cuda, loader_workers, prepare_cuda
from neuronaudit.io import MatrixWriter, write_json

log = logging.getLogger(__name__)


def pool_output(out: torch.Tensor, pooling: str = "auto") -> torch.Tensor:
    """Reduce a module output to (B, neurons): mean over space for maps, CLS token for sequences."""
    if isinstance(out, tuple | list):
        out = out[0]
    if pooling == "auto":
        pooling = {4: "mean", 3: "cls", 2: "none"}.get(out.dim())
        if pooling is None:
            raise ValueError(f"cannot pool a {out.dim()}-D output; set pooling explicitly")
    if pooling == "mean":
        return out.float().mean(dim=(2, 3))
    if pooling == "cls":
        return out[:, 0].float()
    if pooling == "tokens_mean":
        return out.float().mean(dim=1)
    if pooling == "none":
        return out.float().reshape(out.shape[0], -1)
    raise ValueError(f"unknown pooling {pooling!r}; use auto, mean, cls, tokens_mean or none")


@dataclass
class _Pending:
    """One batch's pooled outputs on their way to the host (``event`` marks their arrival on CUDA)."""

    indices: list[int]
    ids: list[str]
    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    event: Any = None


def _to_device(x: torch.Tensor, device: str, copy_stream) -> torch.Tensor:
    """Host batch -> ``device``; on CUDA a non-blocking copy from pinned memory on ``copy_stream``,
    which the compute stream waits for (so the copy overlaps the previous batch's forward pass)."""
    if copy_stream is None:
        return x.to(device)
    with torch.cuda.stream(copy_stream):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    compute = torch.cuda.current_stream(x.device)
    compute.wait_stream(copy_stream)
    x.record_stream(compute)
    return x


def _to_host(t: torch.Tensor, use_cuda: bool) -> torch.Tensor:
    """A device tensor -> host; on CUDA a non-blocking copy into pinned memory (read after the batch's
    event), on the CPU the tensor itself."""
    return t.to("cpu", non_blocking=True) if use_cuda else t.cpu()


@dataclass
class ExtractionReport:
    n_images: int = 0
    n_written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image_id, error naming the file)
    neurons: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # image_id -> URI of each failed image
    max_failed_fraction: float | None = None
    stage: str = "extract_activations"

    def skipped(self) -> SkippedImages:
        return SkippedImages(self.stage, self.n_images, [(i, self.sources.get(i, ""), e) for i, e in self.failed])

    def write(self, path: str | Path) -> None:
        """The per-run report: counts, neurons per layer, and every skipped image with its file and
        error (the same format as every other stage's skipped-images report, docs/datasets.md)."""
        out = self.skipped().to_dict(self.max_failed_fraction)
        out |= {"n_written": self.n_written, "neurons": self.neurons}
        write_json(out, path)

    @property
    def failed_fraction(self) -> float:
        return len(self.failed) / max(self.n_images, 1)


def extract_activations(
    source: ImageSource,
    loaded: LoadedModel,
    layers: dict[str, str],
    outputs: dict[str, str | Path],
    pooling: dict[str, str] | None = None,
    keep_maps: dict[str, str | Path] | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    workers: int | None = None,
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    stage: str = "extract_activations",
) -> ExtractionReport:
    """Run ``loaded.model`` over ``source`` once and write each layer's activations.

    ``layers`` maps a layer key (file name) to a module path; ``outputs`` maps the same keys to Parquet
    paths; ``keep_maps`` optionally maps keys to ``.npy`` paths for pre-pool maps.
    """
    pooling = pooling or {}
    keep_maps = keep_maps or {}
    use_cuda = is_cuda(device)
    model = loaded.model.to(device)
    if use_cuda:
        prepare_cuda()
        model = model.to(memory_format=torch.channels_last)
    modules = {key: resolve_module(model, path) for key, path in layers.items()}
    captured: dict[str, torch.Tensor] = {}

    def hook(key):
        def fn(_module, _inp, out):
            captured[key] = out

        return fn

    handles = [m.register_forward_hook(hook(k)) for k, m in modules.items()]
    writers: dict[str, MatrixWriter] = {}
    maps: dict[str, np.memmap] = {}
    report = ExtractionReport(n_images=len(source), max_failed_fraction=max_failed_fraction, stage=stage)
    copy_stream = torch.cuda.Stream(device=device) if use_cuda else None
    pbar = tqdm(total=len(source), desc="extract", unit="img", disable=not progress, mininterval=2)

    def flush(done: _Pending) -> None:
        """Write one batch whose pooled outputs are on (or on their way to) the host."""
        if done.event is not None:
            done.event.synchronize()
        for key, acts_t in done.acts.items():
            acts = acts_t.numpy()
            if key not in writers:
                report.neurons[key] = acts.shape[1]
                writers[key] = MatrixWriter(
                    outputs[key],
                    {"activation": acts.shape[1]},
                    columns=[str(i) for i in range(acts.shape[1])],
                    meta={**(meta or {}), "layer": layers[key], "pooling": pooling.get(key, "auto")},
                )
            writers[key].write(done.ids, activation=acts)
        for key, fmap in done.maps.items():
            if key not in maps:
                maps[key] = np.lib.format.open_memmap(
                    keep_maps[key], mode="w+", dtype=np.float16, shape=(len(source), *fmap.shape[1:])
                )
            maps[key][done.indices] = fmap.numpy() if fmap.dtype == torch.float16 else fmap.numpy().astype(np.float16)
        report.n_written += len(done.ids)

    try:
        pending: _Pending | None = None
        batches = iterate_batches(
            source, loaded.transform, batch_size=batch_size, workers=loader_workers(device, workers), device=device
        )
        with torch.inference_mode():
            for batch in batches:
                report.failed += [(str(source.image_ids[i]), err) for i, err in batch.failed]
                report.sources |= {str(source.image_ids[i]): str(source.uris[i]) for i, _ in batch.failed}
                pbar.update(len(batch.indices) + len(batch.failed))
                if batch.tensor is None:
                    continue
                x = _to_device(batch.tensor, device, copy_stream)
                captured.clear()
                with autocast(device):
                    model(x)
                done = _Pending(batch.indices, [source.image_ids[i] for i in batch.indices])
                for key in layers:
                    out = captured[key]
                    done.acts[key] = _to_host(pool_output(out, pooling.get(key, "auto")), use_cuda)
                    if key in keep_maps:
                        fmap = out[0] if isinstance(out, tuple | list) else out
                        if fmap.dim() == 4:
                            fmap = fmap.to(torch.float16) if use_cuda else fmap.float()
                            done.maps[key] = _to_host(fmap, use_cuda)
                if use_cuda:
                    done.event = torch.cuda.Event()
                    done.event.record()
                # one batch behind: the GPU runs this batch while the host writes the previous one
                # and the next one is decoded and copied (copy_stream)
                if pending is not None:
                    flush(pending)
                pending = done
            if pending is not None:
                flush(pending)
        report.skipped().finish(log, max_failed_fraction)
        if not writers:
            raise TooManyFailedImages(f"{stage}: no image to extract (the image list is empty)")
        for w in writers.values():
            w.close()
        for mm in maps.values():
            mm.flush()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        pbar.close()
        for h in handles:
            h.remove()
    log.info(
        "extracted %d images (%d skipped) for layers %s",
        report.n_written,
        len(report.failed),
        {k: report.neurons.get(k) for k in layers},
    )
    return report
