rule train_model:
    """Train one retrieval model family on the library's train fold (GPU if there is one)."""
    input:
        train=f"{RESULTS}/library/{LIB}.train.h5",
        val=f"{RESULTS}/library/{LIB}.val.h5",
        index=f"{RESULTS}/candidates/index.npz",
    output:
        model=f"{RESULTS}/models/{{family}}.safetensors",
        card=f"{RESULTS}/models/{{family}}.json",
        structures=f"{RESULTS}/models/{{family}}.train_structures.txt",
    log:
        f"{LOGS}/train_model/{{family}}.log",
    benchmark:
        f"{BENCHMARKS}/train_model/{{family}}.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: retrieval_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(240),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        config=lambda wc: config["models"]["train"].get(wc.family, {}),
        training_data=[config["library"]["path"]],  # the card's licence and attribution
    script:
        "../scripts/train_model.py"
