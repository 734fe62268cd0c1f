# Helpers of line.smk (rules there); helpers live in common*.smk, rules in the stage files.
# LINE (docs/line.md): every explain.methods entry with method: line, per (model, layer), sharded over
# neurons with scattergather (line.shards jobs; --set-scatter line=N): shard i-of-n explains every n-th
# neuron (no split job is needed), line_gather collects the n shards. Resumable: each shard keeps one
# checkpoint file per finished neuron under results/{study}/line/, which a rerun reads back.
LINE = config["line"]


def line_entry(method):
    if method not in LINE_METHODS:
        raise ValueError(f"{method!r} is not a LINE method; configured: {LINE_METHODS}")
    return canon(EXPLAIN["methods"][method])


def _check_line_config():
    off = LINE["offline"]
    if (
        LINE["cosy"]["enabled"]
        and LINE["cosy"]["concept_model"] not in scoring_concept_models()
    ):
        raise WorkflowError(
            f"line.cosy.concept_model = {LINE['cosy']['concept_model']!r}: not one of the scoring concept "
            f"models {scoring_concept_models()} (explain.scoring.concept_models), whose presence it reads"
        )
    if not LINE_METHODS:
        return
    concept_model_spec(off["concept_model"])
    vocabulary_spec(off["vocabulary"])
    vocabulary_spec(LINE["polysemanticity"]["reference_vocabulary"])
    if off["split"] in (EXPLAIN["split"], SCORING["split"]):
        raise WorkflowError(
            f"line.offline.split = {off['split']!r} is the probing or scoring split; LINE retrieves "
            "from a split the neuron is neither explained nor scored on (default: train)"
        )


_check_line_config()


def line_gpus(method):
    """A GPU for the generative backends (LLM + text-to-image); none for the offline variant."""
    backends = (line_entry(method).get("params") or {}).get("backends", "offline")
    return 0 if backends == "offline" else gpus()


def line_shard_inputs(wildcards):
    cm = LINE["offline"]["concept_model"]
    inputs = {
        "manifest": f"{RESULTS}/manifest.parquet",
        "labels": f"{RESULTS}/labels.parquet",
        "activations": f"{RESULTS}/activations/{wildcards.model}/{wildcards.layer}.parquet",
        "embeddings": f"{RESULTS}/embeddings/{cm}.parquet",
        "state": f"{RESULTS}/concept_models/{cm}.npz",
    }
    ckpt = model_checkpoint(wildcards.model)  # generative backends run the target model
    if ckpt:
        inputs["checkpoint"] = ckpt
    return inputs


def line_history_files():
    return [
        f"{RESULTS}/explanations/{model}/{layer}/{method}_history.parquet"
        for model in config["models"]
        for layer in model_spec(model)["layers"]
        for method in LINE_METHODS
    ]


def line_targets():
    """Every output of this stage (called by all_targets() in rule all)."""
    out = []
    if LINE_METHODS:
        out += line_history_files() + [f"{RESULTS}/tables/line_polysemanticity.csv"]
    if LINE["cosy"]["enabled"]:
        out += [f"{RESULTS}/tables/cosy.csv", f"{RESULTS}/figures/cosy.png"]
    return out


def cosy_activations():
    return {
        f"{model}/{layer}": f"{RESULTS}/activations/{model}/{layer}.parquet"
        for model in config["models"]
        for layer in model_spec(model)["layers"]
    }
