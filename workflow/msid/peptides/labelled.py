"""De novo sequences scored against the sequences a labelled input carries (MGF ``SEQ=``).

A lab that sequences spectra it has already identified (a database search's PSMs written back
into the MGF, as MassIVE-KB and Casanovo's training files are) wants to know how often msid is
right on them. :func:`mgf_sequences` reads the labels with pyteomics, keyed by the native id
msid gives each MGF record (its ``NATIVE_ID``, else ``index=N``), and :func:`score_labelled`
scores the rank-1 sequence of each labelled spectrum with the leaderboard's metrics
(:mod:`msid.peptides.metrics`, Casanovo's conventions: residues matched by mass, I = L). A
labelled spectrum that got no sequence counts as a miss, as on the leaderboard.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from pyteomics import mgf

from msid.peptides.data import _open
from msid.peptides.metrics import score_predictions, summary
from msid.peptides.physics import SequenceError, parse_proforma


def is_mgf(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith((".mgf", ".mgf.gz"))


def mgf_sequences(path: str | os.PathLike) -> dict[str, str]:
    """Native id -> ``SEQ=`` value of every MGF record that carries one ({} when none does)."""
    out: dict[str, str] = {}
    with _open(Path(path)) as fh:
        for k, rec in enumerate(mgf.read(fh, use_index=False, convert_arrays=0)):
            params = {str(key).lower(): v for key, v in rec.get("params", {}).items()}
            if params.get("seq"):
                out[str(params.get("native_id") or f"index={k}")] = str(params["seq"]).strip()
    return out


def score_labelled(rows: pd.DataFrame, labels: dict[str, str]) -> dict[str, float]:
    """Metrics of the rank-1 sequences in ``rows`` (a denovo-peptides table) over the labelled
    spectra; ``unreadable_labels`` counts labels outside the vocabulary (not scored)."""
    best = rows[rows["rank"] == 1].set_index(rows.loc[rows["rank"] == 1, "native_id"]
                                             .astype(str))
    preds, scores, truths, aa = [], [], [], []
    unreadable = 0
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
        else:
            preds.append(None)
            scores.append(float("-inf"))
            aa.append(None)
    out = summary(score_predictions(preds, scores, truths, aa)) if truths else {}
    return {**out, "labelled": float(len(labels)), "unreadable_labels": float(unreadable)}
