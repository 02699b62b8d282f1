rule benchmark_inputs:
    """Benchmark queries (one fold) and MassSpecGym-style candidate sets, true molecule in."""
    input:
        queries=f"{RESULTS}/library/{LIB}.{BENCH['fold']}.h5",
        index=f"{RESULTS}/candidates/index.npz",
    output:
        queries=f"{RESULTS}/benchmark/queries.h5",
        candidates=expand(
            f"{RESULTS}/benchmark/candidates.{{kind}}.tsv",
            kind=BENCH["candidate_kinds"],
        ),
        stats=f"{RESULTS}/benchmark/candidate_sets.json",
        structures=f"{RESULTS}/benchmark/candidate_structures.tsv",
    log:
        f"{LOGS}/benchmark_inputs.log",
    benchmark:
        f"{BENCHMARKS}/benchmark_inputs.tsv"
    priority: 10
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        kinds=BENCH["candidate_kinds"],
        # only what shapes the queries and candidate sets: another method, n_boot or MCES
        # setting must not rebuild them (and rerun every ranking after them)
        benchmark=BENCH_INPUTS,
    script:
        "../scripts/benchmark_inputs.py"


rule benchmark_splits:
    """Per query: nearest training structure (Tanimoto) and its splits (inchikey, far)."""
    input:
        queries=f"{RESULTS}/benchmark/queries.h5",
        train=f"{RESULTS}/library/{LIB}.train.h5",
    output:
        f"{RESULTS}/benchmark/query_splits.tsv",
    log:
        f"{LOGS}/benchmark_splits.log",
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(10),
    params:
        far_max_tanimoto=BENCH["far_max_tanimoto"],
    script:
        "../scripts/benchmark_splits.py"


rule spectrum_blind_queries:
    """Control: each query keeps its precursor and truth but gets another structure's peaks."""
    input:
        f"{RESULTS}/benchmark/queries.h5",
    output:
        f"{RESULTS}/benchmark/queries.spectrum_blind.h5",
    log:
        f"{LOGS}/spectrum_blind_queries.log",
    priority: 10
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(10),
    params:
        seed=BENCH["seed"],
    script:
        "../scripts/spectrum_blind_queries.py"


rule benchmark_rank:
    """Rank every benchmark query's candidates with one method (train-fold library only), on
    the queries and on their spectrum-blind control in one job: the method, its model and the
    candidate structures are loaded once for both."""
    input:
        queries=f"{RESULTS}/benchmark/queries.h5",
        blind=f"{RESULTS}/benchmark/queries.spectrum_blind.h5",
        candidates=f"{RESULTS}/benchmark/candidates.{{kind}}.tsv",
        structures=f"{RESULTS}/benchmark/candidate_structures.tsv",
        library=f"{RESULTS}/library/{LIB}.train.h5",
        model=model_for_method,
    output:
        standard=f"{RESULTS}/benchmark/rankings/{{method}}.{{kind}}.standard.tsv",
        blind=f"{RESULTS}/benchmark/rankings/{{method}}.{{kind}}.spectrum_blind.tsv",
    log:
        f"{LOGS}/benchmark_rank/{{method}}.{{kind}}.log",
    benchmark:
        f"{BENCHMARKS}/benchmark_rank/{{method}}.{{kind}}.tsv"
    priority: 10
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
    params:
        search=SEARCH_SCORING,
        seed=BENCH["seed"],
    script:
        "../scripts/benchmark_rank.py"


rule mces_top1:
    """MCES@1 of every distinct (truth, top-1) pair over all methods' rankings, computed once
    in parallel: the methods share most of their wrong top-1 molecules."""
    input:
        rankings=expand(
            f"{RESULTS}/benchmark/rankings/{{method}}.{{kind}}.standard.tsv",
            method=BENCH["methods"],
            kind=BENCH["candidate_kinds"],
        ),
        queries=f"{RESULTS}/benchmark/queries.h5",
        candidates=expand(
            f"{RESULTS}/benchmark/candidates.{{kind}}.tsv",
            kind=BENCH["candidate_kinds"],
        ),
    output:
        f"{RESULTS}/benchmark/mces_top1.tsv",
    log:
        f"{LOGS}/mces_top1.log",
    benchmark:
        f"{BENCHMARKS}/mces_top1.tsv"
    # first when two cores free up: a two-core job waits while one-core jobs keep starting
    priority: 20
    conda:
        env("chem")
    container:
        image("chem")
    threads: 2
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(120),
    params:
        seed=BENCH["seed"],
    script:
        "../scripts/mces_top1.py"


rule evaluate:
    """The shared harness: Hit@1/5/20, MCES@1, bootstrap CIs -> MetricsRecord JSON, for the
    whole fold (inchikey split) and its queries far from training (far split)."""
    input:
        rankings=f"{RESULTS}/benchmark/rankings/{{method}}.{{kind}}.{{variant}}.tsv",
        queries=queries_for_variant,
        candidates=f"{RESULTS}/benchmark/candidates.{{kind}}.tsv",
        splits=f"{RESULTS}/benchmark/query_splits.tsv",
        mces=mces_for_variant,
        model=model_for_method,
    output:
        metrics=f"{RESULTS}/benchmark/metrics/{{method}}.{{kind}}.{{variant}}.json",
        metrics_far=f"{RESULTS}/benchmark/metrics/far/{{method}}.{{kind}}.{{variant}}.json",
        per_query=f"{RESULTS}/benchmark/metrics/{{method}}.{{kind}}.{{variant}}.per_query.tsv",
    log:
        f"{LOGS}/evaluate/{{method}}.{{kind}}.{{variant}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{method}}.{{kind}}.{{variant}}.tsv"
    conda:
        env("chem")
    container:
        image("chem")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(60),
    params:
        dataset=LIB,
        fold=BENCH["fold"],
        n_boot=BENCH["n_boot"],
        mces=lambda wc: BENCH["mces"] and wc.variant == "standard",
        seed=BENCH["seed"],
        config=lambda wc: {
            "fold": BENCH["fold"],
            **BENCH_INPUTS,
            "n_boot": BENCH["n_boot"],
            "mces": BENCH["mces"] and wc.variant == "standard",
            "far_max_tanimoto": BENCH["far_max_tanimoto"],
        },
        far_max_tanimoto=BENCH["far_max_tanimoto"],
    script:
        "../scripts/evaluate.py"
