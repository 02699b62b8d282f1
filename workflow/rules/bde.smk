# Bond dissociation energies (ALFABET) of the EI training molecules, in the bde environment.
# The command `msid-bde` exists only there (envs/bde.yaml; locally the .venv-bde venv that
# `make setup` builds and links onto PATH). The persistent cache (bde.cache) keeps every
# molecule ever computed, so a rerun computes only new molecules.

BDE = config["bde"]


rule bde:
    """ALFABET BDE/BDFE per bond of every EI training molecule (HDF5 keyed by InChIKey), plus
    the molecules ALFABET cannot take, with the reason."""
    input:
        f"{RESULTS}/ei_prediction/molecules.tsv",
    output:
        bde=f"{RESULTS}/bde/bde.h5",
        unhandled=f"{RESULTS}/bde/unhandled.tsv",
    log:
        f"{LOGS}/bde/bde.log",
    benchmark:
        f"{BENCHMARKS}/bde/bde.tsv"
    conda:
        env("bde")
    container:
        image("bde")
    threads: 1
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(120),
    params:
        cache=BDE["cache"],
    shell:
        "msid-bde {input} --cache {params.cache} --out {output.bde}"
        " --unhandled {output.unhandled} --no-progress > {log} 2>&1"
