# Fidelity study (issue 11 item 5; docs/fidelity.md): why MG-IS's advantage over uniform sampling on
# this study differs from the paper's (~7x RCE at AUC 0.99-1, ~13x fewer inputs). The study's own
# Setting 1 pairs binned by concept prevalence, |rho| and guide AUC; a synthetic grid where the three
# are set by hand, through Setting 1's code; a figure and a summary. Config: the `fidelity:` block.


rule fidelity_synthetic:
    output:
        grid=f"{RESULTS}/fidelity/synthetic.parquet",
        table=report(
            f"{RESULTS}/tables/fidelity_synthetic.csv",
            caption="../report/fidelity_synthetic.rst",
            category="Fidelity study",
        ),
        coverage=report(
            f"{RESULTS}/tables/fidelity_coverage.csv",
            caption="../report/fidelity_coverage.rst",
            category="Fidelity study",
        ),
    log:
        f"logs/{STUDY}/fidelity/synthetic.log",
    benchmark:
        f"benchmarks/{STUDY}/fidelity/synthetic.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        settings=canon({k: v for k, v in config["fidelity"].items() if k != "enabled"}),
        gamma=config["sampling"]["gamma"],
        estimator=config["sampling"]["estimator"],
        table_n=config["sampling"]["table_n"],
        floor=config["sampling"]["floor"],
        code=script_code("fidelity.py"),
    script:
        "../scripts/fidelity.py"


rule fidelity_observed:
    input:
        rce=f"{RESULTS}/setting1/rce.parquet",
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
    output:
        pairs=f"{RESULTS}/fidelity/observed_pairs.parquet",
        table=report(
            f"{RESULTS}/tables/fidelity_observed.csv",
            caption="../report/fidelity_observed.rst",
            category="Fidelity study",
        ),
    log:
        f"logs/{STUDY}/fidelity/observed.log",
    benchmark:
        f"benchmarks/{STUDY}/fidelity/observed.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        split=config["sampling"]["split"],
        table_n=config["sampling"]["table_n"],
        floor=config["sampling"]["floor"],
        code=script_code("fidelity.py"),
    script:
        "../scripts/fidelity.py"


rule fidelity_figure:
    input:
        synthetic=f"{RESULTS}/tables/fidelity_synthetic.csv",
        observed=f"{RESULTS}/tables/fidelity_observed.csv",
        pairs=f"{RESULTS}/fidelity/observed_pairs.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/fidelity.png",
            caption="../report/fidelity.rst",
            category="Fidelity study",
        ),
        pdf=f"{RESULTS}/figures/fidelity.pdf",
        summary=f"{RESULTS}/fidelity/summary.json",
    log:
        f"logs/{STUDY}/fidelity/figure.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        settings={"dpi": config["report"]["dpi"]},
        code=script_code("fidelity.py"),
    script:
        "../scripts/fidelity.py"
