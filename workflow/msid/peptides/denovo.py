"""De novo sequencing of a run: spectra from an msid store -> PSM table (TSV) and mzTab 1.0.

TSV columns: ``query_id, rank, sequence, score, precursor_mz_error_ppm`` (ProForma sequences),
plus ``method, charge, precursor_mz, calc_mz, isotope_error`` (0: the recorded precursor is the
monoisotopic peak, 1: the 13C peak; empty when the sequence misses the precursor mass),
``isotope_corrected_ppm`` (the error against that peak), ``matches_precursor`` (whether the
sequence's mass matches the precursor within the tolerance: a row that does not is a best guess
kept with a score below 0, never a match), ``rt, native_id`` and ``aa_scores``: the
probability PepTRM gave each token of the sequence, comma-separated in sequence order (a
modified residue is one token, an N-terminal modification its own; empty for the DP, which
gives none). mzTab carries them as ``opt_ms_run[1]_aa_scores``, as Casanovo writes them.
A spectrum without a charge is sequenced as 2+ (the most common tryptic charge) and says so in
``charge_assumed``. One that gets no sequence gets no row; its reason is logged and kept in the
annotations file (``skipped``) that the run report counts: a precursor mass no sequence of the
method can reach (above ``max_len`` of the heaviest token for PepTRM, below one glycine), a
negative-mode precursor, or a spectrum the decoder found no sequence for (the DP: no chain of
residue masses through its peaks reaches the precursor mass).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msid import __version__
from msid.atomic import write_text
from msid.peptides.data import PeptideSpectrum
from msid.peptides.decode import Decoded
from msid.peptides.physics import (
    ISOTOPE,
    NTERM_MODS,
    NTERM_ONLY_RESIDUE_MODS,
    RESIDUE_MODS,
    WATER,
    Vocab,
    fragment_ions,
    neutral_from_mz,
    parse_proforma,
    plain,
    precursor_mz,
    to_proforma,
    unimod_accession,
    unimod_delta,
)
from msid.progress import progress_bar
from msid.rankings import FLOAT_FORMAT, write_table
from msid.store import SpectrumStore

COLUMNS = ["query_id", "rank", "sequence", "score", "precursor_mz_error_ppm", "method",
           "charge", "charge_assumed", "precursor_mz", "calc_mz", "isotope_error",
           "isotope_corrected_ppm", "matches_precursor", "rt", "native_id", "aa_scores"]
DEFAULT_CHARGE = 2


@dataclass
class DecodeConfig:
    method: str = "beam"  # beam | greedy
    beam_size: int = 10
    ppm: float = 50.0
    isotopes: int = 1
    top_n: int = 1  # sequences per spectrum (beam search: the best distinct mass-matching ones)
    max_spectra: int = 0  # 0: all

    def __post_init__(self) -> None:
        if self.top_n > 1 and self.method != "beam":
            raise ValueError(f"top_n {self.top_n} needs beam search (method: beam), not "
                             f"'{self.method}', which gives one sequence per spectrum")

    @classmethod
    def from_dict(cls, d: dict | None) -> DecodeConfig:
        return cls(**(d or {}))


def shipped_model() -> Path:
    """The shipped PepTRM model (resources/models/peptrm.safetensors, :mod:`msid.resources`)."""
    from msid.resources import shipped_model as shipped

    return shipped("peptrm")


def sequenced_rows(precursor_mz: np.ndarray, max_spectra: int = 0) -> np.ndarray:
    """The store rows a run sequences: those with a precursor, the first ``max_spectra`` of
    them in file order (0: all)."""
    rows = np.flatnonzero(np.isfinite(np.asarray(precursor_mz, dtype=float)))
    # the first ones in file order: the most intense-peaked first would bias
    return rows[:max_spectra] if max_spectra else rows


def spectra_from_store(store: SpectrumStore, max_spectra: int = 0
                       ) -> tuple[list[PeptideSpectrum], pd.DataFrame]:
    """MS2 spectra with a precursor; (spectra, their metadata rows incl. ``charge_assumed`` and
    ``negative``: a negative charge or ion mode, which :func:`out_of_range` sets aside)."""
    md = store.metadata.copy()
    rows = sequenced_rows(md["precursor_mz"].to_numpy(float), max_spectra)
    md = md.iloc[rows].reset_index(drop=True)
    charge = md["charge"].to_numpy(int)
    md["negative"] = (charge < 0) | (md["ion_mode"].astype(str) == "negative")
    md["charge_assumed"] = charge == 0
    md["charge"] = np.where(charge != 0, np.abs(charge), DEFAULT_CHARGE)
    spectra = []
    for r, (mz, inten) in zip(md.itertuples(), store.peaks_many(rows.tolist()), strict=True):
        spectra.append(PeptideSpectrum(str(r.id), np.asarray(mz, float),
                                       np.asarray(inten, float), float(r.precursor_mz),
                                       int(r.charge)))
    return spectra, md


def mass_range(method: str, model_path: str | os.PathLike | None) -> tuple[float, float]:
    """Neutral precursor masses (Da) a method can write a peptide for: from the lightest token
    alone to ``max_len`` of the heaviest (PepTRM, from its card), unbounded above for the DP;
    plus water and a margin for the isotope peaks and the mass tolerance."""
    import json

    from msid.modelfile import card_path

    vocab, max_len = Vocab.default(), 0
    if method == "peptrm" and model_path:
        from msid.peptides.model import PepTRMConfig  # (the method loads torch anyway)

        try:
            cfg = json.loads(card_path(model_path).read_text())["config"]
            vocab = Vocab(tuple(cfg["vocab"]))
            max_len = int(cfg["model"].get("max_len", PepTRMConfig.max_len))
        except (OSError, KeyError, TypeError, ValueError):
            pass  # loading the model names what is wrong with its card
    masses = vocab.masses[1:]
    nterm = set(vocab.nterm_ids)  # an N-terminal modification alone is no peptide
    residues = np.array([m for i, m in enumerate(vocab.masses) if i and i not in nterm])
    low = float(residues.min()) + WATER - 0.5
    high = max_len * float(masses.max()) + WATER + 3 * ISOTOPE + 0.5 if max_len else np.inf
    return low, high


def out_of_range(spectra: list[PeptideSpectrum], low: float, high: float, method: str,
                 negative: Collection[str] = ()) -> tuple[list[int], list[dict[str, str]]]:
    """(indices of the spectra to sequence, {id, reason, kind} of those set aside: a precursor
    mass out of the method's reach, or a negative-mode precursor (ids in ``negative``): the
    models read positive-mode [M+zH]z+ spectra)."""
    keep, skipped = [], []
    for k, s in enumerate(spectra):
        if s.id in negative:
            skipped.append({"id": s.id, "kind": "negative mode",
                            "reason": f"negative-mode precursor (m/z {s.precursor_mz:g}, "
                                      f"{s.charge}-): {method} sequences positive-mode "
                                      "[M+zH]z+ spectra"})
            continue
        m = neutral_from_mz(s.precursor_mz, s.charge)
        if low <= m <= high:
            keep.append(k)
            continue
        side = f"above the heaviest peptide {method} can write ({high:,.1f} Da)" if m > high \
            else f"below the lightest peptide ({low:,.1f} Da)"
        skipped.append({"id": s.id, "kind": "precursor mass out of reach",
                        "reason": f"precursor mass {m:,.1f} Da (m/z {s.precursor_mz:g}, "
                                  f"{s.charge}+) is {side}"})
    return keep, skipped


def no_sequence(spectra: list[PeptideSpectrum], decoded: list[Decoded],
                method: str) -> list[dict[str, str]]:
    """{id, reason, kind} of the spectra the decoder gave no sequence (the DP finds no chain of
    residue masses from 0 to the precursor mass, or the spectrum holds no fragment peak)."""
    out = []
    for s, d in zip(spectra, decoded, strict=True):
        if d.tokens:
            continue
        why = ("no fragment peak" if len(s.mz) == 0 else
               "no chain of residue masses through its peaks reaches the precursor mass"
               if method == "dp" else "every candidate sequence was invalid")
        out.append({"id": s.id, "kind": "no sequence", "reason": f"{method} found no sequence: "
                    f"{why}"})
    return out


def decoded_rows(spectra: list[PeptideSpectrum], md: pd.DataFrame, decoded: list[Decoded],
                 method: str) -> pd.DataFrame:
    rows = []
    for s, meta, best in zip(spectra, md.itertuples(), decoded, strict=True):
        if not best.tokens:
            continue
        for rank, d in enumerate([best, *best.alternatives], 1):
            calc = precursor_mz(d.tokens, s.charge)
            # a sequence that matches the 13C peak picked as the precursor: ~1,000/m ppm off
            iso = round((s.precursor_mz - calc) * s.charge / ISOTOPE) if d.mass_ok else None
            # the error against the isotope peak the sequence matches (what the tolerance judged)
            peak = calc + (iso or 0) * ISOTOPE / s.charge
            corrected = (s.precursor_mz - peak) / peak * 1e6 if iso is not None else np.nan
            rows.append({"query_id": s.id, "rank": rank, "sequence": to_proforma(d.tokens),
                         "score": float(d.score),
                         "precursor_mz_error_ppm": (s.precursor_mz - calc) / calc * 1e6,
                         "method": method, "charge": s.charge,
                         "charge_assumed": bool(meta.charge_assumed),
                         "precursor_mz": s.precursor_mz, "calc_mz": calc, "isotope_error": iso,
                         "isotope_corrected_ppm": corrected,
                         "matches_precursor": bool(d.mass_ok),
                         "rt": float(meta.rt) if np.isfinite(meta.rt) else np.nan,
                         "native_id": str(meta.native_id),
                         "aa_scores": ",".join(f"{p:.3f}" for p in d.aa_scores)})
    return pd.DataFrame(rows, columns=COLUMNS).astype({"isotope_error": "Int64"})


def sequence_spectra(spectra: list[PeptideSpectrum], method: str, model_path: str | None,
                     cfg: DecodeConfig, dp_cfg: dict | None = None,
                     progress: bool = True) -> list[Decoded]:
    """Decode every spectrum with ``peptrm`` (a model file) or ``dp`` (the baseline)."""
    if method == "dp":
        from msid.peptides.dp import DPConfig, SpectrumGraphDP

        if cfg.top_n > 1:
            raise ValueError(f"top_n {cfg.top_n} needs PepTRM's beam search; the DP baseline "
                             "gives one sequence per spectrum")

        dp = SpectrumGraphDP(DPConfig.from_dict(dp_cfg))
        return [dp.sequence(s) for s in progress_bar(spectra, desc="de novo (DP)",
                                                     disable=not progress, mininterval=2)]
    if method != "peptrm":
        raise ValueError(f"unknown de novo method '{method}' (peptrm or dp)")
    if not model_path:
        raise ValueError("method peptrm needs a model file (--model)")
    from msid.peptides.training import load_peptrm, predict

    model, _ = load_peptrm(model_path)
    out: list[Decoded] = []
    chunk = 256
    for k in progress_bar(range(0, len(spectra), chunk), desc="de novo (PepTRM)",
                          disable=not progress, mininterval=2):
        out += predict(model, spectra[k:k + chunk], cfg.method, cfg.beam_size, cfg.ppm,
                       cfg.isotopes, top_n=cfg.top_n)
    return out


def write_tsv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    write_table(df, path, float_format=FLOAT_FORMAT)


def _mztab_mods(tokens: list[str]) -> str:
    """mzTab modification column: ``pos-UNIMOD:n`` (0 = N-terminus)."""
    out, pos = [], 0
    for t in tokens:
        if t.endswith("-"):
            out.append(f"0-{unimod_accession(t[1:-2])}")
            continue
        pos += 1
        if "[" in t:
            out.append(f"{pos}-{unimod_accession(t[2:-1], t[0])}")
    return ",".join(out) if out else "null"


def write_mztab(df: pd.DataFrame, path: str | os.PathLike, run_location: str,
                method: str) -> None:
    """mzTab 1.0.0 (Summary, Identification): metadata + PSM section, one PSM per sequence
    (a spectrum's alternatives, ``top_n`` > 1, share its ``spectra_ref``; ``opt_global_rank``
    says which is its best)."""
    loc = Path(run_location).resolve().as_uri() if run_location else "null"
    mtd = [("mzTab-version", "1.0.0"), ("mzTab-mode", "Summary"),
           ("mzTab-type", "Identification"), ("mzTab-ID", f"msid-denovo-{method}"),
           ("description", f"msid de novo peptide sequencing ({method}); no database; "
                           "leucine and isoleucine have one mass: every I/L is written L"),
           ("ms_run[1]-location", loc),
           ("software[1]", f"[MS, MS:1001456, analysis software, msid {__version__}]"),
           ("psm_search_engine_score[1]",
            "[MS, MS:1001143, search engine specific score for PSMs, ]"),
           ("fixed_mod[1]", "[MS, MS:1002453, No fixed modifications searched, ]")]
    mods = sorted({(m, a) for a, m in RESIDUE_MODS} | {(m, "") for m in NTERM_MODS})
    for k, (m, a) in enumerate(mods, 1):
        acc = unimod_accession(m, a)
        mtd.append((f"variable_mod[{k}]", f"[UNIMOD, {acc}, {m}, ]"))
        mtd.append((f"variable_mod[{k}]-site", a or "N-term"))
        first = not a or m in NTERM_ONLY_RESIDUE_MODS  # pyro-Glu etc. only open a sequence
        mtd.append((f"variable_mod[{k}]-position", "Any N-term" if first else "Anywhere"))
    lines = [f"MTD\t{k}\t{v}" for k, v in mtd]
    cols = ["sequence", "PSM_ID", "accession", "unique", "database", "database_version",
            "search_engine", "search_engine_score[1]", "modifications", "retention_time",
            "charge", "exp_mass_to_charge", "calc_mass_to_charge", "spectra_ref", "pre",
            "post", "start", "end", "opt_global_proforma", "opt_global_precursor_ppm",
            "opt_global_isotope_error", "opt_global_isotope_corrected_ppm",
            "opt_global_matches_precursor", "opt_global_rank", "opt_ms_run[1]_aa_scores"]
    lines.append("PSH\t" + "\t".join(cols))
    for k, r in enumerate(df.itertuples(), 1):
        tokens = parse_proforma(r.sequence)
        ref = f"ms_run[1]:{r.native_id or r.query_id}"  # a PSM's row number is no spectrum
        vals = [plain(tokens), str(k), "null", "null", "null", "null",
                f"[MS, MS:1001456, analysis software, msid {method}]", f"{r.score:.6f}",
                _mztab_mods(tokens), f"{r.rt:.3f}" if r.rt == r.rt else "null",
                str(int(r.charge)), f"{r.precursor_mz:.6f}", f"{r.calc_mz:.6f}", ref,
                "null", "null", "null", "null", r.sequence, f"{r.precursor_mz_error_ppm:.2f}",
                "null" if pd.isna(r.isotope_error) else str(int(r.isotope_error)),
                "null" if pd.isna(r.isotope_corrected_ppm) else f"{r.isotope_corrected_ppm:.2f}",
                "true" if r.matches_precursor else "false",
                str(int(r.rank)),  # with --top-n, a spectrum's alternatives share its spectra_ref
                str(r.aa_scores) if isinstance(r.aa_scores, str) and r.aa_scores else "null"]
        lines.append("PSM\t" + "\t".join(vals))
    write_text(path, "\n".join(lines) + "\n")


def annotate(s: PeptideSpectrum, tokens: list[str], tol_da: float = 0.05) -> dict:
    """Peaks of ``s`` and which of them are b/y ions of ``tokens`` (charges 1 and 2)."""
    ions = fragment_ions(tokens, (1, 2) if s.charge >= 2 else (1,))
    mz, inten = np.asarray(s.mz, float), np.asarray(s.intensity, float)
    labels = [""] * len(mz)
    for key, arr in ions.items():
        kind, z = key[0], int(key[1])
        for i, m in enumerate(arr):
            if len(mz) == 0:
                break
            j = int(np.argmin(np.abs(mz - m)))
            if abs(mz[j] - m) <= tol_da and not labels[j]:
                labels[j] = f"{kind}{i + 1}" + ("" if z == 1 else "++")
    return {"id": s.id, "sequence": to_proforma(tokens), "charge": s.charge,
            "precursor_mz": s.precursor_mz, "mz": mz.tolist(),
            "intensity": (inten / max(inten.max(), 1e-12)).tolist() if len(inten) else [],
            "labels": labels,
            "n_matched": int(sum(1 for x in labels if x)),
            "precursor_mass": neutral_from_mz(s.precursor_mz, s.charge)}


def denovo_run(store_path: str | os.PathLike, model_path: str | os.PathLike,
               cfg: DecodeConfig, *, tsv: str | os.PathLike,
               mztab: str | os.PathLike | None = None,
               annotations: str | os.PathLike | None = None, run_location: str = "",
               n_annotated: int = 8, method: str = "peptrm", dp_cfg: dict | None = None,
               log=print) -> pd.DataFrame:
    """Sequence every MS2 spectrum of a store; write the TSV (and mzTab, annotated spectra)."""
    import json

    with SpectrumStore(store_path) as store:
        spectra, md = spectra_from_store(store, cfg.max_spectra)
    n_spectra = len(spectra)
    keep, skipped = out_of_range(spectra, *mass_range(method, model_path), method,
                                 negative=set(md.loc[md["negative"], "id"].astype(str)))
    if skipped:
        log(f"{len(skipped)} spectra not sequenced (precursor mass out of reach or negative "
            "mode): "
            + "; ".join(f"{q['id']}: {q['reason']}" for q in skipped[:5])
            + (" ..." if len(skipped) > 5 else ""))
        spectra = [spectra[k] for k in keep]
        md = md.iloc[keep].reset_index(drop=True)
    dec = sequence_spectra(spectra, method, str(model_path), cfg, dp_cfg)
    unsolved = no_sequence(spectra, dec, method)
    if unsolved:
        log(f"{len(unsolved)} spectra without a sequence: "
            + "; ".join(f"{q['id']}: {q['reason']}" for q in unsolved[:5])
            + (" ..." if len(unsolved) > 5 else ""))
        skipped = [*skipped, *unsolved]
    df = decoded_rows(spectra, md, dec, method)
    write_tsv(df, tsv)
    if mztab:
        write_mztab(df, mztab, run_location, method)
    if annotations is not None:
        by_id = {s.id: s for s in spectra}
        top = df[df["rank"] == 1].sort_values("score", ascending=False).head(n_annotated)
        ann = []
        for r in top.itertuples():
            a = annotate(by_id[r.query_id], parse_proforma(r.sequence))
            a.update(score=float(r.score), ppm=float(r.precursor_mz_error_ppm), rt=r.rt)
            ann.append(a)
        write_text(annotations, json.dumps({"method": method, "n_spectra": len(spectra),
                                            "n_skipped": len(skipped), "skipped": skipped,
                                            "n_sequenced": int((df["rank"] == 1).sum()),
                                            "n_mass_matched": int(sum(d.mass_ok for d in dec)),
                                            "spectra": ann}, default=float))
    log(f"de novo ({method}): {n_spectra} spectra, {int((df['rank'] == 1).sum())} sequenced, "
        f"{len(skipped)} not sequenced, "
        f"{sum(d.mass_ok for d in dec)} matching their precursor mass")
    return df


__all__ = [
    "COLUMNS",
    "DecodeConfig",
    "annotate",
    "decoded_rows",
    "denovo_run",
    "mass_range",
    "out_of_range",
    "sequence_spectra",
    "spectra_from_store",
    "unimod_delta",
    "write_mztab",
    "write_tsv",
]
