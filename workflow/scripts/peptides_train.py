"""Rule script: train PepTRM -> safetensors + model card + history."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.peptides.training import train_peptrm

train_peptrm(list(snakemake.input.data), dict(snakemake.params.config), snakemake.output.model)
