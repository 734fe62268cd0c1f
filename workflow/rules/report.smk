# Figures drawn from the summary tables (src/neuronaudit/report/figures.py).


rule figures:
    input:
        setting1=f"{RESULTS}/tables/setting1_rce.csv",
        table4=f"{RESULTS}/tables/table4_auc_bins.csv",
        setting2=f"{RESULTS}/tables/setting2_cost.csv",
        table1=f"{RESULTS}/tables/table1_automated.csv",
        table2=f"{RESULTS}/tables/table2_complex.csv",
    output:
        setting1=f"{RESULTS}/figures/setting1_rce.png",
        table4=f"{RESULTS}/figures/table4_auc_bins.png",
        setting2=f"{RESULTS}/figures/setting2_cost.png",
        table1=f"{RESULTS}/figures/table1_automated.png",
        table2=f"{RESULTS}/figures/table2_complex.png",
    log:
        f"logs/{STUDY}/figures.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("figures.py"),
    script:
        "../scripts/figures.py"
