# Helpers and input functions of explain.smk; no rules.
from pathlib import Path


wildcard_constraints:
    method=r"[A-Za-z0-9_-]+",


EXPLAIN = config["explain"]
SCORING = EXPLAIN["scoring"]
DOWNSTREAM = config["downstream"]


def explain_method_spec(method):
    if method not in EXPLAIN["methods"]:
        raise ValueError(
            f"unknown explanation method {method!r}; configured: {sorted(EXPLAIN['methods'])}"
        )
    return canon(EXPLAIN["methods"][method])


def _check_explain_config():
    from neuronaudit.explainers.stage import check_method

    for name, entry in EXPLAIN["methods"].items():
        check_method(name, entry, config["concept_models"], config["vocabularies"])
    for cm in SCORING["concept_models"] or []:
        concept_model_spec(cm)
    if SCORING["concept_models"] == [] and not SCORING["labels"]:
        raise ValueError(
            "explain.scoring: no scorer; give concept_models or set labels: true"
        )
    for model in DOWNSTREAM["models"]:
        model_spec(model)
    for method in DOWNSTREAM["methods"] or []:
        explain_method_spec(method)


_check_explain_config()


def import_file(method, model, layer):
    template = EXPLAIN["methods"][method]["path"]
    try:
        return template.format(model=model, layer=layer)
    except (KeyError, IndexError, ValueError) as err:
        raise WorkflowError(
            f"explain.methods.{method}.path {template!r}: only {{model}} and {{layer}} may appear in "
            f"braces ({type(err).__name__}: {err}); fix the path"
        ) from None


def _check_import_paths():
    """An import whose path matches no file for any (model, layer) is an error naming the path; the
    layers without a file, when others have one, are skipped and listed on stderr."""
    import os
    import sys

    models = dict.fromkeys([*config["models"], *DOWNSTREAM["models"]])
    pairs = [(m, l) for m in models for l in model_spec(m)["layers"]]
    for name, entry in EXPLAIN["methods"].items():
        if entry["method"] != "import" or not pairs:
            continue
        found = {p for p in pairs if Path(import_file(name, *p)).is_file()}
        if not found:
            tried = list(dict.fromkeys(import_file(name, *p) for p in pairs))
            more = f" and {len(tried) - 3} more" if len(tried) > 3 else ""
            raise WorkflowError(
                f"explain.methods.{name}.path: {entry['path']!r} matches no file for any model and layer "
                f"(tried {', '.join(tried[:3])}{more}; relative paths are read from {os.getcwd()}); "
                f"fix the path, or remove the method {name!r} from explain.methods"
            )
        skipped = [f"{m}/{l}" for m, l in pairs if (m, l) not in found]
        if skipped:
            print(
                f"Note: explain.methods.{name}: no file {entry['path']!r} for {len(skipped)} of "
                f"{len(pairs)} layers, which are not imported: {', '.join(skipped)}",
                file=sys.stderr,
            )


_check_import_paths()


def explain_methods(model, layer):
    """Methods explaining (model, layer): every generator, and the imports whose file exists."""
    out = []
    for name, entry in EXPLAIN["methods"].items():
        if (
            entry["method"] != "import"
            or Path(import_file(name, model, layer)).is_file()
        ):
            out.append(name)
    return out


def explanation_files(models=None, methods=None, stage="explanations"):
    """Every (model, layer, method) file of ``stage`` (explanations or scores)."""
    files = []
    for model in models if models is not None else config["models"]:
        for layer in model_spec(model)["layers"]:
            for method in explain_methods(model, layer):
                if methods is None or method in methods:
                    files.append(f"{RESULTS}/{stage}/{model}/{layer}/{method}.parquet")
    return files


def score_files():
    return explanation_files(stage="scores")


def scoring_concept_models():
    names = SCORING["concept_models"]
    return list(config["concept_models"]) if names is None else list(names)


def presence_file(cm, vocabulary):
    """The pipeline's presence file of (cm, vocabulary) when it is a target, else None."""
    if [cm, vocabulary] in [list(p) for p in config.get("presence", [])]:
        return f"{RESULTS}/presence/{cm}/{vocabulary}.parquet"
    return None


GENERATED = [m for m, e in EXPLAIN["methods"].items() if e["method"] != "import"]
# LINE methods are made by their own rules (line.smk: sharded, resumable), not by the explain rule
LINE_METHODS = [m for m, e in EXPLAIN["methods"].items() if e["method"] == "line"]
IMPORTED = [m for m, e in EXPLAIN["methods"].items() if e["method"] == "import"]


# Sharding (docs/explain_stage.md "Sharding"): a per-neuron method (its explainer's per_neuron, in the
# registry) with more than one shard is explained by explain_shard jobs, shard i-of-n taking every
# n-th tile of 256 neurons (stage.TILE_NEURONS), and put back together by explain_gather into the same file.
# n is the method's own `shards:`, else explain.shards, which --set-scatter explain=N overrides.
scattergather:
    explain=EXPLAIN["shards"],


def method_shards(method):
    """Jobs per layer of a generated method (1: the method stays in the layer's explain job)."""
    from neuronaudit.explainers.registry import EXPLAINERS

    entry = EXPLAIN["methods"][method]
    if entry.get("shards") is not None:
        return int(entry["shards"])
    if method in LINE_METHODS or not EXPLAINERS[entry["method"]].per_neuron:
        return 1
    return len(gather.explain("{scatteritem}"))


