rule identify_run:
    """Every configured method on a run: library search, then the candidate rankers over pool
    candidates for spectra without a confident library hit."""
    input:
        unpack(identify_inputs),
        queries=f"{RESULTS}/runs/{{sample}}/spectra.h5",
        library=f"{RESULTS}/library/{LIB}.h5",
    output:
        f"{RESULTS}/runs/{{sample}}/identifications.tsv",
    log:
        f"{LOGS}/identify_run/{{sample}}.log",
    benchmark:
        f"{BENCHMARKS}/identify_run/{{sample}}.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        # not report_mirror_plots (the report's): another number of plots reruns no search
        identify=settled(
            {k: v for k, v in config["identify"].items() if k != "report_mirror_plots"}
        ),
        search=settled(config["library_search"]),
        model_dir=config["models"]["dir"],
        kind=run_kind,
        # de novo's settings only where it runs: another beam width reruns no other run
        denovo=(
            settled(config["generation"]["denovo"])
            if "denovo" in config["identify"]["methods"]
            else {}
        ),
    script:
        "../scripts/identify_run.py"


rule fdr_curve:
    """Estimated (target-decoy) vs true FDR of library search on the benchmark fold, each
    query's own spectrum left out of the library."""
    input:
        library=f"{RESULTS}/library/{LIB}.h5",
    output:
        tsv=f"{RESULTS}/benchmark/fdr_curve.tsv",
        json=f"{RESULTS}/benchmark/fdr_curve.json",
        png=report(
            f"{RESULTS}/benchmark/fdr_curve.png",
            caption="../report/fdr_curve.rst",
            category="Leaderboard",
        ),
    log:
        f"{LOGS}/fdr_curve.log",
    benchmark:
        f"{BENCHMARKS}/fdr_curve.tsv"
    conda:
        env("report")
    container:
        image("report")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        fold=BENCH["fold"],
        max_queries=BENCH["max_queries"] or 2000,
        seed=BENCH["seed"],
        search=SEARCH_SCORING,
    script:
        "../scripts/fdr_curve.py"


FAMILY_BENCHMARK_OUTPUTS.append(f"{RESULTS}/benchmark/fdr_curve.png")


rule mztab_run:
    """A run's identifications as mzTab-M 2.0 (SML/SMF/SME tables)."""
    input:
        identifications=f"{RESULTS}/runs/{{sample}}/identifications.tsv",
        spectra=f"{RESULTS}/runs/{{sample}}/spectra.h5",
        library=f"{RESULTS}/library/{LIB}.h5",  # named in the file by its digest
    output:
        f"{RESULTS}/runs/{{sample}}/identifications.mztab",
    log:
        f"{LOGS}/mztab_run/{{sample}}.log",
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(10),
    params:
        library=LIB,
        location=run_input,
    script:
        "../scripts/mztab_run.py"


RUN_OUTPUTS["small_molecule"]["mztab"] = "identifications.mztab"
SEARCHED_LIBRARY["small_molecule"] = f"{RESULTS}/library/{LIB}.h5"


rule compound_table:
    """A run's library hits grouped by structure: one row per compound found, with its
    spectra, best evidence and retention-time span."""
    input:
        identifications=f"{RESULTS}/runs/{{sample}}/identifications.tsv",
    output:
        f"{RESULTS}/runs/{{sample}}/compounds.tsv",
    log:
        f"{LOGS}/compound_table/{{sample}}.log",
    conda:
        env("report")
    container:
        image("report")
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(5),
    params:
        fdr=config["identify"]["fdr"],
        min_delta_score=config["identify"]["min_delta_score"],
    script:
        "../scripts/compound_table.py"


RUN_OUTPUTS["small_molecule"]["compounds"] = "compounds.tsv"
