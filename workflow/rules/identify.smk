rule identify_run:
    """Library search of a run against the whole spectral library (top-k per spectrum)."""
    input:
        queries="results/runs/{sample}/spectra.h5",
        library=f"results/library/{LIB}.h5",
    output:
        "results/runs/{sample}/identifications.tsv",
    log:
        "logs/identify_run/{sample}.log",
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        methods=config["identify"]["methods"],
        top_k=config["identify"]["top_k"],
        search=config["library_search"],
    script:
        "../scripts/identify_run.py"
