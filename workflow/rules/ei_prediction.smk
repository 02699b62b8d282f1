# EI spectrum prediction (NEIMS v2, msid.ei): training data, the teacher / student / MLP run
# (models target), its leaderboard, `predict-ei` on the demo molecules and the in-silico
# library of the candidate pool.

EIP = config["ei_prediction"]


# commercial-use EI files, plus the non-commercial ones unless commercial_only
EIP_TRAINING_FILES = list(EIP["training_data"]) + (
    [] if EIP["commercial_only"] else list(EIP["noncommercial_data"])
)


# the decoy pool of the test library: the non-commercial run's is the upstream pool, which also
# holds the structures of the non-commercial spectra (kept out of the shipped open pool)
EIP_POOL = (
    EIP["pool"]
    if EIP["commercial_only"]
    else EIP.get("noncommercial_pool", EIP["pool"])
)


# EI models (NEIMS here, the LLM4MS embedder in ei_search.smk) trained on non-commercial
# spectra carry the licence in their file names
EI_LICENCE_SUFFIX = "" if EIP["commercial_only"] else "_cc-by-nc-sa"
NEIMS_MODELS = {
    k: f"{RESULTS}/models/neims_{k}{EI_LICENCE_SUFFIX}.safetensors"
    for k in ("teacher", "student", "mlp")
}
NEIMS_RUN = f"{RESULTS}/models/neims_run{EI_LICENCE_SUFFIX}.json"

if EIP["demo"]["enabled"]:
    FAMILY_BENCHMARK_OUTPUTS.append(f"{RESULTS}/bde/demo.h5")
    if os.path.exists(EIP["model"]):
        FAMILY_BENCHMARK_OUTPUTS.append(f"{RESULTS}/ei_prediction/demo_library.msp")
    else:
        print(
            f"ei_prediction: no model at {EIP['model']} (make models trains it); "
            "the EI prediction demo is left out",
            file=sys.stderr,
        )
if BENCH.get("enabled", True) and EIP["leaderboard"]:
    FAMILY_BENCHMARK_OUTPUTS += expand(
        f"{RESULTS}/leaderboard/ei_prediction.{{ext}}", ext=["md", "csv"]
    )


rule bde_set:
    """ALFABET BDEs of a named molecule set (`demo`: the demo SMILES) through msid-bde."""
    input:
        EIP["demo"]["smiles"],
    output:
        bde=f"{RESULTS}/bde/{{molset}}.h5",
        unhandled=f"{RESULTS}/bde/{{molset}}.unhandled.tsv",
    log:
        f"{LOGS}/bde/{{molset}}.log",
    benchmark:
        f"{BENCHMARKS}/bde/{{molset}}.tsv"
    wildcard_constraints:
        molset="demo",
    conda:
        env("bde")
    container:
        image("bde")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        cache=config["bde"]["cache"],
    shell:
        "msid-bde {input} --cache {params.cache} --out {output.bde}"
        " --unhandled {output.unhandled} --no-progress > {log} 2>&1"


rule ei_prediction_data:
    """EI training files -> one nominal-mass store with folds, and its molecule list."""
    input:
        training_files(EIP_TRAINING_FILES),
    output:
        store=f"{RESULTS}/ei_prediction/train.h5",
        molecules=f"{RESULTS}/ei_prediction/molecules.tsv",
    log:
        f"{LOGS}/ei_prediction/data.log",
    benchmark:
        f"{BENCHMARKS}/ei_prediction/data.tsv"
    conda:
        env("openms")
    container:
        image("openms")
    threads: 2
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    script:
        "../scripts/ei_predict_data.py"


rule ei_prediction_train:
    """Teacher (GNN+ECFP, BDE auxiliary), NEIMS-style MLP baseline and MoE student distilled
    from the teacher, in one run on the train fold; scored on the test fold."""
    input:
        store=f"{RESULTS}/ei_prediction/train.h5",
        bde=f"{RESULTS}/bde/bde.h5",
        pool=training_file(EIP_POOL),
    output:
        **NEIMS_MODELS,
        run=NEIMS_RUN,
    log:
        f"{LOGS}/ei_prediction/train.log",
    benchmark:
        f"{BENCHMARKS}/ei_prediction/train.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: neims_threads
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(90),
        gpu=GPU_COUNT,
        gres=GPU_GRES,
        slurm_partition=config["models"]["gpu_partition"],
    params:
        run=settled(EIP["run"]),
        training_files=EIP_TRAINING_FILES,  # the card's licence: what their records state
        suffix=EI_LICENCE_SUFFIX,
    script:
        "../scripts/ei_predict_train.py"


rule ei_prediction_leaderboard:
    """Teacher, student and MLP rows of the training run on the EI test fold."""
    input:
        NEIMS_RUN,
    output:
        md=f"{RESULTS}/leaderboard/ei_prediction.md",
        csv=f"{RESULTS}/leaderboard/ei_prediction.csv",
    log:
        f"{LOGS}/ei_prediction/leaderboard.log",
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(10),
    script:
        "../scripts/ei_predict_leaderboard.py"


rule ei_predict_demo:
    """`msid predict-ei` on the demo molecules with the shipped student."""
    input:
        smiles=EIP["demo"]["smiles"],
        model=EIP["model"],
    output:
        f"{RESULTS}/ei_prediction/demo_library.msp",
    log:
        f"{LOGS}/ei_prediction/demo.log",
    conda:
        env("torch")
    container:
        image("torch")
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(10),
    script:
        "../scripts/ei_predict_library.py"


rule insilico_library:
    """Predicted EI spectra of the whole candidate pool (27k + 1.58M MOSES) into one spectrum
    store, in chunks; a killed run resumes from the finished chunks."""
    input:
        pools=EIP["insilico"]["pools"],
        model=EIP["model"],
    output:
        f"{RESULTS}/ei_prediction/insilico_library.h5",
    log:
        f"{LOGS}/ei_prediction/insilico_library.log",
    benchmark:
        f"{BENCHMARKS}/ei_prediction/insilico_library.tsv"
    conda:
        env("torch")
    container:
        image("torch")
    threads: 2
    resources:
        mem_mb=scaled(8000),
        runtime=scaled(120),
    params:
        chunk_size=EIP["insilico"]["chunk_size"],
        chunks_dir=f"{RESULTS}/ei_prediction/insilico_chunks",
    script:
        "../scripts/insilico_library.py"
