from neuronaudit.exclusions import Exclusions
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.stage import study_pairs, write_study_table

log = setup_job_log(snakemake.log[0])
s = snakemake.params.sampling
layers = [tuple(t) for t in snakemake.params.layers]
presence = dict(zip(snakemake.params.guides, snakemake.input.presence, strict=True))
excluded = Exclusions("study_pairs")  # what each layer's probing set left out -> pairs.excluded.parquet
with timed(log, f"pairs for {len(layers)} layer(s)"):
    pairs = study_pairs(
        snakemake.input.manifest,
        snakemake.input.labels,
        dict(zip(layers, snakemake.input.activations, strict=True)),
        presence,
        split=s["split"],
        min_positives=s["min_positives"],
        n_random_pairs=s["n_random_pairs"],
        neurons_per_layer=s["neurons_per_layer"],
        setting2_pairs=snakemake.params.setting2_pairs,
        floor=s["floor"],
        seed=s["seed"],
        exclusions=excluded,
    )
write_study_table(pairs, snakemake.output[0], meta=provenance(sampling=s, code=snakemake.params.code),
                  excluded=excluded)
