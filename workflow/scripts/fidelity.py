# Fidelity study (fidelity.smk; docs/fidelity.md): one entry point, three rules.
#   fidelity_synthetic: the synthetic (prevalence, rho, AUC) grid through Setting 1's code
#   fidelity_observed:  the study's own Setting 1 pairs, RCE ratio by prevalence, |rho|, guide AUC
#   fidelity_figure:    figures/fidelity.{png,pdf} and the summary
import json

import pyarrow.parquet as pq

from neuronaudit.io import atomic_path, provenance, read_table, write_csv, write_json, write_table
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies import fidelity

log = setup_job_log(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
rule = snakemake.rule

if rule == "fidelity_synthetic":
    s = dict(p.settings)
    with timed(log, "synthetic grid"):
        grid = fidelity.synthetic_grid(
            s["prevalences"], s["rhos"], s["aucs"], n_inputs=s["n_inputs"], pairs_per_cell=s["pairs_per_cell"],
            ns=s["ns"], seeds=s["seeds"], gamma=p.gamma, estimator=p.estimator, rng=s["rng"], n_threads=1,
        )
    n = fidelity.nearest_n(s["ns"], p.table_n)
    table = fidelity.ratio_table(grid, n=n, floor=p.floor)
    coverage = fidelity.planted_coverage(grid)
    log.info("%d synthetic rows, %d cells, table at n = %d", len(grid), grid["cell"].nunique(), n)
    write_table(grid, o.grid, meta=provenance(settings=s, gamma=p.gamma, estimator=p.estimator))
    write_csv(table, o.table)
    write_csv(coverage, o.coverage)

elif rule == "fidelity_observed":
    # only the two samplers at the Table 4 sample size are read from the (large) gathered grid
    n = fidelity.nearest_n(pq.read_table(i.rce, columns=["n"]).column("n").unique().to_pylist(), p.table_n)
    rce = pq.read_table(
        i.rce, columns=["concept_model", "pair", "concept", "sampler", "n", "rho", "rce", "guide_auc"],
        filters=[("n", "=", n), ("sampler", "in", ["uniform", "mg_is"])],
    ).to_pandas()
    manifest = read_table(i.manifest, columns=["image_id", "split"])
    ids = manifest.loc[manifest["split"] == p.split, "image_id"]
    prevalence = fidelity.concept_prevalence(read_table(i.labels, columns=["image_id", "concept", "present"]), ids)
    pairs = fidelity.observed_pairs(rce, prevalence, n=n, floor=p.floor)
    for reason, count in pairs.attrs["excluded"].items():
        log.info("excluded (guide, pair) rows: %d with %s", count, reason)
    table = fidelity.observed_tables(pairs)
    table.insert(0, "n", n)
    write_table(pairs, o.pairs, meta=provenance(n=n, floor=p.floor, excluded=pairs.attrs["excluded"]))
    write_csv(table, o.table)
    log.info("%d (guide, pair) rows at n = %d; %d table rows", len(pairs), n, len(table))

elif rule == "fidelity_figure":
    import pandas as pd

    synthetic = pd.read_csv(i.synthetic)
    observed = pd.read_csv(i.observed)
    pairs = read_table(i.pairs)
    fig = fidelity.figure(synthetic, observed, dict(p.settings))
    for fmt in ("png", "pdf"):
        with atomic_path(o[fmt]) as tmp:
            fig.savefig(tmp, format=fmt, dpi=p.settings.get("dpi", 130), bbox_inches="tight")
        log.info("wrote %s", o[fmt])
    summary = fidelity.summary(synthetic, pairs)
    write_json(summary, o.summary)
    log.info("summary: %s", json.dumps(summary, default=str)[:2000])

else:
    raise ValueError(f"fidelity.py: unknown rule {rule!r}")
