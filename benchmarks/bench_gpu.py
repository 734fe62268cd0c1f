"""GPU path benchmark (issue 12, item 5): end to end vs bare forward on one CUDA GPU, in images/s.

Where no CUDA GPU is present it prints "no CUDA GPU: skipped" and exits 0 (`make bench` runs it on
every machine). On a GPU it prints, for each model, with the same batch size and bf16 autocast:

* bare forward: the model alone on random inputs already on the GPU (channels-last, bf16 autocast),
  timed with CUDA events over whole batches; GFLOP per image (torch's FlopCounterMode) and the
  achieved TFLOP/s;
* decode only: the project's DataLoader (`iterate_batches`: PIL decode, resize, crop, normalise in
  worker processes, pinned memory) over the same JPEG files, with nothing on the GPU;
* end to end: the project's own stage code from JPEG files on disk to the output Parquet file:
  `extract_activations` for target models (hooks, pooling, Parquet matrix), `encode_images` +
  `write_embeddings` for open_clip concept models; and the ratio end to end / bare;
* a check that the end-to-end rows equal a float32 forward pass of the same images (relative error,
  or cosine for embeddings), so the pipelined writes are the right rows in the right order.

Models: ResNet-50 and ViT-B/16 (torchvision, random init: the same FLOPs as the trained ones; no
weights offline), EfficientNet-Lite0 (real weights), open_clip ViT-B-16 (random init), and a
50,000-image embedding pass with the open_clip ViT-SO400M-14-SigLIP-384 architecture (the paper's
concept model, 384 px, random init; its SigLIP text tokenizer is swapped for open_clip's bundled one,
which changes no image-tower FLOP). The synthetic JPEGs (500 x 375, the commonest ImageNet size,
quality 90) are written to local disk first, timed separately.

    python benchmarks/bench_gpu.py                    # the full run, about 6 minutes on one H100
    python benchmarks/bench_gpu.py --quick            # small sizes (smoke run; not the docs' figures)
    python benchmarks/bench_gpu.py --out DIR          # also writes DIR/bench_gpu.json
Figures and how to read them: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS: dict = {}
OUT: Path | None = None
WORKERS: int | None = None  # --workers; None: neuronaudit.device.loader_workers("cuda")


def say(msg: str = "") -> None:
    print(msg, flush=True)


def save() -> None:
    if OUT is not None:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_gpu.json").write_text(json.dumps(RESULTS, indent=1, default=float))


# -- synthetic JPEGs ---------------------------------------------------------------------------------
def _jpeg_chunk(args) -> int:
    from PIL import Image

    root, start, stop = args
    rng = np.random.default_rng(start)
    nbytes = 0
    for i in range(start, stop):
        base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
        a = np.asarray(base, dtype=np.int16) + rng.integers(-30, 31, (375, 500, 3), dtype=np.int16)
        path = f"{root}/{i:06d}.jpg"
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, quality=90)
        nbytes += os.path.getsize(path)
    return nbytes


def make_jpegs(root: Path, n: int, procs: int) -> list[str]:
    files = [f"{root}/{i:06d}.jpg" for i in range(n)]
    if all(os.path.exists(f) for f in files):  # --images of an earlier run
        say(f"reusing {n} JPEGs in {root}")
        return files
    root.mkdir(parents=True, exist_ok=True)
    step = 500
    chunks = [(str(root), s, min(n, s + step)) for s in range(0, n, step)]
    t = time.perf_counter()
    with mp.get_context("fork").Pool(procs) as pool:
        nbytes = sum(pool.map(_jpeg_chunk, chunks))
    dt = time.perf_counter() - t
    RESULTS["jpegs"] = {"n": n, "seconds": dt, "mean_kb": nbytes / n / 1024, "size": [500, 375], "procs": procs}
    say(f"wrote {n} synthetic JPEGs (500x375, q90, mean {nbytes / n / 1024:.0f} KB) in {dt:.1f} s with {procs} processes")
    save()
    return [f"{root}/{i:06d}.jpg" for i in range(n)]


# -- measurements ---------------------------------------------------------------------------------------
def gflop_per_image(fn, x) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        fn(x[:1])
    return fc.get_total_flops() / 1e9


def bare_ips(fn, shape, iters: int, reps: int = 3, channels_last: bool = True, dtype: str = "bfloat16") -> float:
    """Images/s of ``fn`` on random GPU inputs (two input sets, rotated), bf16 autocast, timed with CUDA
    events over ``iters`` back-to-back batches; the median of ``reps``."""
    import torch

    from neuronaudit.device import autocast

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xs = [torch.randn(shape, device="cuda").contiguous(memory_format=fmt) for _ in range(2)]
    rates = []
    with torch.inference_mode(), autocast("cuda", dtype):
        for i in range(3):
            fn(xs[i % 2])
        torch.cuda.synchronize()
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for i in range(iters):
                fn(xs[i % 2])
            end.record()
            end.synchronize()
            rates.append(shape[0] * iters / (start.elapsed_time(end) / 1000))
    return statistics.median(rates)


def decode_ips(files, transform, batch: int, workers: int) -> float:
    """Images/s of the project's DataLoader alone (decode, preprocess, collate, pin), nothing on the GPU."""
    from neuronaudit.data.images import ImageSource, iterate_batches

    src = ImageSource([Path(f).stem for f in files], files)
    t = time.perf_counter()
    n = sum(len(b.indices) for b in iterate_batches(src, transform, batch, workers, "cuda"))
    return n / (time.perf_counter() - t)


