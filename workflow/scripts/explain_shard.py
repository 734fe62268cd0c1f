from neuronaudit.device import resolve_device, set_threads
from neuronaudit.explainers.stage import explain_layer, parse_shard
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
wc, inp, par = snakemake.wildcards, snakemake.input, snakemake.params.explain
with timed(log, f"explaining {wc.model}/{wc.layer} with {wc.method}, shard {wc.scatteritem}"):
    explain_layer(
        par["methods"],
        {wc.method: snakemake.output[0]},
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
        shard=parse_shard(wc.scatteritem),
    )
