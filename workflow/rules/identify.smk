rule identify_run:
    """Every configured method on a run: library search, then the candidate rankers over pool
    candidates for spectra without a confident library hit."""
    input:
        unpack(identify_inputs),
        queries="results/runs/{sample}/spectra.h5",
        library=f"results/library/{LIB}.h5",
    output:
        "results/runs/{sample}/identifications.tsv",
    log:
        "logs/identify_run/{sample}.log",
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        identify=config["identify"],
        search=config["library_search"],
        model_dir=config["models"]["dir"],
        kind=run_kind,
    script:
        "../scripts/identify_run.py"
