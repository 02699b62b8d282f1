"""Rule script: library store -> one store per fold."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.benchmark import split_folds

counts = split_folds(snakemake.input[0], dict(snakemake.output.items()))
print(f"spectra per fold: {counts}")
