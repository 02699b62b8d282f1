"""Rule script: the EI prediction run record -> results/leaderboard/ei_prediction.{md,csv}."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.neims_eval import write_leaderboard

rec = json.loads(Path(snakemake.input[0]).read_text())
write_leaderboard(rec["rows"], snakemake.output.md, snakemake.output.csv,
                  notes=rec.get("notes", []))
print(f"{len(rec['rows'])} rows -> {snakemake.output.md}")
