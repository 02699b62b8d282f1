"""Rule script: one summary report across every run of the batch."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the msid package beside scripts/
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from msid.report.batch import write_batch_report

runs = []
for sample, kind, path in zip(snakemake.params.samples, snakemake.params.kinds,
                              snakemake.params.paths):
    d = f"{snakemake.params.runs_dir}/{sample}"
    out = {k: f"{d}/{f}" for k, f in snakemake.params.run_outputs[kind].items()}
    runs.append({"sample": sample, "kind": kind, "report": f"{d}/report.html", "input": path,
                 "spectra": out.get("ei_spectra", f"{d}/spectra.h5"),
                 "identifications": out.get("identifications", out.get("ei_identifications")),
                 "denovo": out.get("denovo"),
                 "denovo_annotations": out.get("denovo_annotations"),
                 "mztab": out.get("mztab", out.get("denovo_mztab")),
                 "compounds": out.get("compounds")})
write_batch_report(runs, snakemake.output[0], config=snakemake.config,
                   fdr_curve=snakemake.input.get("fdr_curve"),
                   unread=[tuple(e) for e in snakemake.params.unread],
                   libraries={kind: snakemake.input.get(f"library_{kind}")
                              for kind in set(snakemake.params.kinds)
                              if snakemake.input.get(f"library_{kind}")})
print(f"batch report of {len(runs)} runs -> {snakemake.output[0]}")
