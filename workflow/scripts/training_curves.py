"""Rule script: model history JSON files -> one PNG of training curves."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.atomic import write_bytes
from msid.report.plots import load_histories, training_curves

write_bytes(snakemake.output[0], training_curves(load_histories(snakemake.input)))
