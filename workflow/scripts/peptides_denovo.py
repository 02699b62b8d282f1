"""Rule script: de novo peptide sequences of one run -> TSV, mzTab and annotated spectra."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.peptides.denovo import DecodeConfig, denovo_run

denovo_run(snakemake.input.spectra, snakemake.input.model,
           DecodeConfig.from_dict(dict(snakemake.params.decode)), tsv=snakemake.output.tsv,
           mztab=snakemake.output.mztab, annotations=snakemake.output.annotations,
           run_location=snakemake.params.run, n_annotated=snakemake.params.n_annotated)
