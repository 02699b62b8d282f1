"""Rule script: train the de novo model or a GLMR model (msid.generation.training)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.generation.training import train_denovo, train_glmr
from msid.io.licences import model_licence_and_attribution
from msid.modelfile import annotate_card

inp, out = snakemake.input, snakemake.output
if snakemake.params.kind == "denovo":
    train_denovo(inp.train, inp.val, inp.test, inp.index, snakemake.params.config, out.model)
else:
    train_glmr(inp.train, inp.val, inp.index, inp.denovo, inp.ranker, snakemake.params.config,
               out.model, fusion=snakemake.params.fusion)
licence, credit = model_licence_and_attribution(snakemake.params.training_data)
annotate_card(out.model, licence=licence, attribution=credit)
