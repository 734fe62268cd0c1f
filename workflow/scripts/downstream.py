from neuronaudit.io import write_csv
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.automated import downstream_study

log = setup_job_log(snakemake.log[0])
activations = {tuple(k.split("/")): v for k, v in snakemake.params.activations.items()}
with timed(log, "downstream evaluation (Table 5)"):
    per_class, summary = downstream_study(
        list(snakemake.input.explanations),
        activations,
        snakemake.input.manifest,
        snakemake.input.labels,
        split=snakemake.params.split,
        text_model=snakemake.params.text_model,
    )
write_csv(summary, snakemake.output.summary)
write_csv(per_class, snakemake.output.classes)
log.info("table 5 (mean AUC per method):\n%s", summary.to_string(index=False))
