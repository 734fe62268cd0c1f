from neuronaudit.data.datasets import build_dataset
from neuronaudit.io import provenance, write_table
from neuronaudit.logs import setup_job_log

log = setup_job_log(snakemake.log[0])
manifest, labels = build_dataset(snakemake.params.dataset)
meta = provenance(dataset=snakemake.params.dataset, code=snakemake.params.code)
write_table(manifest, snakemake.output.manifest, meta)
write_table(labels, snakemake.output.labels, meta)
log.info("%d images (%s), %d concepts", len(manifest), manifest["split"].value_counts().to_dict(), labels["concept"].nunique())
