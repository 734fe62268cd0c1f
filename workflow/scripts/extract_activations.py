from pathlib import Path

from neuronaudit.activations.extract import extract_activations
from neuronaudit.activations.models import load_model
from neuronaudit.data.datasets import check_dataset_spec
from neuronaudit.data.images import ImageSource, max_failed_fraction
from neuronaudit.device import resolve_device, set_threads
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
check_dataset_spec(snakemake.input.manifest, snakemake.config["dataset"])
spec = dict(snakemake.params.model)
if snakemake.input.checkpoint:
    spec["weights"] = snakemake.input.checkpoint
layers = spec["layers"]
outputs = dict(zip(layers, snakemake.output.acts, strict=True))
settings = snakemake.params.settings
with timed(log, f"extracting {snakemake.params.model_name} layers {list(layers)}"):
    report = extract_activations(
        ImageSource.from_manifest(snakemake.input.manifest),
        load_model(spec),
        layers,
        outputs,
        pooling=spec.get("pooling"),
        keep_maps={k: str(Path(outputs[k]).with_suffix(".maps.npy")) for k in spec.get("keep_maps", [])},
        batch_size=settings["batch_size"],
        device=resolve_device(snakemake.params.device),
        max_failed_fraction=max_failed_fraction(snakemake.config),  # images.max_failed_fraction
        meta=provenance(model=snakemake.params.model_name, spec=spec, code=snakemake.params.code),
        stage=f"extract_activations {snakemake.params.model_name}",
    )
report.write(snakemake.output.report)
log.info("failed images: %d (listed in %s)", len(report.failed), snakemake.output.report)
