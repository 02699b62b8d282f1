"""Rule script: raw run or library file -> spectrum store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.convert import convert_file

stats = convert_file(snakemake.input[0], snakemake.output[0], n_jobs=snakemake.threads)
print(f"read {stats.read}, stored {stats.stored}, quarantined {dict(stats.quarantined)}")
