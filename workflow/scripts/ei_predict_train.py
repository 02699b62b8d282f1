"""Rule script: teacher, MLP baseline and distilled student in one run (msid.ei.neims_pipeline)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.neims_pipeline import NeimsRunConfig, run
from msid.io.licences import is_noncommercial, model_licence_and_attribution

# the records' own LICENSE lines and MassBank accessions
licence, credit = model_licence_and_attribution(snakemake.params.training_files)
if is_noncommercial(licence) and not snakemake.params.suffix:
    sys.exit(f"EI training records include non-commercial ones ({licence}), but the models "
             "would be named for commercial use (ei_prediction.commercial_only: true): leave "
             "the non-commercial files out of ei_prediction.training_data")
cfg = NeimsRunConfig.from_dict({**snakemake.params.run, "licence": licence, "progress": False,
                                "attribution": credit})
out_dir = Path(snakemake.output.run).parent
names = {k: Path(getattr(snakemake.output, k)).stem for k in ("teacher", "student", "mlp")}
run(snakemake.input.store, out_dir, pool=snakemake.input.pool, bde_cache=snakemake.input.bde,
    cfg=cfg,
    names=names, run_name=Path(snakemake.output.run).name)
