from neuronaudit.device import resolve_device, set_threads
from neuronaudit.explainers.line.stage import (
    fingerprint,
    generative_backends,
    load_layer,
    offline_backends,
    run_shard,
    select_neurons,
    shard_neurons,
)
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
wc, inp, par = snakemake.wildcards, snakemake.input, snakemake.params
line, entry = par.line, par.entry
device = resolve_device(par.device)
with timed(log, f"LINE {wc.method} on {wc.model}/{wc.layer}, shard {wc.scatteritem}"):
    offline = (entry.get("params") or {}).get("backends", "offline") == "offline"
    data = load_layer(inp.manifest, inp.labels, inp.activations, par.split,
                      line["offline"]["split"] if offline else None, par.scoring_split, label=f"{wc.model}/{wc.layer}")
    neurons = shard_neurons(select_neurons(data.neurons, line["neurons_per_layer"], line["seed"]), wc.scatteritem)
    backends = (entry.get("params") or {}).get("backends", "offline")
    if backends == "offline":
        built = offline_backends(data, par.concept_model, inp.state, inp.embeddings, par.vocabulary, inp.labels, line,
                                 device="cpu")
    else:  # transformers LLM + diffusers pipeline + the target model on the generated images
        spec = dict(par.model)
        if "checkpoint" in inp.keys():
            spec["weights"] = inp.checkpoint
        built = generative_backends(data, line, spec, par.module, device)
    fp = fingerprint({"line": line, "entry": entry, "split": par.split, "code": par.code},
                     [inp.manifest, inp.labels, inp.activations, inp.embeddings, inp.state])
    run_shard(neurons, built, line, snakemake.params.checkpoints, fp, out=snakemake.output[0],
              meta=provenance(model=wc.model, layer=wc.layer, method=wc.method, shard=wc.scatteritem,
                              neurons=neurons, code=par.code))
