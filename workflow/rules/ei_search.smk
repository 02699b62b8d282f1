# EI library matching (LLM4MS): the EI library store, its vector index, runs of kind `ei`,
# the embedding model (models target) and the EI leaderboard.

EI = config["ei_search"]
# what a built index depends on (msid.ei.index.BUILD_FIELDS): search-time settings
# (ef_search, re-rank depth, nprobe, threads) rebuild nothing
EI_INDEX_BUILD = {
    k: v
    for k, v in EI["index"].items()
    if k not in ("ef_search", "hnsw_refine_k", "nprobe", "refine_k", "threads")
}
EI_BENCH = EI["benchmark"]

RUN_OUTPUTS["ei"] = {
    "ei_spectra": "ei_spectra.h5",
    "ei_identifications": "ei_identifications.tsv",
    "ei_matches": "ei_matches.h5",
}
if BENCH.get("enabled", True) and EI_BENCH.get("enabled", True):
    FAMILY_BENCHMARK_OUTPUTS += expand(
        f"{RESULTS}/leaderboard/ei_search.{{ext}}", ext=["md", "csv"]
    )


# the configured EI libraries, plus the in-silico one when set: an input like any other, so
# results/ei_prediction/insilico_library.h5 is built by the insilico_library rule first and a
# missing file of another name stops the run with Snakemake's missing-input error (it is
# never left out silently)
EI_LIBRARY_FILES = list(EI["libraries"]) + (
    [EI["insilico_library"]] if EI.get("insilico_library") else []
)


rule ei_library:
    """EI library files (MSP/MGF) -> one nominal-mass EI store (structures standardised where given), less the
    records listed in `ei_search.library_exclude`."""
    input:
        **({"exclude": EI["library_exclude"]} if EI.get("library_exclude") else {}),
        libraries=EI_LIBRARY_FILES,
    output:
        f"{RESULTS}/ei/library.h5",
    log:
        f"{LOGS}/ei_search/library.log",
    benchmark:
        f"{BENCHMARKS}/ei_search/library.tsv"
    # long jobs off the benchmark's path: started early, not left to the end of a run
    priority: 5
    conda:
        env("llm")
    container:
        image("llm")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    script:
        "../scripts/ei_search_library.py"


rule ei_index:
    """Vector index of the EI library's embeddings, stored next to the library; rebuilt when
    the library or the model changes."""
    input:
        library=f"{RESULTS}/ei/library.h5",
        model=EI["model"],
    output:
        f"{RESULTS}/ei/library.index.json",
    log:
        f"{LOGS}/ei_search/index.log",
    benchmark:
        f"{BENCHMARKS}/ei_search/index.tsv"
    priority: 5
    conda:
        env("llm")
    container:
        image("llm")
    threads: config.get("threads", {}).get("ei_index", 2)
    resources:
        mem_mb=scaled(6000),
        runtime=ei_index_runtime,
    params:
        index=EI_INDEX_BUILD,
    script:
        "../scripts/ei_search_index.py"


rule ei_identify_run:
    """A GC-MS run (deconvoluted EI spectra, MSP/MGF) identified against the EI library."""
    input:
        queries=run_input,
        library=f"{RESULTS}/ei/library.h5",
        index=f"{RESULTS}/ei/library.index.json",
        model=EI["model"],
    output:
        spectra=f"{RESULTS}/runs/{{sample}}/ei_spectra.h5",
        identifications=f"{RESULTS}/runs/{{sample}}/ei_identifications.tsv",
        matches=f"{RESULTS}/runs/{{sample}}/ei_matches.h5",
    log:
        f"{LOGS}/ei_search/identify/{{sample}}.log",
    benchmark:
        f"{BENCHMARKS}/ei_search/identify/{{sample}}.tsv"
    priority: 5
    conda:
        env("llm")
    container:
        image("llm")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        method=EI["method"],
        top_k=EI["top_k"],
        index=EI["index"],
        source=run_fingerprint,
    script:
        "../scripts/ei_search_run.py"


