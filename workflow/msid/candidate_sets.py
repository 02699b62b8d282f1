"""Per-query candidate sets: from a candidate file (MassSpecGym JSON / TSV) or the pool index.

Every candidate is normalised (RDKit canonical, stereo removed), de-duplicated by InChIKey first
block and shuffled with a seeded RNG, so neither spelling nor list position tells which is true.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from msid.chem.adducts import mass_ppm, neutral_mass
from msid.chem.candidates import CandidateIndex, candidate_set
from msid.chem.structures import Structure, parse_structure, unique_structures
from msid.io.errors import InputFileError
from msid.store import SpectrumStore

log = logging.getLogger("msid.candidates")


@dataclass
class CandidateTable:
    """A candidate file as read: ``kind`` 'smiles' (keyed by the query's SMILES, MassSpecGym
    JSON) or 'query_id' (TSV with columns query_id, smiles)."""

    path: str
    kind: str
    table: dict[str, list[str]]


@dataclass
class CandidateFileReport:
    """What a candidate file held that no ranking could use, with counts."""

    path: str
    keys: int = 0  # query ids / query SMILES in the file
    unknown_keys: int = 0  # ... that match no query
    unknown_examples: list[str] = field(default_factory=list)
    empty_smiles: int = 0  # candidate entries (of matched queries) with no SMILES
    invalid_smiles: int = 0  # ... that RDKit cannot parse
    invalid_examples: list[str] = field(default_factory=list)
    queries_without_entry: int = 0  # queries the file has no candidates for

    @property
    def dropped(self) -> int:
        return self.unknown_keys + self.empty_smiles + self.invalid_smiles

    def lines(self) -> list[str]:
        """One line per kind of loss (none when nothing was lost)."""
        name = Path(self.path).name
        out = []
        if self.unknown_keys:
            ex = ", ".join(self.unknown_examples)
            out.append(f"{name}: {self.unknown_keys} of {self.keys} entries match no query "
                       f"(dropped; e.g. {ex})")
        if self.invalid_smiles:
            ex = ", ".join(self.invalid_examples)
            out.append(f"{name}: {self.invalid_smiles} candidate SMILES RDKit cannot parse "
                       f"(dropped; e.g. {ex})")
        if self.empty_smiles:
            out.append(f"{name}: {self.empty_smiles} empty candidate SMILES (dropped)")
        if self.queries_without_entry:
            out.append(f"{name}: {self.queries_without_entry} queries have no candidates in "
                       "this file")
        return out


_JSON_SHAPE = "expected a JSON object {query SMILES: [candidate SMILES, ...]}"


def read_candidate_file(path: str | os.PathLike) -> CandidateTable:
    """Read and check a candidate file; :class:`InputFileError` names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "candidate file does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a candidate file")
    opener = gzip.open if path.name.endswith(".gz") else open
    name = path.name.removesuffix(".gz")
    try:
        if name.endswith(".json"):
            with opener(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise InputFileError(path, f"{_JSON_SHAPE}, found a {type(data).__name__}")
            for k, v in data.items():
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise InputFileError(path, f"{_JSON_SHAPE}; key '{str(k)[:40]}' holds "
                                               f"{json.dumps(v)[:40]}")
            return CandidateTable(str(path), "smiles", {str(k): v for k, v in data.items()})
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except json.JSONDecodeError as e:
        raise InputFileError(path, f"not valid JSON ({e.msg} at line {e.lineno}, "
                                   f"column {e.colno})") from e
    except pd.errors.EmptyDataError as e:
        raise InputFileError(path, "candidate file is empty") from e
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise InputFileError(path, f"cannot read candidate file ({e})") from e
    if not {"query_id", "smiles"} <= set(df.columns):
        raise InputFileError(path, "a candidate TSV needs columns query_id, smiles (found "
                                   f"{', '.join(map(str, df.columns[:6]))})")
    table = df.groupby("query_id", sort=False)["smiles"].apply(list).to_dict()
    return CandidateTable(str(path), "query_id", {str(k): v for k, v in table.items()})


def _audit(report: CandidateFileReport, lst: list[str]) -> None:
    for smi in lst:
        if not smi.strip():
            report.empty_smiles += 1
        elif parse_structure(smi) is None:
            report.invalid_smiles += 1
            if len(report.invalid_examples) < 3:
                report.invalid_examples.append(repr(smi[:30]))


def shuffled(cands: list[Structure], seed: int, key: str) -> list[Structure]:
    """Candidates in a seeded random order: no method may learn from list position."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")
    order = np.random.default_rng(h).permutation(len(cands))
    return [cands[i] for i in order]


def candidates_for_queries(store: SpectrumStore, rows: list[int], *,
                           index: CandidateIndex | None = None,
                           candidate_file: str | os.PathLike | CandidateTable | None = None,
                           kind: str = "mass", ppm: float = 10.0, max_n: int = 256,
                           include_true: bool = False, seed: int = 0,
                           report: CandidateFileReport | None = None
                           ) -> dict[str, list[Structure]]:
    """Per query id: its candidate structures (normalised, unique, shuffled).

    ``kind='mass'`` takes pool molecules within ``ppm`` of the true molecule's neutral mass when
    ``include_true`` (benchmark, MassSpecGym protocol), else those whose ion (the query's
    adduct) is within ``ppm`` of the precursor m/z, as library hits are matched
    (:func:`msid.chem.adducts.mass_ppm`). ``kind='formula'`` takes the true molecule's
    formula, else the formula the query carries (an MGF ``FORMULA=`` line); a query with
    neither gets none.
    ``candidate_file``: a path or a :class:`CandidateTable` already read. What it holds that no
    query can use (unknown query keys, empty or unparsable SMILES) is counted into ``report``
    (when given; else logged as warnings).
    """
    if max_n < 1:
        raise ValueError(f"max_n must be a positive number of candidates, not {max_n}")
    md = store.metadata.to_dict("records")
    keyed: tuple[str, dict[str, list[str]]] | None = None
    if candidate_file:
        cf = (candidate_file if isinstance(candidate_file, CandidateTable)
              else read_candidate_file(candidate_file))
        keyed = (cf.kind, cf.table)
        announce = report is None  # a caller that passes a report prints it itself
        report = report if report is not None else CandidateFileReport(cf.path)
        report.path, report.keys = cf.path, len(cf.table)
        used: set[str] = set()
    out: dict[str, list[Structure]] = {}
    for r in rows:
        m = md[r]
        qid = str(m["id"])
        true = parse_structure(str(m["smiles"])) if m["smiles"] else None
        if keyed is not None:
            key_kind, table = keyed
            key = str(m["smiles"]) if key_kind == "smiles" else qid
            lst = table.get(key)
            if lst is None and key_kind == "smiles" and true is not None:
                key = next((k for k in table  # tolerate differently written SMILES
                            if (p := parse_structure(k)) and p.inchikey14 == true.inchikey14),
                           "")
                lst = table.get(key)
            if lst is None:
                report.queries_without_entry += 1
            elif key not in used:
                used.add(key)
                _audit(report, lst)
            cands = unique_structures(lst or [], max_n)
            if include_true and true and all(c.inchikey14 != true.inchikey14 for c in cands):
                cands = [true, *cands[: max_n - 1]]
        else:
            if index is None:
                raise ValueError("candidates need a candidate index or a candidate file")
            if kind == "formula":  # the structure's formula, else the one the query carries
                formula = true.formula if true is not None else str(m.get("formula") or "")
                cands = (candidate_set(index, formula=formula, max_n=max_n,
                                       true=true if include_true else None)
                         if formula else [])  # no formula: no candidates, and the row says so
            elif include_true and true:  # MassSpecGym: ppm of the true molecule's mass
                cands = candidate_set(index, mass=true.exact_mass, ppm=ppm, max_n=max_n,
                                      true=true)
            else:  # a query: ppm of its precursor m/z, as library hits are matched
                ion = (float(m["precursor_mz"]), str(m["adduct"]), str(m["ion_mode"]),
                       int(m["charge"]))
                mass = neutral_mass(*ion)
                cands = ([] if not np.isfinite(mass) else
                         candidate_set(index, mass=mass, ppm=mass_ppm(ppm, *ion), max_n=max_n))
        out[qid] = shuffled(cands, seed, qid)
    if keyed is not None:
        unknown = [k for k in keyed[1] if k not in used]
        report.unknown_keys = len(unknown)
        report.unknown_examples = [repr(k[:30]) for k in unknown[:3]]
        for line in report.lines() if announce else []:
            log.warning(line)
    return out
