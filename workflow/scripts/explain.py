# One layer's explanations (rule explain: every method left to it, one file each) or one shard of a
# per-neuron method (rule explain_shard: the {scatteritem} wildcard says which; explain.smk).
from pathlib import Path

from neuronaudit.device import resolve_device, set_threads
from neuronaudit.explainers.stage import explain_layer, parse_shard
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
wc, inp, par = snakemake.wildcards, snakemake.input, snakemake.params.explain
methods = par["methods"]
shard = parse_shard(wc.scatteritem) if "scatteritem" in wc.keys() else None
if shard is None:
    outputs = {Path(out).stem: out for out in snakemake.output}  # file name = method name
    what = f"explaining {wc.model}/{wc.layer} with {list(methods)}"
else:
    outputs = {wc.method: snakemake.output[0]}
    what = f"explaining {wc.model}/{wc.layer} with {wc.method}, shard {wc.scatteritem}"
with timed(log, what):
    explain_layer(
        methods,
        outputs,
        manifest_path=inp.manifest,
        labels_path=inp.labels,
        activations_path=inp.activations,
        model=wc.model,
        layer=wc.layer,
        module=par["module"],
        split=snakemake.params.split,
        presence_paths={tuple(k.split("/")): v for k, v in par["presence"].items()},
        device=resolve_device(snakemake.params.device),
        meta={"code": snakemake.params.code},
        shard=shard,
    )
