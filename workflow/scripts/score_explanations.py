from pathlib import Path

from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.automated import score_layer

log = setup_job_log(snakemake.log[0])
wc, inp = snakemake.wildcards, snakemake.input
methods = snakemake.params.methods
presence = {k.removeprefix("presence_"): v for k, v in inp.items() if k.startswith("presence_")}
with timed(log, f"scoring {wc.model}/{wc.layer} {methods} with {['label'] * snakemake.params.labels + list(presence)}"):
    score_layer(
        {Path(p).stem: p for p in inp.explanations},  # file name = method name
        {Path(p).stem: p for p in snakemake.output},
        activations_path=inp.activations,
        manifest_path=inp.manifest,
        labels_path=inp.labels,
        presence_paths=presence,
        label_scoring=snakemake.params.labels,
        split=snakemake.params.split,
        model=wc.model,
        layer=wc.layer,
        meta={"code": snakemake.params.code},
    )