# method -> shards, for the methods explained by explain_shard / explain_gather
SHARDED_METHODS = {
    m: method_shards(m)
    for m in GENERATED
    if m not in LINE_METHODS and method_shards(m) > 1
}
EXPLAIN_RULE_METHODS = [
    m for m in GENERATED if m not in LINE_METHODS and m not in SHARDED_METHODS
]


def _concept_model_sources(methods):
    """(concept model, vocabulary) pairs the methods read their presence from."""
    pairs = []
    for m in methods:
        entry = EXPLAIN["methods"][m]
        if entry["method"] != "import" and entry["presence"] != "label":
            pairs.append((entry["presence"], entry["vocabulary"]))
    return list(dict.fromkeys(pairs))


def concept_matrix_file(cm, vocab):
    """Where the explain jobs read (cm, vocab) from: the presence file, else this stage's split matrix."""
    return presence_file(cm, vocab) or f"{RESULTS}/similarity/{cm}/{vocab}.parquet"


def similarity_settings(wildcards):
    """Values and the largest max_concepts the methods reading (cm, vocab) need."""
    values, limits = set(), []
    for m in GENERATED:
        e = EXPLAIN["methods"][m]
        if (
            e["presence"] == wildcards.concept_model
            and e["vocabulary"] == wildcards.vocabulary
        ):
            values.add("score" if e["method"] == "clip_dissect" else "probability")
            limits.append(e["max_concepts"])
    if not values:
        raise ValueError(
            f"no explanation method reads {wildcards.concept_model}/{wildcards.vocabulary}"
        )
    return {
        "values": sorted(values),
        "max_concepts": None if None in limits else max(limits),
    }


def _layer_job_methods():
    """The generated methods whose presence the layer's explain job reads (the sharded ones' is read
    by their own shard jobs)."""
    return [m for m in GENERATED if m not in SHARDED_METHODS]


def _explain_entry(method):
    """The entry a method is run with: `shards` only says how many jobs run it, not what they compute."""
    return canon({k: v for k, v in EXPLAIN["methods"][method].items() if k != "shards"})


def explain_inputs(wildcards, methods=None):
    """The layer's activations, and per concept-model source its presence (or split similarity) file."""
    inputs = {
        "manifest": f"{RESULTS}/manifest.parquet",
        "labels": f"{RESULTS}/labels.parquet",
        "activations": f"{RESULTS}/activations/{wildcards.model}/{wildcards.layer}.parquet",
    }
    for cm, vocab in _concept_model_sources(methods or _layer_job_methods()):
        inputs[f"presence_{cm}_{vocab}"] = concept_matrix_file(cm, vocab)
    return inputs


def explain_params(wildcards, methods=None):
    sources = _concept_model_sources(methods or _layer_job_methods())
    return {
        "methods": {m: _explain_entry(m) for m in methods or EXPLAIN_RULE_METHODS},
        "module": model_spec(wildcards.model)["layers"][wildcards.layer],
        "presence": {f"{cm}/{v}": concept_matrix_file(cm, v) for cm, v in sources},
    }


def explain_shard_inputs(wildcards):
    """One shard of one method: the layer's activations and that method's presence file only."""
    return explain_inputs(wildcards, [wildcards.method])


def explain_shard_params(wildcards):
    return explain_params(wildcards, [wildcards.method])


def explain_shard_files(wildcards):
    """The n shard files explain_gather puts together (n: method_shards)."""
    n = SHARDED_METHODS[wildcards.method]
    return [
        f"{RESULTS}/explain_shards/{wildcards.model}/{wildcards.layer}/{wildcards.method}/shard_{i}-of-{n}.parquet"
        for i in range(1, n + 1)
    ]


def score_inputs(wildcards):
    methods = [wildcards.method] if hasattr(wildcards, "method") else GENERATED
    inputs = {
        "manifest": f"{RESULTS}/manifest.parquet",
        "labels": f"{RESULTS}/labels.parquet",
        "activations": f"{RESULTS}/activations/{wildcards.model}/{wildcards.layer}.parquet",
        "explanations": [
            f"{RESULTS}/explanations/{wildcards.model}/{wildcards.layer}/{m}.parquet"
            for m in methods
        ],
    }
    for cm in scoring_concept_models():
        inputs[f"presence_{cm}"] = f"{RESULTS}/scores/presence/{cm}.parquet"
    return inputs


def downstream_explanations():
    return explanation_files(DOWNSTREAM["models"], DOWNSTREAM["methods"])


def downstream_activations():
    return {
        f"{model}/{layer}": f"{RESULTS}/activations/{model}/{layer}.parquet"
        for model in DOWNSTREAM["models"]
        for layer in model_spec(model)["layers"]
    }


def explain_targets():
    """Every output of this stage (called by all_targets() in rule all)."""
    targets = explanation_files() + score_files()
    targets += [
        f"{RESULTS}/tables/table1_automated.csv",
        f"{RESULTS}/tables/table2_complex.csv",
        f"{RESULTS}/tables/runtime.csv",
    ]
    if DOWNSTREAM["models"]:
        targets += [
            f"{RESULTS}/tables/table5_downstream.csv",
            f"{RESULTS}/tables/table5_downstream_classes.csv",
        ]
    return targets

# A concept model's scores of a vocabulary on the probing split, for the (concept model, vocabulary)
# pairs that have no presence file: the text side is encoded once, not once per layer.
