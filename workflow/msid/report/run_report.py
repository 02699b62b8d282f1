"""Per-run HTML report: one self-contained page (figures embedded) a core facility can send on."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from importlib.resources import files

import jinja2
import numpy as np
import pandas as pd

from msid import __version__
from msid.atomic import write_text
from msid.compounds import compound_keys, compound_table
from msid.rankings import (
    ADDUCT_ASSUMED,
    ADDUCT_OF_MATCH,
    ALL_COLUMNS,
    CONFIDENT_FDR,
    MIN_DELTA_SCORE,
    NOT_ASSESSED,
    confident_top,
    is_precursor_only,
    read_rankings,
    unanswered_reasons,
)
from msid.report.ids import short_ids
from msid.report.plots import data_uri, histogram, mirror_plot, precursor_map
from msid.report.quarantine import quarantine_summary, wrong_kind_hint
from msid.store import SpectrumStore

KIND_NOTES = {
    "peptide": "Peptide run: sequenced de novo (PepTRM; section 'De novo peptide sequences'), "
               "not searched against the small-molecule library.",
    "ei": "EI (GC-MS) run: nominal-mass EI spectra matched against the configured EI library "
          "(section 'EI library matches').",
}


def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    text = files("msid.report").joinpath("templates/run_report.html").read_text()
    return env.from_string(text)


def _peptide_section(kind: str, denovo, annotations) -> dict | None:
    if kind != "peptide" or not denovo or not annotations:
        return None
    from msid.report.peptides import peptide_section

    return peptide_section(denovo, annotations)


def _ei_section(kind: str, ei: dict | None, n_mirror: int) -> dict | None:
    if kind != "ei" or not ei or not all(ei.get(k) for k in ("ei_spectra", "ei_identifications",
                                                             "ei_matches")):
        return None
    from msid.report.ei import ei_section

    return ei_section(ei["ei_spectra"], ei["ei_identifications"], ei["ei_matches"], n_mirror)




def _unanswered(ids: pd.DataFrame, md: pd.DataFrame) -> list[dict]:
    """Spectra without any ranked candidate, counted by every method's reason."""
    return (unanswered_reasons(ids, md["id"]).value_counts().rename_axis("reason")
            .reset_index(name="spectra").to_dict("records"))


#: fewer library hits than this in a run's target-decoy competition: its q-values are coarse
FEW_HITS = 100


def few_qvalues_note(top: pd.DataFrame) -> str:
    """A caution when few hits took part in the target-decoy competition ('' when enough or
    none): each q-value then moves in steps of 1/n, and no decoy win reads as q = 0."""
    n = int(pd.to_numeric(top["q_value"], errors="coerce").notna().sum())
    if not 0 < n < FEW_HITS:
        return ""
    return (f"Only {n} library hit(s) took part in the target-decoy competition: with fewer "
            f"than {FEW_HITS} the q-values are coarse (they move in steps of 1/{n}, and a run "
            "where no decoy wins shows q = 0 for every hit). Judge these hits by their scores, "
            "matched peaks and mirror plots as well.")


#: what each non-library method's rows are, for the report's reader
METHOD_NOTES = {
    "ranker": "learned retrieval (Ranker): pool molecules within the precursor mass window, "
              "ranked by how well they fit the spectrum",
    "reconstructor": "learned retrieval (Reconstructor) over pool molecules in the mass window",
    "deepsets": "learned retrieval (DeepSets) over pool molecules in the mass window",
    "fp_ffn": "learned retrieval (fingerprint FFN) over pool molecules in the mass window",
    "glmr": "GLMR: the Ranker's pool candidates re-ranked with a spectrum-conditioned generator",
    "random": "random baseline over pool molecules in the mass window",
    "denovo": "de novo structures generated from the spectrum, kept when their mass matches "
              "the precursor",
}
MAX_DRAWN = 40  # structure drawings per method (the table holds every row)
#: where a row's adduct came from, marked beside it in the tables (the legend says which)
ADDUCT_MARKS = {ADDUCT_OF_MATCH: "*", ADDUCT_ASSUMED: "\u2020"}


