from pathlib import Path

from neuronaudit.device import resolve_device, set_threads
from neuronaudit.explainers.stage import explain_layer
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
wc, inp, par = snakemake.wildcards, snakemake.input, snakemake.params.explain
methods = par["methods"]
with timed(log, f"explaining {wc.model}/{wc.layer} with {list(methods)}"):
    explain_layer(
        methods,
        {Path(out).stem: out for out in snakemake.output},  # file name = method name
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
    )
