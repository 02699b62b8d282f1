"""``msid identify``: queries (+ library / candidates) -> a Rankings table.

Queries may be a spectrum store (``.h5``) or any readable file (mzML/mzXML/MGF/MSP, gz allowed),
which is converted and preprocessed on the way in; bad records are quarantined and reported,
never fatal.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from msid.chem.adducts import neutral_mass
from msid.chem.candidates import CandidateIndex, PoolSource, build_index, candidate_set
from msid.chem.structures import Structure, parse_structure
from msid.convert import convert_file
from msid.methods import Method, iter_queries
from msid.preprocess import PreprocessConfig, preprocess_store
from msid.rankings import rows_for_query, write_rankings
from msid.store import SpectrumStore

REPO_RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def default_pool_sources(resources: Path = REPO_RESOURCES) -> list[PoolSource]:
    cdir = resources / "candidates"
    return [PoolSource(cdir / "candidate_pool.tsv.gz", "pool"),
            PoolSource(cdir / "moses_train_smiles.csv.gz", "moses")]


def cached_index(path: str | os.PathLike | None = None, n_jobs: int = 1) -> CandidateIndex:
    """The candidate index at ``path``; without a path, the shipped pool, built once and cached."""
    if path:
        return CandidateIndex(path)
    cache = Path(os.environ.get("MSID_CACHE", Path.home() / ".cache" / "msid"))
    sources = default_pool_sources()
    from msid.chem.candidates import sources_digest

    target = cache / f"candidates-{sources_digest(sources)}.npz"
    if not target.exists():
        build_index(sources, target, n_jobs=n_jobs)
    return CandidateIndex(target)


@dataclass
class LoadedQueries:
    store: SpectrumStore
    converted_from: str = ""


def load_queries(path: str | os.PathLike, workdir: str | os.PathLike,
                 preprocess: PreprocessConfig | None = None) -> LoadedQueries:
    path = Path(path)
    if path.suffix == ".h5":
        return LoadedQueries(SpectrumStore(path))
    workdir = Path(workdir)
    raw, clean = workdir / "queries.raw.h5", workdir / "queries.h5"
    convert_file(path, raw, progress=False)
    preprocess_store(raw, clean, preprocess or PreprocessConfig(), progress=False)
    return LoadedQueries(SpectrumStore(clean), converted_from=str(path))


# -- candidate sets -----------------------------------------------------------------------------
def read_candidate_file(path: str | os.PathLike) -> tuple[str, dict[str, list[str]]]:
    """('smiles', {query smiles: [candidates]}) for MassSpecGym JSON; ('query_id', ...) for TSV."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    name = path.name.removesuffix(".gz")
    if name.endswith(".json"):
        with opener(path, "rt") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{query SMILES: [candidates]}}")
        return "smiles", {str(k): [str(s) for s in v] for k, v in data.items()}
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if not {"query_id", "smiles"} <= set(df.columns):
        raise ValueError(f"{path}: a candidate TSV needs columns query_id, smiles")
    return "query_id", df.groupby("query_id")["smiles"].apply(list).to_dict()


def _structures(smiles: Iterable[str], max_n: int) -> list[Structure]:
    out, seen = [], set()
    for s in smiles:
        st = parse_structure(s)
        if st is None or not st.inchikey or st.inchikey14 in seen:
            continue
        seen.add(st.inchikey14)
        out.append(st)
        if len(out) >= max_n:
            break
    return out


def shuffled(cands: list[Structure], seed: int, key: str) -> list[Structure]:
    """Candidates in a seeded random order: no method may learn from list position."""
    import hashlib

    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")
    order = np.random.default_rng(h).permutation(len(cands))
    return [cands[i] for i in order]


def candidates_for_queries(store: SpectrumStore, rows: list[int], *,
                           index: CandidateIndex | None = None,
                           candidate_file: str | os.PathLike | None = None,
                           kind: str = "mass", ppm: float = 10.0, max_n: int = 256,
                           include_true: bool = False, seed: int = 0
                           ) -> dict[str, list[Structure]]:
    """Per query id: its candidate structures (normalised, unique, shuffled).

    ``kind='mass'`` takes pool molecules within ``ppm`` of the neutral mass: the true molecule's
    mass when ``include_true`` (benchmark, MassSpecGym protocol), else the mass derived from the
    precursor m/z and adduct. ``kind='formula'`` takes the true molecule's formula.
    """
    md = store.metadata
    keyed: tuple[str, dict[str, list[str]]] | None = None
    if candidate_file:
        keyed = read_candidate_file(candidate_file)
    out: dict[str, list[Structure]] = {}
    for r in rows:
        m = md.iloc[r]
        qid = str(m["id"])
        true = parse_structure(str(m["smiles"])) if m["smiles"] else None
        if keyed is not None:
            key_kind, table = keyed
            if key_kind == "smiles":
                lst = table.get(str(m["smiles"]))
                if lst is None and true is not None:  # tolerate differently written SMILES
                    lst = next((v for k, v in table.items()
                                if (p := parse_structure(k)) and p.inchikey14 == true.inchikey14),
                               None)
            else:
                lst = table.get(qid)
            cands = _structures(lst or [], max_n)
            if include_true and true and all(c.inchikey14 != true.inchikey14 for c in cands):
                cands = [true, *cands[: max_n - 1]]
        else:
            if index is None:
                raise ValueError("candidates need a candidate index or a candidate file")
            if kind == "formula":
                if true is None:
                    raise ValueError("formula candidates need the query's true formula")
                cands = candidate_set(index, formula=true.formula, max_n=max_n,
                                      true=true if include_true else None)
            else:
                mass = (true.exact_mass if (include_true and true) else
                        neutral_mass(float(m["precursor_mz"]), str(m["adduct"]),
                                     str(m["ion_mode"]), int(m["charge"])))
                cands = ([] if not np.isfinite(mass) else
                         candidate_set(index, mass=mass, ppm=ppm, max_n=max_n,
                                       true=true if include_true else None))
        out[qid] = shuffled(cands, seed, qid)
    return out


# -- ranking ------------------------------------------------------------------------------------
def rank_queries(method: Method, store: SpectrumStore, rows: list[int] | None = None,
                 candidates: dict[str, list[Structure]] | None = None, top_k: int = 0,
                 progress: bool = True, label: str | None = None) -> list[dict]:
    """Rows of the Rankings table for ``rows`` of ``store`` (all when None)."""
    out: list[dict] = []
    rows = list(range(len(store))) if rows is None else rows
    for q in tqdm(iter_queries(store, rows), total=len(rows), desc=f"identify {method.name}",
                  unit=" queries", disable=not progress, mininterval=2):
        cands = None if candidates is None else candidates.get(q.query_id, [])
        ranked = method.rank(q, cands)
        if top_k:
            ranked = ranked[:top_k]
        out += rows_for_query(q.query_id, label or method.name, ranked)
    return out


def identify_to_file(method: Method, store: SpectrumStore, out: str | os.PathLike,
                     candidates: dict[str, list[Structure]] | None = None,
                     top_k: int = 0, progress: bool = True) -> Path:
    return write_rankings(rank_queries(method, store, None, candidates, top_k, progress), out)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="msid-")
