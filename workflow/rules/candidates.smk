rule candidate_index:
    """Candidate pool + decoys -> index sorted by monoisotopic mass (RDKit formula/mass)."""
    input:
        candidate_files,
    output:
        f"{RESULTS}/candidates/index.npz",
    log:
        f"{LOGS}/candidate_index.log",
    benchmark:
        f"{BENCHMARKS}/candidate_index.tsv"
    priority: 10
    conda:
        env("chem")
    container:
        image("chem")
    threads: config.get("threads", {}).get("candidates", 2)
    resources:
        mem_mb=scaled(6000),
        runtime=scaled(30),
    params:
        names=list(config["candidates"]["sources"].keys()),
    script:
        "../scripts/candidate_index.py"
