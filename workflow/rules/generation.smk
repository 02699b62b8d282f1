GEN = config["generation"]
MODELS_DIR = config["models"]["dir"]


wildcard_constraints:
    glmr_fusion="concat|average|copy",


rule train_denovo:
    """De novo model: decoder pretrained on pool molecules (val/test structures left out),
    then trained on the train fold's spectra (GPU if there is one)."""
    input:
        train=f"{RESULTS}/library/{LIB}.train.h5",
        val=f"{RESULTS}/library/{LIB}.val.h5",
        test=f"{RESULTS}/library/{LIB}.test.h5",
        index=f"{RESULTS}/candidates/index.npz",
    output:
        model=f"{RESULTS}/models/denovo.safetensors",
        card=f"{RESULTS}/models/denovo.json",
        tokenizer=f"{RESULTS}/models/denovo.tokenizer.json",
    log:
        f"{LOGS}/train_denovo.log",
    benchmark:
        f"{BENCHMARKS}/train_denovo.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: generation_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(240),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        kind="denovo",
        # GLMR's settings train GLMR only: changing them retrains no de novo model
        config={k: v for k, v in GEN["train"].items() if k != "glmr"},
        training_data=[config["library"]["path"]],  # the card's licence and attribution
    script:
        "../scripts/generation_train.py"


GLMR_TRAIN_INPUTS = {
    "train": f"{RESULTS}/library/{LIB}.train.h5",
    "val": f"{RESULTS}/library/{LIB}.val.h5",
    "index": f"{RESULTS}/candidates/index.npz",
    "denovo": f"{RESULTS}/models/denovo.safetensors",
    "ranker": f"{RESULTS}/models/ranker.safetensors",  # the Ranker this run trains
}


rule train_glmr:
    """GLMR (cross-fusion): fusion + decoder from the de novo model, encoders frozen."""
    input:
        **GLMR_TRAIN_INPUTS,
    output:
        model=f"{RESULTS}/models/glmr.safetensors",
        card=f"{RESULTS}/models/glmr.json",
        tokenizer=f"{RESULTS}/models/glmr.tokenizer.json",
    log:
        f"{LOGS}/train_glmr/cross.log",
    benchmark:
        f"{BENCHMARKS}/train_glmr/cross.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: generation_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(240),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        kind="glmr",
        fusion="cross",
        config=GEN["train"],
        training_data=[config["library"]["path"]],
    script:
        "../scripts/generation_train.py"


rule train_glmr_ablation:
    """GLMR ablations: cross-fusion replaced by concatenation, averaging or copying."""
    input:
        **GLMR_TRAIN_INPUTS,
    output:
        model=f"{RESULTS}/models/glmr_{{glmr_fusion}}.safetensors",
        card=f"{RESULTS}/models/glmr_{{glmr_fusion}}.json",
        tokenizer=f"{RESULTS}/models/glmr_{{glmr_fusion}}.tokenizer.json",
    log:
        f"{LOGS}/train_glmr/{{glmr_fusion}}.log",
    benchmark:
        f"{BENCHMARKS}/train_glmr/{{glmr_fusion}}.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: generation_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(240),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        kind="glmr",
        fusion=lambda wc: wc.glmr_fusion,
        config=GEN["train"],
        training_data=[config["library"]["path"]],
    script:
        "../scripts/generation_train.py"


rule denovo_benchmark:
    """De novo leaderboard: model vs its spectrum-blind control and random generation."""
    input:
        queries=f"{RESULTS}/benchmark/queries.h5",
        blind=f"{RESULTS}/benchmark/queries.spectrum_blind.h5",
        index=f"{RESULTS}/candidates/index.npz",
        model=f"{MODELS_DIR}/denovo.safetensors",
        rescorer=(
            [f"{MODELS_DIR}/{GEN['denovo']['rescore_with']}.safetensors"]
            if GEN["denovo"]["rescore_with"]
            else []
        ),
    output:
        csv=f"{RESULTS}/leaderboard/denovo.csv",
        md=f"{RESULTS}/leaderboard/denovo.md",
    log:
        f"{LOGS}/denovo_benchmark.log",
    benchmark:
        f"{BENCHMARKS}/denovo_benchmark.tsv"
    # long jobs off the benchmark's path: started early, not left to the end of a run
    priority: 5
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(120),
    params:
        denovo=GEN["denovo"],
        benchmark=GEN["benchmark"],
        dataset=LIB,
        fold=BENCH["fold"],
    script:
        "../scripts/generation_denovo_benchmark.py"


rule glmr_benchmark:
    """GLMR vs the Ranker on the same mass candidates, controls, ablations, K sweep."""
    input:
        **{
            f"glmr_{f}": f"{MODELS_DIR}/glmr_{f}.safetensors"
            for f in GEN["glmr"]["ablations"]
        },
        queries=f"{RESULTS}/benchmark/queries.h5",
        blind=f"{RESULTS}/benchmark/queries.spectrum_blind.h5",
        candidates=f"{RESULTS}/benchmark/candidates.mass.tsv",
        ranker=f"{MODELS_DIR}/ranker.safetensors",
        glmr=f"{MODELS_DIR}/glmr.safetensors",
    output:
        csv=f"{RESULTS}/leaderboard/glmr.csv",
        md=f"{RESULTS}/leaderboard/glmr.md",
        sweep_csv=f"{RESULTS}/leaderboard/glmr_k_sweep.csv",
        sweep_md=f"{RESULTS}/leaderboard/glmr_k_sweep.md",
        sweep_png=f"{RESULTS}/leaderboard/glmr_k_sweep.png",
    log:
        f"{LOGS}/glmr_benchmark.log",
    benchmark:
        f"{BENCHMARKS}/glmr_benchmark.tsv"
    priority: 5
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(120),
    params:
        ablations=GEN["glmr"]["ablations"],
        k_sweep=GEN["glmr"]["k_sweep"],
        benchmark=GEN["benchmark"],
        dataset=LIB,
        fold=BENCH["fold"],
    script:
        "../scripts/generation_glmr_benchmark.py"


_GEN_SHIPPED = [
    f"{MODELS_DIR}/{m}.safetensors"
    for m in ["denovo", "glmr"] + [f"glmr_{f}" for f in GEN["glmr"]["ablations"]]
]
_GEN_MISSING = [p for p in _GEN_SHIPPED if not os.path.exists(p)]
if GEN["benchmark"]["enabled"] and _GEN_MISSING:
    print(
        f"generation: no model at {', '.join(_GEN_MISSING)} (make models trains them); "
        "the de novo and GLMR leaderboards are left out",
        file=sys.stderr,
    )
if GEN["benchmark"]["enabled"] and not _GEN_MISSING:
    FAMILY_BENCHMARK_OUTPUTS += [
        f"{RESULTS}/leaderboard/denovo.csv",
        f"{RESULTS}/leaderboard/denovo.md",
    ]
    # GLMR re-ranks the Ranker's mass candidates: only where the benchmark makes them
    if "mass" in BENCH["candidate_kinds"]:
        FAMILY_BENCHMARK_OUTPUTS += [
            f"{RESULTS}/leaderboard/glmr.csv",
            f"{RESULTS}/leaderboard/glmr.md",
            f"{RESULTS}/leaderboard/glmr_k_sweep.csv",
            f"{RESULTS}/leaderboard/glmr_k_sweep.md",
            f"{RESULTS}/leaderboard/glmr_k_sweep.png",
        ]
    else:
        print(
            "generation: benchmark.candidate_kinds has no 'mass': the GLMR leaderboard "
            "(which re-ranks mass candidates) is left out",
            file=sys.stderr,
        )
