"""The real check: de novo sequences vs the database-search PSMs of the OpenMS QC runs.

``python -m msid.peptides.qc_check [DATA_DIR] [--model M] [--out OUT.json]`` reads
``openms_QualityControl_1_in{1,2,3}.mzML.gz`` and ``openms_QualityControl_1_out.mzTab.gz``
(``../shared/data/lcmsms_mzml_runs``), sequences every PSM's spectrum (matched by
``spectra_ref``: ``ms_run[k]`` -> run k, native id) with PepTRM and the DP baseline, and prints
the share of PSMs whose sequence msid recovers exactly (Casanovo matching, I = L) and the
amino-acid precision on them. Nothing in msid was tuned on these runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

from msid.peptides.physics import SequenceError, parse_proforma, vocabulary_name

RUN_FILES = {1: "openms_QualityControl_1_in1.mzML.gz", 2: "openms_QualityControl_1_in2.mzML.gz",
             3: "openms_QualityControl_1_in3.mzML.gz"}
PSM_FILE = "openms_QualityControl_1_out.mzTab.gz"


def psm_tokens(sequence: str, modifications: str | None) -> list[str] | None:
    """mzTab sequence + modifications (``pos-UNIMOD:n``, 0 = N-terminus) -> tokens; None when
    a modification is outside msid's vocabulary. The accessions are read by
    :func:`msid.peptides.physics.parse_proforma` (by accession and residue: UNIMOD:7 is
    Deamidated on N and on Q)."""
    residues = ["L" if c == "I" else c for c in sequence]
    tags: dict[int, str] = {}  # residue index -> accession; -1: the N-terminus
    if modifications is not None and str(modifications) not in ("null", "nan", ""):
        for item in str(modifications).split(","):
            m = re.fullmatch(r"(\d+)-(UNIMOD:\d+)", item.strip())
            if not m:
                return None
            pos, acc = int(m.group(1)), m.group(2)
            # position 0: an N-terminal modification, or one of the first residue (pyro-Glu)
            k = -1 if pos == 0 and vocabulary_name(acc, "") != acc else max(pos, 1) - 1
            if k >= len(residues) or k in tags:
                return None
            tags[k] = acc
    seq = (f"[{tags[-1]}]-" if -1 in tags else "") + "".join(
        f"{aa}[{tags[k]}]" if k in tags else aa for k, aa in enumerate(residues))
    try:
        return parse_proforma(seq)
    except SequenceError:
        return None


def run_check(data_dir: str | Path, model: str | Path, dp_cfg: dict | None = None,
              log=print) -> dict:
    from pyteomics import mztab

    from msid.identify import load_queries, temp_workdir
    from msid.peptides.denovo import DecodeConfig, sequence_spectra, spectra_from_store
    from msid.peptides.metrics import score_predictions, summary

    data_dir = Path(data_dir)
    with gzip.open(data_dir / PSM_FILE, "rt") as fh:
        psms = mztab.MzTab(fh).spectrum_match_table
    wanted, truths, skipped = [], [], 0
    for r in psms.itertuples():
        run, native = str(r.spectra_ref).split(":", 1)
        tokens = psm_tokens(r.sequence, r.modifications)
        if tokens is None:
            skipped += 1
            continue
        wanted.append((int(run[7:-1]), native))
        truths.append(tokens)
    spectra = {}
    with temp_workdir() as work:
        for k, name in RUN_FILES.items():
            sub = Path(work) / f"run{k}"
            sub.mkdir()
            with load_queries(data_dir / name, sub) as store:
                sp, md = spectra_from_store(store)
            for s, nid in zip(sp, md["native_id"], strict=True):
                spectra[(k, str(nid))] = s
    found = [(w, t) for w, t in zip(wanted, truths, strict=True) if w in spectra]
    query = [spectra[w] for w, _ in found]
    truth = [t for _, t in found]
    out = {"psms": len(psms), "psms_outside_vocabulary": skipped, "psms_with_spectrum":
           len(query), "methods": {}}
    for name, method in (("PepTRM", "peptrm"), ("DP baseline", "dp")):
        dec = sequence_spectra(query, method, str(model), DecodeConfig(), dp_cfg,
                               progress=False)
        sm = summary(score_predictions([d.tokens for d in dec], [d.score for d in dec], truth))
        out["methods"][name] = {"exact_recovery": sm["peptide_recall"],
                                "aa_precision": sm["aa_precision"],
                                "aa_recall": sm["aa_recall"]}
        log(f"{name}: exact sequence recovered for {sm['peptide_recall']:.3f} of "
            f"{len(query)} PSMs; AA precision {sm['aa_precision']:.3f}, "
            f"AA recall {sm['aa_recall']:.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    from msid.peptides.denovo import shipped_model

    p = argparse.ArgumentParser(prog="python -m msid.peptides.qc_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", nargs="?", default="../shared/data/lcmsms_mzml_runs")
    p.add_argument("--model", default=None, help="PepTRM model (default: the shipped one)")
    p.add_argument("--fragment-tol", type=float, default=0.02, help="DP fragment tolerance")
    p.add_argument("--out", help="also write the numbers as JSON")
    a = p.parse_args(argv)
    if not (Path(a.data_dir) / PSM_FILE).exists():
        print(f"qc_check: {Path(a.data_dir) / PSM_FILE} not found (needs ../shared/data)",
              file=sys.stderr)
        return 2
    res = run_check(a.data_dir, a.model or shipped_model(), {"fragment_tol_da": a.fragment_tol})
    if a.out:
        from msid.atomic import write_text

        write_text(a.out, json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
