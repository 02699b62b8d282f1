"""De novo sequences scored against the sequences a labelled input carries (MGF ``SEQ=``).

A lab that sequences spectra it has already identified (a database search's PSMs written back
into the MGF, as MassIVE-KB and Casanovo's training files are) wants to know how often msid is
right on them. :func:`mgf_sequences` takes the labels from msid's own MGF reader (the records
and native ids the run itself was read with; a damaged record is skipped there as in the run),
and :func:`score_labelled` scores the rank-1 sequence of each labelled spectrum with the
leaderboard's metrics (:mod:`msid.peptides.metrics`, Casanovo's conventions: residues matched
by mass, I = L). A labelled spectrum that got no sequence counts as a miss, as on the
leaderboard.
"""

from __future__ import annotations

import os

import pandas as pd

from msid.io.errors import InputFileError
from msid.io.raw import RawSpectrum, read_spectra, sniff_format
from msid.peptides.metrics import score_predictions, summary
from msid.peptides.physics import SequenceError, parse_proforma


def is_mgf(path: str | os.PathLike) -> bool:
    try:
        return sniff_format(path) == "mgf"
    except InputFileError:  # a store (.h5) or another name: no SEQ= lines to read
        return False


def mgf_sequences(path: str | os.PathLike) -> dict[str, str]:
    """Native id -> ``SEQ=`` value of every MGF record msid reads that carries one ({} when
    none does)."""
    out: dict[str, str] = {}
    for rec in read_spectra(path):
        if isinstance(rec, RawSpectrum) and rec.params.get("seq"):
            out[str(rec.params["native_id"])] = str(rec.params["seq"]).strip()
    return out


def score_labelled(rows: pd.DataFrame, labels: dict[str, str]) -> dict[str, float]:
    """Metrics of the rank-1 sequences in ``rows`` (a denovo-peptides table) over the labelled
    spectra; ``unreadable_labels`` counts labels outside the vocabulary (not scored),
    ``without_sequence`` the scored ones that got no sequence (quarantined, or no candidate
    matched the precursor mass): misses."""
    top = rows[rows["rank"] == 1]
    best = top.set_index(top["native_id"].astype(str))
    preds, scores, truths, aa = [], [], [], []
    unreadable = missing = 0
    for native_id, seq in labels.items():
        try:
            truth = parse_proforma(seq)
        except SequenceError:
            unreadable += 1
            continue
        truths.append(truth)
        if native_id in best.index:
            r = best.loc[native_id]
            preds.append(parse_proforma(str(r["sequence"])))
            scores.append(float(r["score"]))
            given = r.get("aa_scores")
            aa.append([float(x) for x in given.split(",")]
                      if isinstance(given, str) and given else None)
        else:  # quarantined (no precursor, ...) or no sequence matched its mass
            missing += 1
            preds.append(None)
            scores.append(float("-inf"))
            aa.append(None)
    out = summary(score_predictions(preds, scores, truths, aa)) if truths else {}
    return {**out, "labelled": float(len(labels)), "unreadable_labels": float(unreadable),
            "without_sequence": float(missing)}
