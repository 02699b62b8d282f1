"""Rule script: per-run HTML report."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.report.run_report import write_run_report

# an EI run: its EI store; no ESI library (its mirror plots come from its EI matches)
write_run_report(snakemake.input.get("spectra") or snakemake.input.ei_spectra,
                 snakemake.input.get("identifications"),
                 snakemake.input.get("library"), snakemake.output[0], sample=snakemake.wildcards.sample,
                 kind=snakemake.params.kind, n_mirror=snakemake.params.n_mirror,
                 fdr=snakemake.params.fdr, min_delta_score=snakemake.params.min_delta_score,
                 denovo=snakemake.input.get("denovo"),
                 denovo_annotations=snakemake.input.get("denovo_annotations"),
                 ei={k: snakemake.input.get(k) for k in ("ei_spectra", "ei_identifications",
                                                         "ei_matches")},
                 search=dict(snakemake.params.search))
