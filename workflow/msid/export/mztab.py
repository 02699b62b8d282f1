"""Identifications of a run as mzTab-M 2.0 (HUPO-PSI small-molecule mzTab, 2.0.0-M).

pyOpenMS (3.6) writes mzTab-M only from a FeatureMap whose identifications live in OpenMS'
``IdentificationData``, which its Python bindings do not expose, so its output has no evidence
rows; this module writes the tab-separated format itself, following the 2.0.0-M specification:
one SMF row (feature) per identified MS2 spectrum (precursor m/z, charge, retention time), one
SME row (evidence) per ranked candidate with its rank and score, and one SML row (summary) per
spectrum for its best candidate. Tests read the file back with pyteomics' independent reader.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from msid import __version__
from msid.atomic import write_text
from msid.chem.adducts import ion_mz, neutral_mass
from msid.chem.structures import parse_structure
from msid.rankings import is_precursor_only, read_rankings
from msid.store import SpectrumStore, content_digest

NULL = "null"

SML_COLUMNS = ("SML_ID", "SMF_ID_REFS", "database_identifier", "chemical_formula", "smiles",
               "inchi", "chemical_name", "uri", "theoretical_neutral_mass", "adduct_ions",
               "reliability", "best_id_confidence_measure", "best_id_confidence_value",
               "abundance_assay[1]", "abundance_study_variable[1]",
               "abundance_variation_study_variable[1]", "opt_global_q_value",
               "opt_global_method", "opt_global_note")
SMF_COLUMNS = ("SMF_ID", "SME_ID_REFS", "SME_ID_REF_ambiguity_code", "adduct_ion", "isotopomer",
               "exp_mass_to_charge", "charge", "retention_time_in_seconds",
               "retention_time_in_seconds_start", "retention_time_in_seconds_end",
               "abundance_assay[1]")
SME_COLUMNS = ("SME_ID", "evidence_input_id", "database_identifier", "chemical_formula",
               "smiles", "inchi", "chemical_name", "uri", "derivatized_form", "adduct_ion",
               "exp_mass_to_charge", "charge", "theoretical_mass_to_charge", "spectra_ref",
               "identification_method", "ms_level", "id_confidence_measure[1]", "rank",
               "opt_global_q_value", "opt_global_delta_score", "opt_global_matched_peaks",
               "opt_global_ppm_error", "opt_global_note")


def _v(x: object) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or x == "":
        return NULL
    if isinstance(x, float):
        return f"{x:.6f}".rstrip("0").rstrip(".")
    return str(x).replace("\t", " ").replace("\n", " ")


def _charge_str(charge: int) -> str:
    return f"{charge}" if charge else NULL


def _row_adduct(row: pd.Series, query_adduct: str, ei: bool) -> str:
    """The ion a row's candidate was matched as: the query's adduct when it states one, else
    the row's (a library hit: the matched library spectrum's; a candidate: the one assumed)."""
    if ei:
        return NULL
    if query_adduct != NULL:
        return query_adduct
    return str(row.get("adduct") or "") or NULL


def _summary_order(g: pd.DataFrame) -> pd.DataFrame:
    """A spectrum's rows, its summary (SML) answer first: library spectral matches the
    target-decoy competition did not reject, then the learned methods' candidates (in the
    table's method order), then rejected or precursor-only library matches, the random
    baseline last; by rank within each (a stable sort keeps the table's method order). A
    method's library matches are judged by its best-ranked one: only that one competed with
    the decoys, so when it is rejected the ones below it (no q-value) are not answers either."""
    library = g["library_id"].astype(str) != ""
    weak = library & (g["note"].map(is_precursor_only) | (g["q_value"] >= 1))
    first = g[library].sort_values("rank", kind="stable").drop_duplicates("method")
    rejected = set(first.loc[weak[first.index], "method"])
    weak |= library & g["method"].isin(rejected)
    tier = np.where(library & ~weak, 0, np.where(weak, 2, np.where(g["method"] == "random",
                                                                   3, 1)))
    return g.assign(_tier=tier).sort_values(["_tier", "rank"], kind="stable").drop(
        columns="_tier")


def _reliability(row: pd.Series, predicted: Collection[str] = ()) -> int:
    """MSI level: 2 for a match to a measured library spectrum, 3 for a learned method's
    candidate or a match to a predicted (in-silico) spectrum, 4 for a precursor-mass-only
    match (no fragment evidence)."""
    if is_precursor_only(row["note"]):
        return 4
    return 2 if row["library_id"] and row["library_id"] not in predicted else 3


def write_mztab_m(identifications: str | os.PathLike, spectra: str | os.PathLike,
                  out: str | os.PathLike, *, sample: str, library_name: str = "library",
                  top_k: int = 5, predicted: Collection[str] = (),
                  ei: bool | None = None, location: str | os.PathLike | None = None,
                  library_file: str | os.PathLike | None = None) -> Path:
    """mzTab-M 2.0 file of a run's identifications (up to ``top_k`` evidence rows a spectrum).

    An EI (GC-MS) run (``ei``; None: when no spectrum has a precursor) is written as such: MS
    level 1, no m/z, charge or adduct on its features and evidence (``null``: an EI spectrum
    has no precursor, and msid does not invent one; validators that require the fields will
    flag them). ``predicted``: library ids of
    predicted (in-silico) spectra, whose matches are reported at MSI level 3, not 2.
    ``location``: the run file, written as its file: URI (else the run's file name).
    ``library_file``: the library searched, named by its file: URI and its content digest
    (``database[1]-version`` ``sha256:<first 16 hex>``, a store's
    :func:`msid.store.content_digest`: the same for every build of the same library; else
    "Unknown" and null)."""
    ids = read_rankings(identifications)
    # a candidate needs a structure; a library match at least its library record
    ids = ids[(ids["rank"] > 0) & (ids["rank"] <= top_k)
              & ((ids["smiles"] != "") | (ids["library_id"] != ""))]
    with SpectrumStore(spectra) as st:
        md = st.metadata.set_index(st.metadata["id"].astype(str))
        source = sorted(set(st.metadata["source_file"])) if len(st) else []
    negative = bool(len(md)) and (md["ion_mode"] == "negative").mean() > 0.5
    if ei is None:  # EI spectra: no precursor
        ei = bool(len(md)) and bool(md["precursor_mz"].isna().all())
    technique = ("[,, GC-MS electron ionization spectral library search, ]" if ei else
                 "[MS, MS:1001834, LC-MS label-free quantitation analysis, ]")
    ms_level = "[MS, MS:1000511, ms level, 1]" if ei else "[MS, MS:1000511, ms level, 2]"
    polarity = ("[MS, MS:1000129, negative scan, ]" if negative else
                "[MS, MS:1000130, positive scan, ]")
    mtd = [
        ("mzTab-version", "2.0.0-M"), ("mzTab-ID", sample),
        ("description", f"msid identifications of run {sample}"),
        ("software[1]", f"[MS, MS:1000799, custom unreleased software tool, msid {__version__}]"),
        ("quantification_method", technique),
        # the run file as a file: URI when its path is known, else its name (a relative
        # reference: "file://NAME" would make the name a host)
        ("ms_run[1]-location", Path(location).resolve().as_uri() if location
         else (source[0] if source else sample)),
        ("ms_run[1]-scan_polarity[1]", polarity),
        ("assay[1]", sample), ("assay[1]-ms_run_ref", "ms_run[1]"),
        ("study_variable[1]", sample), ("study_variable[1]-assay_refs", "assay[1]"),
        ("study_variable[1]-description", "one run"),
        ("cv[1]-label", "MS"), ("cv[1]-full_name", "PSI-MS controlled vocabulary"),
        ("cv[1]-version", "4.1.0"),
        ("cv[1]-uri", "https://raw.githubusercontent.com/HUPO-PSI/psi-ms-CV/master/psi-ms.obo"),
        ("database[1]", f"[,, {library_name}, ]"), ("database[1]-prefix", library_name),
        ("database[1]-version",
         f"sha256:{content_digest(library_file)[:16]}" if library_file else "Unknown"),
        ("database[1]-uri", Path(library_file).resolve().as_uri() if library_file else NULL),
        ("small_molecule-quantification_unit", "[MS, MS:1001844, MS1 feature area, ]"),
        ("small_molecule_feature-quantification_unit", "[MS, MS:1001844, MS1 feature area, ]"),
        ("small_molecule-identification_reliability",
         "[MS, MS:1002896, compound identification confidence level, ]"),
        ("id_confidence_measure[1]", "[,, msid score (spectral similarity or model score), ]"),
        ("colunit-small_molecule_evidence", "opt_global_q_value=[,, target-decoy q-value, ]"),
        ("colunit-small_molecule_evidence",
         "opt_global_delta_score=[,, score margin over the best other structure, ]"),
    ]
    lines = [f"MTD\t{k}\t{v}" for k, v in mtd]
    sml, smf, sme = [], [], []
    sme_id = 0
    for n, (qid, g) in enumerate(ids.groupby("query_id", sort=False), start=1):
        g = _summary_order(g)
        m = md.loc[qid] if qid in md.index else None
        mz = (math.nan if ei else float(m["precursor_mz"]) if m is not None
              else float(g["precursor_mz"].iat[0]))
        charge = 0 if ei else int(m["charge"]) if m is not None and int(m["charge"]) else (
            -1 if m is not None and m["ion_mode"] == "negative" else 1)
        rt = float(m["rt"]) if m is not None else float(g["rt"].iat[0])
        adduct = NULL if ei else (str(m["adduct"]) if m is not None else "") or NULL
        spectra_ref = f"ms_run[1]:{m['native_id'] if m is not None and m['native_id'] else qid}"
        ion_mode = str(m["ion_mode"]) if m is not None else ""
        observed = neutral_mass(mz, "" if adduct == NULL else adduct, ion_mode, charge)
        # m/z per Da of neutral mass for this ion (n / |z| for [nM+X]z: multimers, charges)
        per_da = (ion_mz(observed + 1.0, mz, "" if adduct == NULL else adduct, ion_mode,
                         charge) - mz
                  if charge and math.isfinite(observed) else math.nan)
        refs = []
        for _, r in g.iterrows():
            sme_id += 1
            refs.append(str(sme_id))
            st = parse_structure(r["smiles"])
            # a library hit of a query that states no ion: the matched library spectrum's
            # adduct (the row's), not an assumed [M+H]+ / [M-H]-
            own = _row_adduct(r, adduct, ei)
            if st and own != adduct:
                theo = ion_mz(st.exact_mass, mz, own, ion_mode, charge)
            else:  # the candidate's m/z as the query's ion: shift the precursor by the gap
                theo = mz + (st.exact_mass - observed) * per_da if st else math.nan
            sme.append([sme_id, qid, r["library_id"] or NULL, st.formula if st else NULL,
                        r["smiles"], NULL, r["name"] or NULL, NULL, NULL, own, mz,
                        _charge_str(charge), theo, spectra_ref,
                        f"[,, msid {r['method']}, ]", ms_level,
                        r["score"], int(r["rank"]), r["q_value"], r["delta_score"],
                        r["matched_peaks"] if r["matched_peaks"] >= 0 else NULL, r["ppm_error"],
                        r["note"]])
        best = g.iloc[0]
        smf.append([n, "|".join(refs), 2 if len(refs) > 1 else NULL,
                    _row_adduct(best, adduct, ei), NULL, mz,
                    _charge_str(charge), rt, NULL, NULL, NULL])
        st = parse_structure(best["smiles"])
        sml.append([n, n, best["library_id"] or NULL, st.formula if st else NULL,
                    best["smiles"], NULL, best["name"] or NULL, NULL,
                    st.exact_mass if st else NULL, _row_adduct(best, adduct, ei),
                    _reliability(best, predicted),
                    "[,, msid score, ]", best["score"], NULL, NULL, NULL, best["q_value"],
                    best["method"], best["note"]])
    lines.append("")
    lines.append("\t".join(("SMH", *SML_COLUMNS)))
    lines += ["\t".join(("SML", *map(_v, row))) for row in sml]
    lines.append("")
    lines.append("\t".join(("SFH", *SMF_COLUMNS)))
    lines += ["\t".join(("SMF", *map(_v, row))) for row in smf]
    lines.append("")
    lines.append("\t".join(("SEH", *SME_COLUMNS)))
    lines += ["\t".join(("SME", *map(_v, row))) for row in sme]
    return write_text(out, "\n".join(lines) + "\n")


def read_back(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The three tables of an mzTab-M file, via pyteomics (an independent reader)."""
    from pyteomics import mztab

    tab = mztab.MzTab(str(path), table_format="df")
    return {"SML": tab.small_molecule_table, "SMF": tab.small_molecule_feature_table,
            "SME": tab.small_molecule_evidence_table, "version": tab.version}
