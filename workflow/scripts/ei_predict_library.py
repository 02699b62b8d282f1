"""Rule script: `msid predict-ei` on a SMILES file (MSP or store by the output's suffix)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.insilico import predict_file

res = predict_file(snakemake.input.smiles, snakemake.output[0], snakemake.input.model,
                   progress=False)
for line, smi, reason in res["rejected"]:
    print(f"skipped line {line} ({smi!r}): {reason}")
print(f"{res['predicted']} spectra predicted in {res['seconds']:.1f} s -> {snakemake.output[0]}")
