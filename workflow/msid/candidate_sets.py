"""Per-query candidate sets: from a candidate file (MassSpecGym JSON / TSV) or the pool index.

Every candidate is normalised (RDKit canonical, stereo removed), de-duplicated by InChIKey first
block and shuffled with a seeded RNG, so neither spelling nor list position tells which is true.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from msid.chem.adducts import neutral_mass
from msid.chem.candidates import CandidateIndex, candidate_set
from msid.chem.structures import Structure, parse_structure, unique_structures
from msid.store import SpectrumStore


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


def shuffled(cands: list[Structure], seed: int, key: str) -> list[Structure]:
    """Candidates in a seeded random order: no method may learn from list position."""
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
    md = store.metadata.to_dict("records")
    keyed: tuple[str, dict[str, list[str]]] | None = None
    if candidate_file:
        keyed = read_candidate_file(candidate_file)
    out: dict[str, list[Structure]] = {}
    for r in rows:
        m = md[r]
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
            cands = unique_structures(lst or [], max_n)
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
