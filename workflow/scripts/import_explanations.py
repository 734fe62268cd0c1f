from neuronaudit.explainers.stage import explain_layer
from neuronaudit.logs import setup_job_log

log = setup_job_log(snakemake.log[0])
wc, inp = snakemake.wildcards, snakemake.input
explain_layer(
    {wc.method: snakemake.params.entry},
    {wc.method: snakemake.output[0]},
    manifest_path=inp.manifest,
    labels_path=inp.labels,
    activations_path=inp.activations,
    model=wc.model,
    layer=wc.layer,
    module=snakemake.params.module,
    split=snakemake.params.split,
    import_paths={wc.method: inp.imported},
    meta={"code": snakemake.params.code},
)
