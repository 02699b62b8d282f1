"""Rule script: train PepTRM -> safetensors + model card + history."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.io.licences import model_licence
from msid.modelfile import annotate_card
from msid.peptides.training import train_peptrm

train_peptrm(list(snakemake.input.data), dict(snakemake.params.config), snakemake.output.model)
annotate_card(snakemake.output.model, licence=model_licence(list(snakemake.input.data)))
