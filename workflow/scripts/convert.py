"""Rule script: raw run or library file -> spectrum store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.convert import convert_file, unreadable_run_store
from msid.io import InputFileError

try:
    stats = convert_file(snakemake.input[0], snakemake.output[0], n_jobs=snakemake.threads,
                         ms2_only=snakemake.params.get("ms2_only", False))
except InputFileError as e:  # the whole file is unreadable: say why
    print(f"msid convert: error: {e}")
    if not snakemake.params.get("unreadable_run", False):
        sys.exit(1)  # a library: fail this job
    # a run: an empty store whose quarantine names the problem, so the batch goes on
    unreadable_run_store(snakemake.input[0], snakemake.output[0], e)
    print("the run goes on with no spectra; its report and the batch report say why")
    sys.exit(0)
print(f"read {stats.read}, stored {stats.stored}, quarantined {dict(stats.quarantined)}, "
      f"ids made unique {stats.renamed}, stored without a value {dict(stats.noted)}"
      + (f"; the file is damaged, results are partial: {stats.damaged}" if stats.damaged else ""))
