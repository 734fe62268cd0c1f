import torch

from neuronaudit.activations.train import fit_on_manifest
from neuronaudit.data.datasets import check_dataset_spec
from neuronaudit.data.images import max_failed_fraction
from neuronaudit.device import set_threads
from neuronaudit.io import atomic_path, write_json
from neuronaudit.logs import setup_job_log

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
check_dataset_spec(snakemake.input.manifest, snakemake.config["dataset"])
model, metrics = fit_on_manifest(snakemake.input.manifest, max_failed_fraction=max_failed_fraction(snakemake.config),
                                 **snakemake.params.model.get("train", {}))
with atomic_path(snakemake.output.checkpoint) as tmp:
    torch.save(model.state_dict(), tmp)
write_json(metrics, snakemake.output.metrics)
log.info("metrics: %s", metrics)
