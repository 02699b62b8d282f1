"""Rule script: spectrum store -> filtered spectrum store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.preprocess import PreprocessConfig, preprocess_store

cfg = PreprocessConfig.from_dict(snakemake.params.config)
stats = preprocess_store(snakemake.input[0], snakemake.output[0], cfg, n_jobs=snakemake.threads)
print(f"read {stats.read}, kept {stats.kept}, quarantined {dict(stats.quarantined)}")