def mark_adducts(rows: list[dict]) -> list[dict]:
    """Each row's ``adduct_mark`` (* the matched library spectrum's, \u2020 assumed from the
    ion mode) taken out of its ``note``: the tables show the adduct in a column of its own
    instead of the same phrase on every row."""
    for r in rows:
        parts = [p for p in str(r.get("note") or "").split("; ") if p]
        r["adduct_mark"] = "".join(m for phrase, m in ADDUCT_MARKS.items() if phrase in parts)
        r["note"] = "; ".join(p for p in parts if p not in ADDUCT_MARKS)
        if not isinstance(r.get("adduct"), str):
            r["adduct"] = ""
    return rows


def search_settings(lib: SpectrumStore | None, search: dict | None) -> dict:
    """What a reader needs to judge the library hits: the library file and its content digest,
    and the tolerances the search applied."""
    out: dict = {}
    if lib is not None:
        out["library"] = lib.path.name
        out["library_sha256"] = lib.content_sha256[:16]
    for key in ("precursor_tol_ppm", "precursor_tol_da", "fragment_tol_da"):
        if search and search.get(key) is not None:
            out[key] = search[key]
    return out


def _learned_sections(ids: pd.DataFrame, md: pd.DataFrame) -> list[dict]:
    """Per method other than library search (table order): each spectrum's top candidate."""
    from msid.chem.drawing import structure_svg

    out = []
    for method in dict.fromkeys(ids["method"]):
        if method == "library":
            continue
        top = ids[(ids["method"] == method) & (ids["rank"] == 1)].drop(
            columns=["rt", "precursor_mz"]).merge(md[["id", "rt", "precursor_mz"]],
                                                  left_on="query_id", right_on="id", how="left")
        top = top.sort_values("score", ascending=False)
        rows = mark_adducts(top.head(500).to_dict("records"))
        for k, r in enumerate(rows):
            r["svg"] = structure_svg(r["smiles"], 180, 120) if k < MAX_DRAWN else ""
        out.append({"method": method, "what": METHOD_NOTES.get(method, method),
                    "n_queries": int(ids.loc[(ids["method"] == method)
                                             & ids["query_id"].isin(md["id"].astype(str)),
                                             "query_id"].nunique()),
                    "n_answered": len(top), "rows": rows,
                    "truncated": max(0, len(top) - 500)})
    return out


def _compounds(ids: pd.DataFrame, fdr: float, min_delta: float) -> list[dict]:
    """The library hits by structure (:func:`msid.compounds.compound_table`), the confident
    ones drawn."""
    from msid.chem.drawing import structure_svg

    rows = compound_table(ids, fdr=fdr, min_delta=min_delta).to_dict("records")
    for r in rows:
        r["svg"] = structure_svg(r["smiles"], 150, 100) if r["confident"] else ""
    return rows


