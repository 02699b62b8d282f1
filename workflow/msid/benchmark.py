"""Benchmark protocol on a structure-labelled store: fold split, query selection, candidate sets.

The benchmark is MassSpecGym's retrieval task on our own data: queries are the spectra of one
fold (structures never seen in training), candidates are pool molecules of the true molecule's
mass (10 ppm) or formula, at most 256, true molecule included, all written the same way.
A query whose set holds only the true molecule ranks nothing (every method, random included,
gets it right), so sets smaller than ``min_candidates`` are left out and counted.

Candidate settings (the ``candidate_kinds`` of the config): ``mass`` and ``formula`` keep every
query with at least ``min_candidates``; ``mass_hard`` is MassSpecGym's setting, whose sets are
large: the same mass candidates from the whole pool (decoys included, up to 256) but only the
queries with at least ``hard_min_candidates`` (16) of them, where chance is at most 1/16 and
a method must read the spectrum to score.

Splits (the ``splits`` of the config): ``inchikey`` scores every query of the fold (structures
split by InChIKey first block, so close analogues of a test molecule may train); ``far`` is the
generalisation-demanding split, as MassSpecGym's MCES split is: only the queries whose
structure is far from every training structure (nearest train-fold Tanimoto on 2048-bit Morgan
radius-2 fingerprints below ``far_max_tanimoto``, 0.5). It is a fold scheme whose test fold is
a subset of the InChIKey test fold, so every shipped model is valid on both. Fingerprints, not
MCES: the nearest-neighbour search needs ~2.3M test x train pairs, a few seconds with
fingerprints and tens of CPU hours with MCES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from msid.candidate_sets import candidates_for_queries
from msid.chem.candidates import CandidateIndex
from msid.chem.structures import write_structure_table
from msid.rankings import write_table
from msid.store import SpectrumStore, subset_store

SPLITS = ("inchikey", "far")
FAR_MAX_TANIMOTO = 0.5


@dataclass
class BenchmarkConfig:
    adducts: list[str] = field(default_factory=lambda: ["[M+H]+"])
    max_queries: int = 0  # 0: every query of the fold
    ppm: float = 10.0
    max_candidates: int = 256
    min_candidates: int = 2  # sets smaller than this (only the true molecule) are left out
    hard_min_candidates: int = 16  # the mass_hard setting keeps only sets at least this large
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> BenchmarkConfig:
        return cls(**(d or {}))


# candidate setting -> (how candidates are drawn, which minimum set size applies)
CANDIDATE_SETTINGS = {"mass": ("mass", "min_candidates"),
                      "formula": ("formula", "min_candidates"),
                      "mass_hard": ("mass", "hard_min_candidates")}


def candidate_setting(name: str, cfg: BenchmarkConfig) -> tuple[str, int]:
    """(candidate kind for :func:`candidates_for_queries`, minimum set size) of a setting."""
    if name not in CANDIDATE_SETTINGS:
        raise ValueError(f"unknown candidate setting '{name}' "
                         f"(one of {', '.join(CANDIDATE_SETTINGS)})")
    kind, minimum = CANDIDATE_SETTINGS[name]
    return kind, int(getattr(cfg, minimum))


def fold_rows(store: SpectrumStore, fold: str) -> list[int]:
    return np.flatnonzero(store.metadata["fold"].to_numpy() == fold).tolist()


def split_folds(src: str | os.PathLike, outputs: dict[str, str | os.PathLike]) -> dict[str, int]:
    """Write one store per fold (``{'train': path, ...}``); returns spectra per fold."""
    counts = {}
    with SpectrumStore(src) as store:
        for fold, out in outputs.items():
            rows = fold_rows(store, fold)
            subset_store(src, out, rows, provenance={"fold": fold})
            counts[fold] = len(rows)
    return counts


def select_queries(store: SpectrumStore, cfg: BenchmarkConfig) -> list[int]:
    """Rows used as benchmark queries: labelled, wanted adducts, optionally a seeded sample."""
    md = store.metadata
    ok = (md["smiles"] != "") & (md["precursor_mz"] > 0)
    if cfg.adducts:
        ok &= md["adduct"].isin(cfg.adducts)
    rows = np.flatnonzero(ok.to_numpy())
    if cfg.max_queries and len(rows) > cfg.max_queries:
        rng = np.random.default_rng(cfg.seed)
        rows = np.sort(rng.choice(rows, cfg.max_queries, replace=False))
    return rows.tolist()


def make_benchmark_inputs(queries: str | os.PathLike, index_path: str | os.PathLike,
                          cfg: BenchmarkConfig, out_queries: str | os.PathLike,
                          out_candidates: dict[str, str | os.PathLike],
                          out_structures: str | os.PathLike | None = None) -> dict:
    """Query store + one candidate TSV (query_id, smiles) per candidate kind; with
    ``out_structures``, every candidate SMILES written there as parsed (a structure table that
    the ranking jobs load instead of parsing each candidate again)."""
    index = CandidateIndex(index_path)
    with SpectrumStore(queries) as store:
        rows = select_queries(store, cfg)
        subset_store(queries, out_queries, rows, provenance={"benchmark": cfg.__dict__})
    stats = {}
    with SpectrumStore(out_queries) as qs:
        all_rows = list(range(len(qs)))
        drawn: dict[str, dict] = {}  # settings that draw the same kind share the draw
        written: set[str] = set()
        for name, path in out_candidates.items():
            kind, min_candidates = candidate_setting(name, cfg)
            if kind not in drawn:
                drawn[kind] = candidates_for_queries(qs, all_rows, index=index, kind=kind,
                                                     ppm=cfg.ppm, max_n=cfg.max_candidates,
                                                     include_true=True, seed=cfg.seed)
            cands = drawn[kind]
            kept = {q: lst for q, lst in cands.items() if len(lst) >= min_candidates}
            df = pd.DataFrame([(q, c.smiles_flat) for q, lst in kept.items() for c in lst],
                              columns=["query_id", "smiles"])
            write_table(df, path)
            written.update(df["smiles"])
            sizes = np.array([len(v) for v in kept.values()] or [0])
            stats[name] = {"queries": len(kept), "median": float(np.median(sizes)),
                           "min": int(sizes.min()), "max": int(sizes.max()),
                           "left_out": len(all_rows) - len(kept),
                           "min_candidates": min_candidates}
    if out_structures is not None:
        write_structure_table(sorted(written), out_structures)
    return stats


def truth_table(store: SpectrumStore, candidates: str | os.PathLike | None = None
                ) -> pd.DataFrame:
    """(query_id, smiles, inchikey) of every query; with ``candidates`` (a candidate TSV) only
    the queries that have a candidate set there (the ones a method is asked to rank)."""
    md = store.metadata
    truth = pd.DataFrame({"query_id": md["id"], "smiles": md["smiles"],
                          "inchikey": md["inchikey"]})
    if candidates is not None:
        asked = set(pd.read_csv(candidates, sep="\t", dtype=str, keep_default_na=False,
                                usecols=["query_id"])["query_id"])
        truth = truth[truth["query_id"].astype(str).isin(asked)].reset_index(drop=True)
    return truth


def blind_donors(keys: np.ndarray, seed: int) -> np.ndarray:
    """For each query i, the index of a query of another structure whose peaks it gets in the
    spectrum-blind control (a seeded permutation, same-structure pairs repaired by swaps)."""
    n = len(keys)
    rng = np.random.default_rng(seed)
    donor = rng.permutation(n)
    for _ in range(100):
        clash = np.flatnonzero(keys[donor] == keys)
        if clash.size == 0 or n < 2:
            break
        for i in clash:
            j = int(rng.integers(n))
            donor[i], donor[j] = donor[j], donor[i]
    return donor


def spectrum_blind_queries(src: str | os.PathLike, out: str | os.PathLike,
                           seed: int = 0) -> int:
    """The spectrum-blind control: every query keeps its metadata (precursor, adduct, truth)
    but gets the peaks of a query of another structure. A method that scores as well on these
    as on the real queries is not reading the spectrum. Returns the number of queries."""
    from msid.store import SpectrumRecord, SpectrumStoreWriter

    with SpectrumStore(src) as store:
        md = store.metadata
        keys = md["inchikey"].str[:14].to_numpy()
        n = len(store)
        donor = blind_donors(keys, seed)
        mz, inten, off = store.all_peaks()
        records = md.to_dict("records")
        with SpectrumStoreWriter(out, provenance={"stage": "spectrum_blind_control",
                                                  "input": str(src), "seed": seed}) as w:
            for i in range(n):
                d = int(donor[i])
                w.add(SpectrumRecord(mz[off[d]:off[d + 1]], inten[off[d]:off[d + 1]],
                                     records[i]))
    return n


def nearest_tanimoto(query_smiles: list[str], reference_smiles: list[str]) -> np.ndarray:
    """Per query, the highest Tanimoto (Morgan radius 2, 2048 bits) to any reference
    structure; 0 where a query or every reference fails to parse."""
    from rdkit import DataStructs

    from msid.chem.fingerprints import morgan_bitvect

    refs = [f for f in (morgan_bitvect(s) for s in dict.fromkeys(reference_smiles))
            if f is not None]
    out = np.zeros(len(query_smiles))
    if not refs:
        return out
    best: dict[str, float] = {}
    for i, smi in enumerate(query_smiles):
        if smi not in best:
            fp = morgan_bitvect(smi)
            best[smi] = (max(DataStructs.BulkTanimotoSimilarity(fp, refs))
                         if fp is not None else 0.0)
        out[i] = best[smi]
    return out


def query_splits(queries: str | os.PathLike, train: str | os.PathLike,
                 far_max_tanimoto: float = FAR_MAX_TANIMOTO) -> pd.DataFrame:
    """Per benchmark query: its nearest train-fold structure's Tanimoto and the splits it
    belongs to (``inchikey`` always; ``far`` when that Tanimoto is below
    ``far_max_tanimoto``). ``train`` is the store whose structures the models trained on."""
    with SpectrumStore(train) as st:
        ref = [s for s in st.metadata["smiles"].astype(str) if s]
    with SpectrumStore(queries) as st:
        md = st.metadata
        qids, smiles = md["id"].astype(str).tolist(), md["smiles"].astype(str).tolist()
    near = nearest_tanimoto(smiles, ref)
    far = near < far_max_tanimoto
    return pd.DataFrame({"query_id": qids, "nearest_train_tanimoto": np.round(near, 4),
                         "splits": np.where(far, "inchikey,far", "inchikey")})


def split_query_ids(splits: pd.DataFrame, split: str) -> set[str]:
    """The query ids of one split in a :func:`query_splits` table."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' (one of {', '.join(SPLITS)})")
    member = splits["splits"].astype(str).str.split(",").apply(lambda xs: split in xs)
    return set(splits.loc[member, "query_id"].astype(str))
