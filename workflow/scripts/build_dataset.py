from neuronaudit.data.datasets import build_dataset, dataset_spec
from neuronaudit.data.images import max_failed_fraction
from neuronaudit.io import provenance, write_json, write_table
from neuronaudit.logs import setup_job_log

log = setup_job_log(snakemake.log[0])
# images.max_failed_fraction is read from the config, not a param: changing it reruns nothing
manifest, labels, report = build_dataset(
    snakemake.params.dataset, max_failed_fraction(snakemake.config), with_report=True
)
# the dataset block is recorded in the manifest: check_dataset_spec refuses a later config that differs
meta = provenance(dataset=dataset_spec(snakemake.params.dataset), code=snakemake.params.code)
write_table(manifest, snakemake.output.manifest, meta)
write_table(labels, snakemake.output.labels, meta)
write_json(report, snakemake.output.report)
log.info("%d images (%s), %d concepts; %d images skipped (listed in %s)", len(manifest),
         manifest["split"].value_counts().to_dict(), labels["concept"].nunique(), report["n_failed"],
         snakemake.output.report)