def cpu_ms_per_image(files, transform, n: int = 200) -> float:
    """Milliseconds of one core to decode and preprocess one image (open_image + the model's transform)."""
    from neuronaudit.data.images import open_image

    transform(open_image(files[0]))  # first call: lazy imports
    t = time.perf_counter()
    for f in files[:n]:
        transform(open_image(f))
    return (time.perf_counter() - t) / min(n, len(files)) * 1000


def gpu_decode_ips(files, batch: int) -> float:
    """Images/s of nvJPEG decoding on the GPU (torchvision.io.decode_jpeg, batched) plus a bicubic
    antialiased resize to 256, centre crop 224 and normalisation there: what a GPU decode path could
    reach (the project decodes with PIL on the CPU; docs/gpu.md)."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg, read_file

    def run(fs):
        n = 0
        for s in range(0, len(fs), batch):
            data = [read_file(f) for f in fs[s : s + batch]]
            imgs = torch.stack(decode_jpeg(data, device="cuda")).float()
            h, w = imgs.shape[-2:]
            scale = 256 / min(h, w)
            x = F.interpolate(imgs, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True)
            top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
            x = (x[..., top : top + 224, left : left + 224] / 255 - 0.45) / 0.225
            n += len(data)
        torch.cuda.synchronize()
        return n

    run(files[:batch])
    t = time.perf_counter()
    n = run(files)
    return n / (time.perf_counter() - t)


def h2d_ips(shape) -> float:
    """Images/s of pinned host -> GPU copies of float32 batches of ``shape``."""
    import torch

    x = torch.randn(shape).pin_memory()
    y = torch.empty(shape, device="cuda")
    y.copy_(x, non_blocking=True)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x, non_blocking=True)
    torch.cuda.synchronize()
    return 10 * shape[0] / (time.perf_counter() - t)


def ceilings(files, batch: int) -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    end.synchronize()
    tflops = 20 * 2 * 8192**3 / (start.elapsed_time(end) / 1000) / 1e12
    x = torch.randn(256 * 3 * 224 * 224).pin_memory()
    y = torch.empty_like(x, device="cuda")
    y.copy_(x, non_blocking=True)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x, non_blocking=True)
    torch.cuda.synchronize()
    gbs = 10 * x.numel() * 4 / (time.perf_counter() - t) / 1e9
    RESULTS["ceilings"] = {"bf16_matmul_tflops": tflops, "h2d_pinned_gbs": gbs}
    say(f"ceilings: bf16 8192^3 matmul {tflops:.0f} TFLOP/s; pinned host->GPU copy {gbs:.1f} GB/s")
    try:
        RESULTS["ceilings"]["gpu_decode_ips"] = gpu = gpu_decode_ips(files, batch)
        say(f"nvJPEG decode + resize/crop/normalise on the GPU (not the project's path): {gpu:.0f} images/s")
    except Exception as exc:  # noqa: BLE001 - an optional figure; the run goes on without it
        say(f"nvJPEG decode on the GPU: not measured ({type(exc).__name__}: {exc})")
    save()


# -- target models through extract_activations -----------------------------------------------------
TARGETS = {
    "resnet50": ({"source": "torchvision", "arch": "resnet50", "weights": "random"}, {"layer4": "layer4"}),
    "vit_b_16": (
        {"source": "torchvision", "arch": "vit_b_16", "weights": "random"},
        {"mlp11": "encoder.layers.encoder_layer_11.mlp[1]"},
    ),
    "efficientnet_lite0": ({"source": "efficientnet_lite", "variant": 0}, {"bn2": "bn2", "block5": "blocks.5"}),
}


def reference_rows(lm, layers: dict[str, str], files, pooling="auto") -> dict[str, np.ndarray]:
    """float32 (no autocast) forward of ``files`` with hooks: what the Parquet rows should hold."""
    import torch

    from neuronaudit.activations.extract import pool_output
    from neuronaudit.activations.models import resolve_module
    from neuronaudit.data.images import open_image

    got = {}
    hs = [resolve_module(lm.model, p).register_forward_hook(lambda _m, _i, o, k=k: got.__setitem__(k, o)) for k, p in layers.items()]
    try:
        x = torch.stack([lm.transform(open_image(f)) for f in files]).cuda()
        with torch.inference_mode():
            lm.model(x)
        return {k: pool_output(v, pooling).cpu().numpy() for k, v in got.items()}
    finally:
        for h in hs:
            h.remove()


def bench_target(name: str, files, batch: int, iters: int, work: Path, old_workers: bool) -> None:
    import torch

    from neuronaudit.activations.extract import extract_activations
    from neuronaudit.activations.models import load_model
    from neuronaudit.data.images import ImageSource
    from neuronaudit.device import loader_workers
    from neuronaudit.io import read_matrix

    spec, layers = TARGETS[name]
    lm = load_model(spec)
    size = lm.input_size
    workers = loader_workers("cuda", WORKERS)
    model = lm.model.cuda().to(memory_format=torch.channels_last).requires_grad_(False)
    torch.backends.cudnn.benchmark = True
    gflop = gflop_per_image(model, torch.randn(1, 3, size, size, device="cuda"))
    bare = bare_ips(model, (batch, 3, size, size), iters)
    bare64 = bare_ips(model, (64, 3, size, size), iters)
    fp32 = bare_ips(model, (64, 3, size, size), max(3, iters // 4), dtype="float32")
    dec = decode_ips(files, lm.transform, batch, workers)
    cpu_ms = cpu_ms_per_image(files, lm.transform)
    h2d = h2d_ips((batch, 3, size, size))

    def e2e(n_files, w, tag):
        src = ImageSource([Path(f).stem for f in n_files], n_files)
        outs = {k: work / f"{name}_{tag}_{k}.parquet" for k in layers}
        torch.cuda.synchronize()
        t = time.perf_counter()
        extract_activations(src, lm, layers, outs, batch_size=batch, device="cuda", workers=w, progress=False)
        return len(n_files) / (time.perf_counter() - t), outs

    e2e(files[: 2 * batch], workers, "warm")  # cuDNN autotuning, allocator
    ips, outs = e2e(files, workers, "e2e")
    row = {"batch": batch, "input": size, "gflop_per_image": gflop, "bare_ips": bare, "bare_ips_batch64": bare64, "bare_ips_fp32_batch64": fp32,
           "bare_tflops": bare * gflop / 1e3,
           "decode_ips": dec, "cpu_ms_per_image": cpu_ms, "h2d_ips": h2d, "e2e_ips": ips, "ratio": ips / bare, "workers": workers, "n": len(files)}
    if old_workers:
        row["e2e_ips_4_workers"] = e2e(files[: len(files) // 4], 4, "w4")[0]
    ref = reference_rows(lm, layers, files[:64])
    errs = {}
    for k in layers:
        m = read_matrix(outs[k])
        assert list(m.image_ids[:64]) == [Path(f).stem for f in files[:64]], "rows out of order"
        assert len(m.image_ids) == len(files) and np.isfinite(m["activation"]).all()
        got = m["activation"][:64]
        errs[k] = float(np.linalg.norm(got - ref[k]) / np.linalg.norm(ref[k]))
    row["rel_err_vs_fp32"] = errs
    RESULTS.setdefault("targets", {})[name] = row
    save()
    extra = f"; with the old 4 workers {row['e2e_ips_4_workers']:.0f}/s" if old_workers else ""
    say(
        f"{name:20s} {size}px batch {batch}: bare {bare:7.0f}/s ({gflop:.1f} GFLOP/img, {row['bare_tflops']:.0f} TFLOP/s) | "
        f"decode-only {dec:6.0f}/s ({workers} workers; {cpu_ms:.1f} ms/img/core) | H2D {h2d:6.0f}/s | end to end {ips:6.0f}/s -> "
        f"ratio {ips / bare:.2f}{extra} | rel. err vs fp32 {max(errs.values()):.1e}"
    )


# -- open_clip concept models through OpenClipConceptModel -------------------------------------------
def so400m_config(work: Path) -> tuple[str, str]:
    """ViT-SO400M-14-SigLIP-384 with its image tower unchanged and open_clip's bundled BPE tokenizer
    (the SigLIP tokenizer comes from the hub: not offline)."""
    import open_clip

    cfg = json.loads((Path(open_clip.__file__).parent / "model_configs" / "ViT-SO400M-14-SigLIP-384.json").read_text())
    cfg["text_cfg"].pop("hf_tokenizer_name", None)
    cfg["text_cfg"].pop("tokenizer_kwargs", None)
    cfg["text_cfg"]["vocab_size"] = 49408
    arch = "ViT-SO400M-14-384-randtok"  # no "siglip" in the name: open_clip would fetch the SigLIP tokenizer
    path = work / f"{arch}.json"
    path.write_text(json.dumps(cfg))
    return arch, str(path)


def bench_openclip(key: str, arch: str, model_config: str | None, files, batch: int, iters: int, work: Path) -> None:
    import torch

    from neuronaudit.concepts.backends import get_concept_model
    from neuronaudit.concepts.base import write_embeddings
    from neuronaudit.data.images import ImageSource
    from neuronaudit.device import loader_workers

    t = time.perf_counter()
    m = get_concept_model({"backend": "open_clip", "arch": arch, "model_config": model_config, "device": "cuda",
                           "calibration": [50.0, -0.1]})
    build = time.perf_counter() - t
    m.model.requires_grad_(False)
    from neuronaudit.data.images import open_image

    size = int(m.image_transform(open_image(files[0])).shape[-1])
    workers = loader_workers("cuda", WORKERS)
    gflop = gflop_per_image(m.model.encode_image, torch.randn(1, 3, size, size, device="cuda"))
    bare = bare_ips(m._embed_batch, (batch, 3, size, size), iters, channels_last=False)
    bare64 = bare_ips(m._embed_batch, (64, 3, size, size), iters, channels_last=False)
    fp32 = bare_ips(m.model.encode_image, (64, 3, size, size), max(3, iters // 4), channels_last=False, dtype="float32")
    dec = decode_ips(files[: min(len(files), 60 * batch)], m.image_transform, batch, workers)
    cpu_ms = cpu_ms_per_image(files, m.image_transform)
    src = ImageSource([Path(f).stem for f in files], files)
    m.encode_images(ImageSource(src.image_ids[: 2 * batch], src.uris[: 2 * batch]), batch, "cuda", WORKERS, progress=False)
    torch.cuda.synchronize()
    t = time.perf_counter()
    emb, failed = m.encode_images(src, batch, "cuda", WORKERS, progress=False)
    write_embeddings(work / f"{key}.parquet", src.image_ids, emb, m)
    dt = time.perf_counter() - t
    assert not failed and np.isfinite(emb).all()
    x = torch.stack([m.image_transform(open_image(f)) for f in files[:32]]).cuda()
    with torch.inference_mode():
        ref = m.model.encode_image(x, normalize=True).float().cpu().numpy()
    cos = float(np.min(np.sum(ref * emb[:32], axis=1) / np.linalg.norm(emb[:32], axis=1)))
    ips = len(files) / dt
    row = {"arch": arch, "batch": batch, "input": size, "gflop_per_image": gflop, "bare_ips": bare, "bare_ips_batch64": bare64, "bare_ips_fp32_batch64": fp32,
           "bare_tflops": bare * gflop / 1e3, "decode_ips": dec, "cpu_ms_per_image": cpu_ms, "e2e_ips": ips, "ratio": ips / bare, "n": len(files),
           "e2e_seconds": dt, "build_seconds": build, "workers": workers, "min_cos_vs_fp32": cos, "dim": emb.shape[1]}
    RESULTS.setdefault("concepts", {})[key] = row
    save()
    say(
        f"{key:20s} {size}px batch {batch}: bare {bare:7.0f}/s ({gflop:.1f} GFLOP/img, {row['bare_tflops']:.0f} TFLOP/s) | "
        f"decode-only {dec:6.0f}/s ({workers} workers; {cpu_ms:.1f} ms/img/core) | end to end {ips:6.0f}/s -> ratio {ips / bare:.2f} | "
        f"{len(files)} images in {dt / 60:.2f} min (+{build:.0f} s model build) | min cos vs fp32 {cos:.4f}"
    )


def main() -> None:
    global OUT, WORKERS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not the docs' figures")
    ap.add_argument("--out", type=Path, default=None, help="folder for bench_gpu.json")
    ap.add_argument("--images", type=Path, default=None, help="folder for the synthetic JPEGs (default: a temp dir)")
    ap.add_argument("--n-target", type=int, default=20000, help="images per end-to-end target-model run")
    ap.add_argument("--n-siglip", type=int, default=50000, help="images of the SO400M embedding pass")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--only", default="targets,openclip,siglip", help="comma list of: targets, openclip, siglip")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of target models: {', '.join(TARGETS)}")
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: the library's GPU default)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process (default: torch's)")
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        say("no CUDA GPU: skipped")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    logging.basicConfig(level=logging.WARNING)
    OUT, WORKERS = a.out, a.workers
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.n_target, a.n_siglip = min(a.n_target, 2048), min(a.n_siglip, 1024)
    only = set(a.only.split(","))
    import PIL

    from neuronaudit.device import available_cores, loader_workers

    props = torch.cuda.get_device_properties(0)
    RESULTS["device"] = {"gpu": props.name, "memory_gib": props.total_memory / 2**30, "cores": available_cores(),
                         "torch": torch.__version__, "pillow": PIL.__version__,
                         "workers": loader_workers("cuda", WORKERS), "main_threads": torch.get_num_threads()}
    say(f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB; {available_cores()} cores; torch {torch.__version__}; "
        f"Pillow {PIL.__version__}; batch {a.batch}, bf16 autocast, {loader_workers('cuda', WORKERS)} decode workers, "
        f"{torch.get_num_threads()} torch threads in the main process")
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        work = Path(tmp)
        n_jpeg = max(a.n_target if only & {"targets", "openclip"} else 0, a.n_siglip if "siglip" in only else 0)
        files = make_jpegs(a.images or work / "jpegs", n_jpeg, available_cores())
        ceilings(files[: min(len(files), 5120)], a.batch)
        # the paper's pass first (the headline figure), then the target models, then open_clip ViT-B-16
        iters = 5 if a.quick else 20
        if "siglip" in only:
            arch, cfg = so400m_config(work)
            bench_openclip("siglip_so400m_384", arch, cfg, files[: a.n_siglip], a.batch, max(3, iters // 4), work)
            torch.cuda.empty_cache()
        if "targets" in only:
            for name in a.targets.split(","):
                bench_target(name, files[: a.n_target], a.batch, iters, work, old_workers=name == "resnet50")
                torch.cuda.empty_cache()
        if "openclip" in only:
            bench_openclip("openclip_ViT-B-16", "ViT-B-16", None, files[: a.n_target], a.batch, iters, work)
    say(f"\nmodel                  bare img/s (bf16 batch {a.batch} | 64 | fp32 64)   decode-only img/s   end-to-end img/s   "
        "ratio e2e/bare")
    for group in ("targets", "concepts"):
        for k, r in RESULTS.get(group, {}).items():
            say(f"{k:22s} {r['bare_ips']:10.0f} | {r['bare_ips_batch64']:6.0f} | {r['bare_ips_fp32_batch64']:6.0f}"
                f"   {r['decode_ips']:17.0f}   "
                f"{r['e2e_ips']:16.0f}   {r['ratio']:5.2f}")
    if "siglip_so400m_384" in RESULTS.get("concepts", {}):
        r = RESULTS["concepts"]["siglip_so400m_384"]
        say(f"SigLIP-SO400M-384 pass over {r['n']} JPEGs: {r['e2e_seconds'] / 60:.2f} min end to end "
            f"(paper: ~20 min on one RTX 6000 Ada); JPEG generation {RESULTS['jpegs']['seconds']:.0f} s, timed apart")


if __name__ == "__main__":
    main()
