rule preprocess_run:
    """matchms filter chain -> the run's spectrum store (bad records quarantined)."""
    input:
        f"{RESULTS}/runs/{{sample}}/converted.h5",
    output:
        f"{RESULTS}/runs/{{sample}}/spectra.h5",
    log:
        f"{LOGS}/preprocess_run/{{sample}}.log",
    benchmark:
        f"{BENCHMARKS}/preprocess_run/{{sample}}.tsv"
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(30),
    params:
        config=settled(config["preprocess"]["runs"]),
    script:
        "../scripts/preprocess.py"


rule preprocess_library:
    """Library store: filters + RDKit structure normalisation + folds by InChIKey block."""
    input:
        f"{RESULTS}/library/{{library}}.converted.h5",
    output:
        f"{RESULTS}/library/{{library}}.h5",
    log:
        f"{LOGS}/preprocess_library/{{library}}.log",
    benchmark:
        f"{BENCHMARKS}/preprocess_library/{{library}}.tsv"
    priority: 10
    conda:
        env("chem")
    container:
        image("chem")
    threads: config.get("threads", {}).get("preprocess_library", 2)
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(60),
    params:
        config=settled(config["preprocess"]["library"]),
    script:
        "../scripts/preprocess.py"


rule split_library:
    """One store per fold (split by InChIKey first block, never by spectrum)."""
    input:
        f"{RESULTS}/library/{{library}}.h5",
    output:
        train=f"{RESULTS}/library/{{library}}.train.h5",
        val=f"{RESULTS}/library/{{library}}.val.h5",
        test=f"{RESULTS}/library/{{library}}.test.h5",
    log:
        f"{LOGS}/split_library/{{library}}.log",
    benchmark:
        f"{BENCHMARKS}/split_library/{{library}}.tsv"
    priority: 10
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(30),
    script:
        "../scripts/split_library.py"
