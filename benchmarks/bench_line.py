"""LINE's offline loop: where an iteration's time goes, and neurons per minute on this machine's cores.

    python benchmarks/bench_line.py            # the default study's lite0/head if results/default has it
    python benchmarks/bench_line.py --quick    # fewer neurons

Inputs: the default study's files (``results/default``: manifest, labels, lite0/head activations, ConSE
embeddings and calibration, the 20,000-word vocabulary), exactly what the ``line_shard`` job reads;
without them a synthetic layer of the same shape (random embeddings; the timings, not the concepts,
are the point) is used and the output says so.

Reported:
* set-up of a shard job (reading the layer, building the proposer, the retrieval index, the control
  sampler), once per job;
* per scored concept (10 starting classes + 10 iterations + the summary = 21 per neuron): proposer,
  retrieval generator, activation lookup, control sampling, and the rest (score, history update, record);
* neurons per minute in one process (one thread) and with one process per core (the shards of a layer
  running side by side, as Snakemake runs them with ``--cores 2``), measured, not extrapolated.
* with a CUDA GPU (or ``--gpu`` alone): images per second of a randomly initialised sd-turbo-sized pipeline (the SD 2.1 UNet /
  VAE / text-encoder shapes; weights cannot be downloaded here) at batch 5 through ``DiffusersGenerator``
  vs the bare pipeline call with the same prompts and generators (the wrapper's overhead).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "results" / "default"


class Timed:
    """Wraps a backend object: accumulates the seconds spent in one of its methods (or its call)."""

    def __init__(self, inner, method):
        self.inner, self.method, self.seconds, self.calls = inner, method, 0.0, 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        return wrapped

    def __call__(self, *a, **k):
        return self.__getattr__("__call__")(*a, **k)


def real_backends():
    import torch

    from neuronaudit.explainers.line.stage import load_layer, offline_backends

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_layer(RES / "manifest.parquet", RES / "labels.parquet", RES / "activations/lite0/head.parquet", "val",
                      "train", "test", label="lite0/head")
    t1 = time.perf_counter()
    spec = {"backend": "conse", "variant": 2, "input_size": 96, "calibration": "fit"}
    line = {"offline": {"concept_model": "conse", "split": "train", "vocabulary": "words"}}
    backends = offline_backends(data, spec, RES / "concept_models/conse.npz", RES / "embeddings/conse.parquet",
                                {"source": "wordfreq", "n": 20000}, RES / "labels.parquet", line)
    t2 = time.perf_counter()
    return data, backends, {"read layer": t1 - t0, "build backends": t2 - t1}


def synthetic_backends():
    from neuronaudit.explainers.line.generators import LookupActivations, RetrievalGenerator
    from neuronaudit.explainers.line.loop import ControlSampler
    from neuronaudit.explainers.line.proposers import EmbeddingProposer

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(20000)]
    table = {}

    def enc(texts):
        out = []
        for t in texts:
            if t not in table:
                v = np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384)
                table[t] = v / np.linalg.norm(v)
            out.append(table[t])
        return np.asarray(out, np.float32)

    t0 = time.perf_counter()
    classes = [f"class{i}" for i in range(10)]
    acts_p, acts_h = rng.normal(size=(5000, 1280)).astype(np.float32), rng.normal(size=(4000, 1280)).astype(np.float32)
    prop = EmbeddingProposer(vocab, enc)
    gen = RetrievalGenerator([f"h{i}" for i in range(4000)], rng.normal(size=(4000, 384)), enc)
    gen.precompute(vocab + classes)
    ctrl = ControlSampler(acts_p, rng.integers(10, size=5000), classes, enc(classes), prop.embed)

    class D:
        neurons = np.arange(1280)

    return D, (prop, gen, LookupActivations(acts_h), ctrl), {"build backends": time.perf_counter() - t0}


def build():
    if (RES / "embeddings/conse.parquet").is_file() and (RES / "activations/lite0/head.parquet").is_file():
        return "default study lite0/head", *real_backends()
    return "SYNTHETIC layer (no results/default)", *synthetic_backends()


def run_some(args):
    """One process: build the backends, run ``neurons``; returns (loop seconds, n)."""
    neurons, = args
    from threadpoolctl import threadpool_limits

    from neuronaudit.explainers.line.loop import LoopSettings, run_neuron

    threadpool_limits(1)

    _, _, backends, _ = build()
    t0 = time.perf_counter()
    for k in neurons:
        run_neuron(int(k), *backends, LoopSettings())
    return time.perf_counter() - t0, len(neurons)


def gpu_bench():
    import diffusers
    import torch
    import transformers

    from neuronaudit.explainers.line.generators import DiffusersGenerator, image_prompts

    dev = "cuda"
    unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                          use_linear_projection=True)
    vae = diffusers.AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                  layers_per_block=2)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(hidden_size=1024, intermediate_size=4096,
                                                                  num_hidden_layers=23, num_attention_heads=16,
                                                                  projection_dim=1024, hidden_act="gelu"))
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["a", "realistic", "photo", "of", "dog", "close-up", "wide", "shot", "view", "from", "above", "low",
             "angle", "natural", "light", "studio", "lighting", "soft", "diffuse", ","]
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "<pad>", *words])}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", pad_token="<pad>",
                                               model_max_length=77)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                             scheduler=diffusers.EulerDiscreteScheduler(steps_offset=1),
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False).to(dev, torch.float16)
    pipe.set_progress_bar_config(disable=True)
    gen = DiffusersGenerator(pipe, n_images=5, steps=1, guidance_scale=0.0, batch_size=5, device=dev, cache=0)
    prompts = image_prompts("dog", 5)

    def bare():
        g = [torch.Generator(dev).manual_seed(i) for i in range(5)]
        pipe(prompt=prompts, generator=g, num_inference_steps=1, guidance_scale=0.0)

    def ours():
        gen._cache.clear()
        gen.generate("dog")

    for f in (bare, ours):  # warm-up
        f()
    res = {}
    for name, f in (("bare pipeline call", bare), ("DiffusersGenerator", ours)) * 2:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            f()
        torch.cuda.synchronize()
        res.setdefault(name, []).append(25 / (time.perf_counter() - t0))
    for name, v in res.items():
        print(f"  {name:<22} {max(v):7.1f} images/s (batch 5, 512x512, 1 step, fp16; best of 2 x 5 calls)")
    print(f"  wrapper / bare: {max(res['DiffusersGenerator']) / max(res['bare pipeline call']):.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--gpu", action="store_true", help="only the diffusers throughput (needs CUDA)")
    args = ap.parse_args()
    if args.gpu:
        gpu_bench()
        return
    from threadpoolctl import threadpool_limits

    from neuronaudit.explainers.line.loop import LoopSettings, run_neuron

    threadpool_limits(1)  # as line_shard runs the loop
    what, data, (prop, gen, target, ctrl), setup = build()
    print(f"LINE offline loop on the {what}: {len(getattr(data, 'neurons', []))} neurons, vocabulary "
          f"{len(prop.vocabulary)}, held-out images {len(gen.emb)}")
    for k, v in setup.items():
        print(f"  set-up, {k:<16} {v:6.2f} s (once per shard job)")
    n = 8 if args.quick else 32
    neurons = np.random.default_rng(0).choice(data.neurons, n, replace=False)
    run_neuron(int(neurons[0]), prop, gen, target, ctrl, LoopSettings())  # warm
    tp, tg, tt, tc = Timed(prop, "propose"), Timed(gen, "generate"), Timed(target, "__call__"), Timed(ctrl, "sample")
    t0 = time.perf_counter()
    for k in neurons:
        run_neuron(int(k), tp, tg, tt, tc, LoopSettings())
    total = time.perf_counter() - t0
    steps = n * 21
    rest = total - tp.seconds - tg.seconds - tt.seconds - tc.seconds
    print(f"per scored concept (21 per neuron), {n} neurons, one thread:")
    for name, sec in (("proposer", tp.seconds), ("retrieval generator", tg.seconds), ("activation lookup", tt.seconds),
                      ("control sampling", tc.seconds), ("score+history+record", rest)):
        print(f"  {name:<22} {1e3 * sec / steps:7.3f} ms  ({100 * sec / total:4.1f} %)")
    print(f"  {'total':<22} {1e3 * total / steps:7.3f} ms; {total / n * 1e3:.1f} ms per neuron")
    print(f"neurons per minute, 1 process: {60 * n / total:.0f}")
    cores = min(2, os.cpu_count() or 1)
    halves = [neurons[i::cores] for i in range(cores)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(cores) as pool:
        out = pool.map(run_some, [(h,) for h in halves])
    wall_loops = max(s for s, _ in out)
    print(f"neurons per minute, {cores} processes side by side (loop time of the slower): "
          f"{60 * n / wall_loops:.0f}; with each process's set-up: {60 * n / (time.perf_counter() - t0):.0f}")
    import torch

    if torch.cuda.is_available():
        print("diffusers throughput (GPU):")
        gpu_bench()
    else:
        print("diffusers throughput: no CUDA GPU, skipped (python benchmarks/bench_line.py --gpu on a GPU machine)")


if __name__ == "__main__":
    main()
