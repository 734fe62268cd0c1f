import json

import torch

from neuronaudit.activations.train import fit_on_manifest
from neuronaudit.logs import setup_job_log
from neuronaudit.runtime import set_threads

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
model, metrics = fit_on_manifest(snakemake.input.manifest, **snakemake.params.model.get("train", {}))
torch.save(model.state_dict(), snakemake.output.checkpoint)
with open(snakemake.output.metrics, "w") as fh:
    json.dump(metrics, fh, indent=2)
log.info("metrics: %s", metrics)
