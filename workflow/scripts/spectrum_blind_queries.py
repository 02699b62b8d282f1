"""Rule script: benchmark queries -> spectrum-blind control queries."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.benchmark import spectrum_blind_queries

n = spectrum_blind_queries(snakemake.input[0], snakemake.output[0], seed=snakemake.params.seed)
print(f"{n} control queries written")
