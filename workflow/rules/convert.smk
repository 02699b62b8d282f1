rule convert_run:
    """Raw run (mzML/mzXML via pyOpenMS, MGF/MSP via pyteomics/matchms) -> spectrum store."""
    input:
        run_input,
    output:
        temp(f"{RESULTS}/runs/{{sample}}/converted.h5"),
    log:
        f"{LOGS}/convert_run/{{sample}}.log",
    benchmark:
        f"{BENCHMARKS}/convert_run/{{sample}}.tsv"
    conda:
        env("openms")
    container:
        image("openms")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(30),
    params:
        # small-molecule runs are MS/MS: an MS1 record (SIRIUS/MZmine MGF) is quarantined
        # before it can take its MS2 partner's title (EI runs are read by their own rule)
        ms2_only=True,
        # a run file that cannot be read at all gives an empty store that says why (its
        # report and the batch report show it) instead of stopping the batch
        unreadable_run=True,
        source=run_fingerprint,
    script:
        "../scripts/convert.py"


rule convert_library:
    """Spectral library file -> spectrum store (matchms metadata harmonisation)."""
    input:
        config["library"]["path"],
    output:
        temp(f"{RESULTS}/library/{{library}}.converted.h5"),
    log:
        f"{LOGS}/convert_library/{{library}}.log",
    benchmark:
        f"{BENCHMARKS}/convert_library/{{library}}.tsv"
    priority: 10
    conda:
        env("openms")
    container:
        image("openms")
    threads: config.get("threads", {}).get("convert_library", 2)
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(60),
    script:
        "../scripts/convert.py"
