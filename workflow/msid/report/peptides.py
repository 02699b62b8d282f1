"""The peptide section of a run report: de novo sequences and annotated spectra (b/y ions drawn
on the peaks), from the files the ``denovo_peptides`` rule writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from msid.report.plots import data_uri, plt, to_png

#: the tokens of msid's ProForma output as written (an N-terminal modification, or a residue
#: with its modification): one per ``aa_scores`` value. Splitting only, for display: the
#: report's environment has no peptide chemistry (msid.peptides.physics parses with pyteomics)
_TOKEN = re.compile(r"\[[^\]]+\]-|[A-Z](?:\[[^\]]+\])?")

#: per-residue confidence bands of the report's sequences: (lower bound, CSS class)
CONFIDENCE_BANDS = ((0.8, "aa-high"), (0.5, "aa-mid"), (0.0, "aa-low"))


def residues(sequence: str, aa_scores: object) -> list[tuple[str, float, str]]:
    """(token, its probability, confidence class) per token of a ProForma sequence, from the
    TSV's ``aa_scores``; [] when there are none (the DP) or they do not fit the sequence."""
    if not isinstance(aa_scores, str) or not aa_scores:
        return []
    tokens = _TOKEN.findall(sequence)
    scores = [float(x) for x in aa_scores.split(",")]
    if len(scores) != len(tokens) or "".join(tokens) != sequence:
        return []
    return [(t, p, next(c for lo, c in CONFIDENCE_BANDS if p >= lo))
            for t, p in zip(tokens, scores, strict=True)]


def annotated_spectrum_plot(a: dict) -> bytes:
    """Peaks in grey; peaks explained by b ions blue, by y ions red, labelled."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    mz, inten, labels = np.asarray(a["mz"]), np.asarray(a["intensity"]), a["labels"]
    grey = np.array([not x for x in labels], dtype=bool)
    if len(mz):
        ax.vlines(mz[grey], 0, inten[grey], color="#bbbbbb", lw=0.8)
        for kind, color in (("b", "#1f77b4"), ("y", "#d62728")):
            sel = np.array([x.startswith(kind) for x in labels], dtype=bool)
            ax.vlines(mz[sel], 0, inten[sel], color=color, lw=1.4, label=f"{kind} ions")
            for m, i, lab in zip(mz[sel], inten[sel], np.asarray(labels, dtype=object)[sel],
                                 strict=True):
                ax.text(m, i + 0.02, lab, color=color, fontsize=7, ha="center",
                        va="bottom", rotation=90)
    ax.set_ylim(0, 1.25)
    ax.set_xlabel("m/z")
    ax.set_ylabel("relative intensity")
    ax.set_title(f"{a['id']}: {a['sequence']} ({a['charge']}+), score {a['score']:.3f}, "
                 f"{a['n_matched']} ions matched", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    return to_png(fig)


def peptide_section(denovo_tsv: str | os.PathLike, annotations: str | os.PathLike,
                    n_top: int = 50) -> dict:
    df = pd.read_csv(denovo_tsv, sep="\t", dtype={"aa_scores": str})
    iso = df["isotope_error"] if "isotope_error" in df else pd.Series(np.nan, index=df.index)
    df["isotope_error"] = iso.map(lambda v: "" if pd.isna(v) else str(int(v)))
    if "isotope_corrected_ppm" not in df:  # a table written before the column existed
        df["isotope_corrected_ppm"] = np.nan
    ann = json.loads(Path(annotations).read_text())
    top = df[df["rank"] == 1].sort_values("score", ascending=False).head(n_top).copy()
    top["residues"] = [residues(q, a) for q, a in
                       zip(top["sequence"], top.get("aa_scores", [None] * len(top)),
                           strict=True)]
    return {
        "method": ann.get("method", ""),
        "n_spectra": int(ann.get("n_spectra", 0)),
        "n_sequenced": int(ann.get("n_sequenced", (df["rank"] == 1).sum())),
        "n_mass_matched": int(ann.get("n_mass_matched", 0)),
        "skipped": ann.get("skipped", []),
        "top": top.to_dict("records"),
        "n_rank1": int((df["rank"] == 1).sum()),
        "figures": [{"title": f"{a['id']}: {a['sequence']}",
                     "src": data_uri(annotated_spectrum_plot(a))} for a in ann["spectra"]],
    }
