PEP = config["peptides"]
PEPTIDE_LEADERBOARD_FILES = [
    "peptides.md",
    "peptides.csv",
    "peptides.png",
    "peptides_steps.csv",
    "peptides_steps.png",
    "peptides.json",
]

RUN_OUTPUTS["peptide"] = {
    "denovo": "denovo_peptides.tsv",
    "denovo_mztab": "denovo_peptides.mztab",
    "denovo_annotations": "denovo_annotations.json",
}
FAMILY_BENCHMARK_OUTPUTS += expand(
    f"{RESULTS}/leaderboard/{{name}}", name=PEPTIDE_LEADERBOARD_FILES
)


rule train_peptrm:
    """Train PepTRM on the train fold of the annotated peptide spectra plus synthetic spectra."""
    input:
        data=PEP["data"],
    output:
        model=f"{RESULTS}/models/peptrm.safetensors",
        card=f"{RESULTS}/models/peptrm.json",
        history=f"{RESULTS}/models/peptrm.history.json",
    log:
        f"{LOGS}/train_peptrm.log",
    benchmark:
        f"{BENCHMARKS}/train_peptrm.tsv"
    conda:
        env("peptides")
    container:
        image("peptides")
    threads: peptide_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(120),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        config=lambda wc: {**PEP.get("train", {}), "folds": PEP.get("folds", {})},
    script:
        "../scripts/peptides_train.py"


rule denovo_peptides:
    """De novo peptide sequences of a peptide run (shipped PepTRM): TSV, mzTab, annotations."""
    input:
        spectra=f"{RESULTS}/runs/{{sample}}/spectra.h5",
        model=PEP["model"],
    output:
        tsv=f"{RESULTS}/runs/{{sample}}/denovo_peptides.tsv",
        mztab=f"{RESULTS}/runs/{{sample}}/denovo_peptides.mztab",
        annotations=f"{RESULTS}/runs/{{sample}}/denovo_annotations.json",
    log:
        f"{LOGS}/denovo_peptides/{{sample}}.log",
    benchmark:
        f"{BENCHMARKS}/denovo_peptides/{{sample}}.tsv"
    conda:
        env("peptides")
    container:
        image("peptides")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
    params:
        decode=PEP.get("decode", {}),
        run=run_input,
        n_annotated=PEP.get("report_spectra", 8),
    script:
        "../scripts/peptides_denovo.py"


rule peptides_leaderboard:
    """PepTRM vs the DP baseline on the peptide test fold: metrics with CIs, curves, steps."""
    input:
        data=PEP["data"],
        model=PEP["model"],
    output:
        expand(f"{RESULTS}/leaderboard/{{name}}", name=PEPTIDE_LEADERBOARD_FILES),
    log:
        f"{LOGS}/peptides_leaderboard.log",
    benchmark:
        f"{BENCHMARKS}/peptides_leaderboard.tsv"
    conda:
        env("peptides")
    container:
        image("peptides")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
    params:
        folds=PEP.get("folds", {}),
        # not max_spectra (a run's cap): the leaderboard decodes its whole test fold
        decode={k: v for k, v in PEP.get("decode", {}).items() if k != "max_spectra"},
        dp=PEP.get("dp", {}),
        benchmark=PEP.get("benchmark", {}),
    script:
        "../scripts/peptides_leaderboard.py"
