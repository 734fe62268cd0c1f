from neuronaudit.explainers.stage import gather_shards
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
wc = snakemake.wildcards
with timed(log, f"gathering {wc.method} on {wc.model}/{wc.layer} from {len(snakemake.input)} shards"):
    table = gather_shards(list(snakemake.input), snakemake.output[0])
    log.info("%s on %s/%s: %d rows, %d neurons", wc.method, wc.model, wc.layer, len(table), table["neuron"].nunique())
