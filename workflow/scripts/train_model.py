"""Rule script: train one model family -> safetensors + model card."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

import json

from msid.io.licences import model_licence_and_attribution
from msid.modelfile import annotate_card
from msid.models import train_model

metrics = train_model(snakemake.wildcards.family, snakemake.input.train, snakemake.input.val,
                      snakemake.input.index, dict(snakemake.params.config),
                      snakemake.output.model)
licence, credit = model_licence_and_attribution(snakemake.params.training_data)
annotate_card(snakemake.output.model, licence=licence, attribution=credit)
print(json.dumps(metrics, indent=2, default=str))