def write_run_report(spectra: str | os.PathLike, identifications: str | os.PathLike | None,
                     library: str | os.PathLike | None, out: str | os.PathLike, *, sample: str,
                     kind: str = "small_molecule", n_mirror: int = 12, fdr: float = CONFIDENT_FDR,
                     min_score: float = 0.0,
                     min_delta_score: float = MIN_DELTA_SCORE,
                     denovo: str | os.PathLike | None = None,
                     denovo_annotations: str | os.PathLike | None = None,
                     ei: dict | None = None, search: dict | None = None) -> None:
    """The run's HTML report at ``out``. ``search``: the library search's settings
    (``library_search:`` of the config: tolerances), said beside the library's digest."""
    ids = (read_rankings(identifications) if identifications else  # peptide runs: none
           pd.DataFrame({c: pd.Series(dtype=float if c in ("rank", "score") else object)
                         for c in ALL_COLUMNS}))
    # library: the spectral library of the small-molecule mirror plots (None: a run kind
    # without ESI library search)
    with SpectrumStore(spectra) as store, (SpectrumStore(library) if library
                                           else contextlib.nullcontext()) as lib:
        md = store.metadata
        short = short_ids(md["id"])
        quarantine = store.quarantine
        lib_md = lib.metadata if lib is not None else pd.DataFrame(columns=["id", "name"])
        settings = search_settings(lib, search) if kind == "small_molecule" else {}
        lib_row = pd.Series(np.arange(len(lib_md)), index=lib_md["id"])
        lib_row = lib_row[~lib_row.index.duplicated()]
        top = ids[(ids["rank"] == 1) & (ids["score"] > min_score)
                  & (ids["method"] == "library")].copy()
        top = top.drop(columns=["rt", "precursor_mz"]).merge(  # the store's values
            md[["id", "rt", "precursor_mz"]], left_on="query_id", right_on="id",
            how="left").sort_values("score", ascending=False)
        top["name"] = top["library_id"].map(
            lambda i: lib_md["name"].iat[lib_row[i]] if i in lib_row.index else "")
        # the runner-up structure of each top hit (rank 2: one row per structure)
        second = ids[(ids["rank"] == 2) & (ids["method"] == "library")].drop_duplicates(
            "query_id").set_index("query_id")
        top["runner_up"] = top["query_id"].map(
            lambda q: (str(second.at[q, "name"]) or str(second.at[q, "library_id"]))
            if q in second.index else "")
        row_of = pd.Series(np.arange(len(md)), index=md["id"])
        row_of = row_of[~row_of.index.duplicated()]
        mirrors = []
        # one plot per compound (its best spectrum), not the same compound's spectra again
        per_compound = top[~compound_keys(top).duplicated()]
        for _, hit in per_compound.head(n_mirror).iterrows():
            if hit["library_id"] not in lib_row.index or hit["query_id"] not in row_of.index:
                continue
            q = store.peaks(int(row_of[hit["query_id"]]))
            m = lib.peaks(int(lib_row[hit["library_id"]]))
            title = (f"{short.get(hit['query_id'], hit['query_id'])}  vs  "
                     f"{hit['library_id']} ({hit['name']})  "
                     f"score {hit['score']:.3f}")
            mirrors.append({"title": title, "src": data_uri(mirror_plot(q, m, title))})
        top["confident"], confident_rule = confident_top(top, fdr, min_delta_score)
        few_hits = few_qvalues_note(top)
        compounds = _compounds(ids, fdr, min_delta_score)
        identified = md["id"].isin(top["query_id"]).to_numpy()
        answered, labels = identified, ("library hit", "no hit")
        if kind == "peptide" and denovo:  # no library search: mass-matched sequences instead
            seqs = pd.read_csv(denovo, sep="\t", usecols=["query_id", "score"])
            answered = md["id"].isin(seqs.loc[seqs["score"] > 0, "query_id"]).to_numpy()
            labels = ("mass-matched sequence", "no mass-matched sequence")
        figures = []
        if len(md):
            rt = md["rt"].to_numpy(dtype=float)
            has_rt = np.isfinite(rt)  # a spectrum without a retention time is not drawn at 0
            if has_rt.any():
                figures.append(data_uri(precursor_map(
                    rt[has_rt], md["precursor_mz"].to_numpy(dtype=float)[has_rt],
                    answered[has_rt], *labels, without_rt=int((~has_rt).sum()))))
            figures.append(data_uri(histogram(store.n_peaks, "peaks per spectrum",
                                              "peaks after filtering")))
    lost = quarantine_summary(quarantine)
    n_q = lost["n_records"]
    ei_sec = _ei_section(kind, ei, n_mirror)
    if ei_sec:  # an EI run's spectra are in its EI store, not the ESI one
        short = {**short, **ei_sec["short_id"]}
    html = _template().render(
        sample=sample, kind=kind, note=KIND_NOTES.get(kind, ""), version=__version__,
        short_id=short,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=", ".join(sorted(set(md.get("source_file", [])) | set(quarantine["source_file"]))),
        n_read=len(md) + n_q, n_kept=len(md), n_quarantined=n_q,
        n_identified=int(identified.sum()),
        n_precursor_only=sum(map(is_precursor_only, top["note"])),  # an empty run: 0
        n_confident=(None if confident_rule == NOT_ASSESSED else int(top["confident"].sum())),
        confident_rule=confident_rule, few_hits=few_hits,
        kind_hint=wrong_kind_hint(kind, len(md), quarantine),
        min_delta_score=min_delta_score,
        unanswered=_unanswered(ids, md), learned=_learned_sections(ids, md),
        **lost,
        hits=mark_adducts(top.head(500).to_dict("records")),
        hits_truncated=max(0, len(top) - 500),
        search=settings,
        compounds=compounds,
        mirrors=mirrors, figures=figures,
        peptide=_peptide_section(kind, denovo, denovo_annotations),
        ei=ei_sec)
    write_text(out, html)
