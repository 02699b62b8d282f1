"""Rule script: fine-tune the EI spectrum embedder (LLM2Vec stages) -> model file + card."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
from msid.parallel import job_threads

job_threads(snakemake.threads)  # torch, faiss and BLAS keep to the CPUs this job was given

from msid.ei.embedding import EmbeddingConfig
from msid.ei.embedding_train import EmbeddingTrainConfig, train_from_files
from msid.io.licences import is_noncommercial, model_licence

out = Path(snakemake.output.model)
licence = model_licence(list(snakemake.input))  # the records' own LICENSE lines
if is_noncommercial(licence) and "cc-by-nc" not in out.name:
    sys.exit(f"EI training records include non-commercial ones ({licence}), but {out.name} "
             "is named for commercial use (ei_prediction.commercial_only: true): leave the "
             "non-commercial files out of ei_search.train.data")
card = train_from_files(list(snakemake.input), out,
                        EmbeddingConfig.from_dict(dict(snakemake.params.embedding)),
                        EmbeddingTrainConfig.from_dict(dict(snakemake.params.train)),
                        workdir=out.parent / f"{out.stem}.work")
print(card["training"])
