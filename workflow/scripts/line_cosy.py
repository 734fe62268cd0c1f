import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from neuronaudit.data.arrays import load_activations, split_rows  # noqa: E402
from neuronaudit.explainers.line.cosy import cosy_figure, cosy_scores, cosy_summary  # noqa: E402
from neuronaudit.io import atomic_path, read_meta, read_table, write_csv, write_table  # noqa: E402
from neuronaudit.logs import setup_job_log, timed  # noqa: E402
from neuronaudit.studies.scorers import read_scoring_presence  # noqa: E402

log = setup_job_log(snakemake.log[0])
inp, par = snakemake.input, snakemake.params
with timed(log, f"CoSy-style evaluation of {len(inp.explanations)} explanation files"):
    manifest = pd.read_parquet(inp.manifest)
    rows = split_rows(manifest, par.split)
    ids = manifest["image_id"].to_numpy()[rows]
    presence, concepts = read_scoring_presence(inp.presence, ids)
    acts = {}
    parts = []
    for path in inp.explanations:
        meta = read_meta(path)
        key = f"{meta['model']}/{meta['layer']}"
        if key not in acts:
            acts[key], _ = load_activations(par.activations[key], manifest, rows)
        table = read_table(path)
        if len(table):
            parts.append(cosy_scores(acts[key], presence, concepts, table, par.cosy["n_images"], meta["model"],
                                     meta["layer"]))
    per_neuron = pd.concat(parts, ignore_index=True)
    summary = cosy_summary(per_neuron, par.cosy["alpha"])
    write_table(per_neuron, snakemake.output.neurons, {"split": par.split, "cosy": par.cosy})
    write_csv(summary, snakemake.output.table)
    fig = cosy_figure(summary)
    with atomic_path(snakemake.output.figure) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    log.info("\n%s", summary.to_string(index=False))
