import json

from neuronaudit.explainers.line.stage import gather, load_layer, select_neurons
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
wc, inp, par = snakemake.wildcards, snakemake.input, snakemake.params
with timed(log, f"gathering LINE {wc.method} on {wc.model}/{wc.layer} from {len(inp.shards)} shards"):
    data = load_layer(inp.manifest, inp.labels, inp.activations, par.split, None, label=f"{wc.model}/{wc.layer}")
    chosen = select_neurons(data.neurons, par.line["neurons_per_layer"], par.line["seed"])
    params = json.loads(json.dumps({"line": par.line, **(par.entry.get("params") or {})}, default=str))
    table = gather(inp.shards, wc.method, snakemake.output.explanations, snakemake.output.history,
                   meta={"model": wc.model, "layer": wc.layer, "entry": par.entry, "split": par.split,
                         "params": params, "n_layer_neurons": int(data.n_layer_neurons),
                         "neurons_selected": len(chosen), "code": par.code},
                   exclusions=data.exclusions)
    log.info("%s on %s/%s: %d neurons explained", wc.method, wc.model, wc.layer, len(table))