rule ei_mztab_run:
    """A GC-MS run's EI identifications as mzTab-M 2.0 (MS level 1, no precursor); matches
    to predicted (in-silico) library spectra are reported at MSI level 3."""
    input:
        identifications=f"{RESULTS}/runs/{{sample}}/ei_identifications.tsv",
        spectra=f"{RESULTS}/runs/{{sample}}/ei_spectra.h5",
        library=f"{RESULTS}/ei/library.h5",
    output:
        f"{RESULTS}/runs/{{sample}}/ei_identifications.mztab",
    log:
        f"{LOGS}/ei_search/mztab/{{sample}}.log",
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(10),
    params:
        location=run_input,
    script:
        "../scripts/ei_mztab_run.py"


RUN_OUTPUTS["ei"]["mztab"] = "ei_identifications.mztab"
SEARCHED_LIBRARY["ei"] = f"{RESULTS}/ei/library.h5"


# training files of the embedder: the open ones, plus the non-commercial ones unless
# ei_prediction.commercial_only (one switch for every EI model); the model trained on them
# carries the licence in its name (EI_LICENCE_SUFFIX, ei_prediction.smk)
EI_TRAIN_DATA = list(EI["train"]["data"]) + (
    [] if EIP["commercial_only"] else list(EI["train"].get("noncommercial_data", []))
)
EI_TRAINED_MODEL = os.path.basename(EI["model"]).replace(
    "_cc-by-nc-sa", EI_LICENCE_SUFFIX
)


rule ei_train_embedding:
    """Fine-tune the spectrum-text language model (LLM2Vec stages) on the EI train fold."""
    input:
        training_files(EI_TRAIN_DATA),
    output:
        model=f"{RESULTS}/models/{{ei_model}}.safetensors",
        card=f"{RESULTS}/models/{{ei_model}}.json",
    log:
        f"{LOGS}/ei_search/train_{{ei_model}}.log",
    benchmark:
        f"{BENCHMARKS}/ei_search/train_{{ei_model}}.tsv"
    wildcard_constraints:
        ei_model="llm4ms[A-Za-z0-9_.-]*",
    conda:
        env("llm")
    container:
        image("llm")
    threads: embedding_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(90),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        embedding=EI["embedding"],
        train=EI["train"]["config"],
    script:
        "../scripts/ei_embed_train.py"


rule ei_benchmark:
    """Every EI method on the same test-fold queries and library (one run)."""
    input:
        data=EI_BENCH["datasets"],
        model=EI["model"],
    output:
        expand(
            f"{RESULTS}/ei/benchmark/{{method}}.metrics.json",
            method=EI_BENCH["methods"],
        ),
    log:
        f"{LOGS}/ei_search/benchmark.log",
    benchmark:
        f"{BENCHMARKS}/ei_search/benchmark.tsv"
    priority: 5
    conda:
        env("llm")
    container:
        image("llm")
    threads: config.get("threads", {}).get("ei_benchmark", 2)
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(60),
    params:
        methods=EI_BENCH["methods"],
        max_queries=EI_BENCH["max_queries"],
        n_boot=EI_BENCH["n_boot"],
        seed=EI_BENCH["seed"],
        index=EI["index"],
        outdir=lambda w, output: os.path.dirname(output[0]),
    script:
        "../scripts/ei_search_benchmark.py"


rule ei_leaderboard:
    """EI leaderboard: recall@1/@10 with bootstrap CIs, every method of the same run."""
    input:
        expand(
            f"{RESULTS}/ei/benchmark/{{method}}.metrics.json",
            method=EI_BENCH["methods"],
        ),
    output:
        md=f"{RESULTS}/leaderboard/ei_search.md",
        csv=f"{RESULTS}/leaderboard/ei_search.csv",
    log:
        f"{LOGS}/ei_search/leaderboard.log",
    conda:
        env("llm")
    container:
        image("llm")
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(5),
    script:
        "../scripts/ei_search_leaderboard.py"
