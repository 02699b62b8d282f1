"""The EI section of a run report: library matches of a GC-MS run's EI spectra, mirror plots.

Reads the run's EI outputs only (``ei_spectra.h5``: the run's nominal-mass spectra;
``ei_identifications.tsv``: Rankings; ``ei_matches.h5``: the matched library spectra), so the
report never needs the library itself.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from msid.chem.isotopes import formula_nominal_mass, molecule_formula
from msid.ei.nominal import ABOVE_ION_SHARE, intensity_above_ion
from msid.ei.spectrum_kind import ms2_like_warning
from msid.rankings import read_rankings
from msid.report.ids import short_ids
from msid.report.plots import data_uri, mirror_plot
from msid.report.quarantine import quarantine_summary
from msid.store import SpectrumStore


def derivative_note(smiles: str, mz: np.ndarray, intensity: np.ndarray) -> str:
    """A note for a library spectrum with more than :data:`ABOVE_ION_SHARE` of its intensity
    above its structure's molecular ion ('' otherwise): GC-MS libraries record a derivative's
    spectrum (TMS, methoxime) under the parent compound's structure."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or not len(mz):
        return ""
    mass = formula_nominal_mass(molecule_formula(mol))
    if intensity_above_ion(mz, intensity, mass) <= ABOVE_ION_SHARE:
        return ""
    top = float(np.max(np.asarray(mz)[np.asarray(intensity) > 0.01 * np.max(intensity)]))
    return f"derivative: peaks to m/z {top:.0f}, structure M {mass}"


def ei_section(spectra: str | os.PathLike, identifications: str | os.PathLike,
               matches: str | os.PathLike, n_mirror: int = 12) -> dict:
    ids = read_rankings(identifications)
    top = ids[ids["rank"] == 1].sort_values("score", ascending=False)
    method = str(ids["method"].iloc[0]) if len(ids) else ""
    with SpectrumStore(spectra) as st, SpectrumStore(matches) as mt:
        md = st.metadata
        short = short_ids(md["id"].astype(str))  # mzML native ids, shortened for display
        row_of = pd.Series(np.arange(len(md)), index=md["id"].astype(str))
        row_of = row_of[~row_of.index.duplicated()]
        mmd = mt.metadata
        match_of = pd.Series(np.arange(len(mmd)), index=mmd["id"].astype(str))
        match_of = match_of[~match_of.index.duplicated()]
        notes: dict[str, str] = {}  # library id -> derivative note
        for lid, smi in top[["library_id", "smiles"]].drop_duplicates("library_id").itertuples(
                index=False):
            if lid in match_of.index:
                notes[lid] = derivative_note(smi if isinstance(smi, str) else "",
                                             *mt.peaks(int(match_of[lid])))
        figures = []
        for _, hit in top.head(n_mirror).iterrows():
            if hit["query_id"] not in row_of.index or hit["library_id"] not in match_of.index:
                continue
            q = st.peaks(int(row_of[hit["query_id"]]))
            m = mt.peaks(int(match_of[hit["library_id"]]))
            title = f"{short.get(hit['query_id'], hit['query_id'])}  vs  " \
                    f"{hit['name'] or hit['library_id']}  " \
                    f"score {hit['score']:.3f}"
            figures.append({"title": title, "src": data_uri(mirror_plot(q, m, title))})
        n = len(md)
        ms2_like = ms2_like_warning(md)
        lost = quarantine_summary(st.quarantine)
        rt = pd.Series(pd.to_numeric(md["rt"], errors="coerce").to_numpy(),
                       index=md["id"].astype(str))
        rt = rt[~rt.index.duplicated()]
    hits = [{"query_id": h.query_id, "rt": float(rt.get(str(h.query_id), float("nan"))),
             "name": h["name"], "smiles": h.smiles,
             "inchikey": h.inchikey, "library_id": h.library_id, "score": float(h.score),
             "delta_score": float(h.get("delta_score", float("nan"))),
             "note": notes.get(h.library_id, "")}
            for _, h in top.iterrows()]
    return {"method": method, "n_spectra": n, "n_quarantined": lost["n_records"], **lost,
            "ms2_like": ms2_like,
            "short_id": short,
            "n_matched": int((top["score"] > 0).sum()), "hits": hits[:500],
            "hits_truncated": max(0, len(hits) - 500),
            "n_derivative": sum(bool(h["note"]) for h in hits),
            "above_ion_share": ABOVE_ION_SHARE,
            "figures": figures}
