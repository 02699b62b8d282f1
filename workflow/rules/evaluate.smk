rule benchmark_inputs:
    """Benchmark queries (one fold) and MassSpecGym-style candidate sets, true molecule in."""
    input:
        queries=f"results/library/{LIB}.{BENCH['fold']}.h5",
        index="results/candidates/index.npz",
    output:
        queries="results/benchmark/queries.h5",
        candidates=expand(
            "results/benchmark/candidates.{kind}.tsv", kind=BENCH["candidate_kinds"]
        ),
        stats="results/benchmark/candidate_sets.json",
    log:
        "logs/benchmark_inputs.log",
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        kinds=BENCH["candidate_kinds"],
        benchmark=BENCH,
    script:
        "../scripts/benchmark_inputs.py"


rule benchmark_rank:
    """Rank every benchmark query's candidates with one method (train-fold library only)."""
    input:
        queries="results/benchmark/queries.h5",
        candidates="results/benchmark/candidates.{kind}.tsv",
        library=f"results/library/{LIB}.train.h5",
    output:
        "results/benchmark/rankings/{method}.{kind}.tsv",
    log:
        "logs/benchmark_rank/{method}.{kind}.log",
    benchmark:
        "benchmarks/benchmark_rank/{method}.{kind}.tsv"
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        search=config["library_search"],
        seed=BENCH["seed"],
    script:
        "../scripts/benchmark_rank.py"


rule evaluate:
    """The shared harness: Hit@1/5/20, MCES@1, bootstrap CIs -> MetricsRecord JSON."""
    input:
        rankings="results/benchmark/rankings/{method}.{kind}.tsv",
        queries="results/benchmark/queries.h5",
    output:
        metrics="results/benchmark/metrics/{method}.{kind}.json",
        per_query="results/benchmark/metrics/{method}.{kind}.per_query.tsv",
    log:
        "logs/evaluate/{method}.{kind}.log",
    benchmark:
        "benchmarks/evaluate/{method}.{kind}.tsv"
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset=LIB,
        fold=BENCH["fold"],
        n_boot=BENCH["n_boot"],
        mces=BENCH["mces"],
        seed=BENCH["seed"],
        config=BENCH,
    script:
        "../scripts/evaluate.py"
