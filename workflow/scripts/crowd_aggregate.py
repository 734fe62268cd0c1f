"""Rule crowd_aggregate: ratings -> soft presence -> each explanation's estimated score with its interval
(neuronaudit.crowd.aggregate; docs/evaluation.md "Scores from real ratings")."""

from neuronaudit.crowd.aggregate import DEFAULT_AGGREGATIONS, aggregate_crowd
from neuronaudit.crowd.ratings import read_store
from neuronaudit.io import provenance, read_table, write_table
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
agg = dict(p.aggregate or {})
truth_path = getattr(i, "truth", None)
truth = read_table(truth_path) if truth_path else None
with timed(log, "crowd aggregation"):
    res = aggregate_crowd(
        read_table(i.explanations),
        read_table(i.design),
        read_table(i.item_table),
        read_store(i.ratings),
        methods=agg.get("methods") or DEFAULT_AGGREGATIONS,
        beta=float(agg.get("beta", 0.05)),
        eta=agg.get("eta"),
        level=float(agg.get("level", 0.95)),
        estimator=agg.get("estimator", "unbiased"),
        truth=truth,
        planned_raters=getattr(p, "raters_per_input", None) or agg.get("raters_per_input"),
    )
meta = provenance(aggregate=agg, summary=res.summary, excluded=res.excluded.summary(), code=p.code)
write_table(res.estimates, o.estimates, meta=meta)
write_table(res.presence, o.presence, meta=meta)
res.excluded.write(o.estimates)
log.info("summary: %s", res.summary)
