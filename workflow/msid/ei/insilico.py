"""In-silico EI libraries: predicted spectra of molecule lists, as MSP or a spectrum store.

``msid predict-ei SMILES_FILE --out LIB.msp|LIB.h5`` and the ``insilico_library`` rule use this.
Each molecule is parsed once with RDKit (ECFP counts, nominal mass, InChIKey, formula; see
:mod:`msid.ei.molfeatures`); a line that does not parse is reported (quarantined in a store) and
skipped, the batch goes on. The candidate-pool library is predicted in chunks on worker
processes (each loads the model once) while the parent appends finished chunks, in order, to the
final store, each structure (InChIKey) once: a molecule in two pools is one library record.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem.inchi import MolToInchiKey

from msid.atomic import atomic_path
from msid.chem.isotopes import molecule_formula
from msid.chem.structures import parent_mol
from msid.ei.molfeatures import cached_nominal_mass, parse
from msid.ei.neims import ELEMENTS
from msid.ei.neims_train import NeimsModel, load_neims
from msid.ei.predict import BATCH, predict_mols
from msid.ei.predicted import INSILICO_INSTRUMENT
from msid.io.errors import InputFileError
from msid.io.licences import card_licence
from msid.parallel import imap_ordered
from msid.progress import progress_bar
from msid.store import (
    METADATA_COLUMNS,
    QuarantineRecord,
    RecordBatch,
    SpectrumRecord,
    SpectrumStore,
    SpectrumStoreWriter,
)

MIN_RELATIVE = 0.005  # predicted peaks below this fraction of the base peak are dropped
DEFAULT_STUDENT = "neims_student_cc-by-nc-sa"  # the shipped student (msid.resources)


def default_model() -> Path:
    from msid.resources import shipped_model

    return shipped_model(DEFAULT_STUDENT)


@dataclass
class Molecule:
    line: int
    name: str
    smiles: str
    inchikey: str
    formula: str
    mass: int


def _text_lines(path: Path, problems: list[tuple[int, str, str]] | None
                ) -> Iterator[str]:
    """The decoded lines of ``path`` (gzip by its magic bytes, whatever the suffix): UTF-8 (a
    byte-order mark dropped), a line that is not UTF-8 read as Latin-1 (legacy exports'
    names). A cut or corrupt gzip stream ends the lines and adds a row to ``problems``."""
    from msid.io.gz import open_binary

    fh, gz = open_binary(path)
    n = 0
    with fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("latin-1")
            yield line.lstrip("\ufeff") if n == 1 else line
    if gz is not None and gz.problem:
        if not gz.n_out:
            raise InputFileError(path, f"not a readable gzip file ({gz.problem})")
        if problems is not None:
            problems.append((n, "", f"file damaged after line {n}; the rest is lost: "
                                    f"{gz.problem}"))


def read_smiles_file(path: str | os.PathLike,
                     problems: list[tuple[int, str, str]] | None = None
                     ) -> Iterator[tuple[int, str, str]]:
    """(line number, name, SMILES): one SMILES a line (optionally a name after whitespace), or a
    TSV/CSV (quoting as the csv module reads it) whose header names a ``smiles`` column (and
    optionally ``name``), or such a table without a header (SMILES first); gz allowed. A
    header-like first line (tab- or comma-separated, its
    first field no SMILES) without a ``smiles`` column is an error naming the columns found.
    What could not be read (a cut gzip) is added to ``problems`` as (line, text, reason)."""
    path = Path(path)
    lines = _text_lines(path, problems)
    first = next(lines, "")
    head = first.rstrip("\r\n")
    sep = "\t" if "\t" in head else ("," if "," in head else None)
    if sep == "," and " " in head.split(",", 1)[0].strip():  # "CCO ethanol, absolute": a
        sep = None  # SMILES and a name by whitespace, the comma the name's own
    fields = next(csv.reader([head], delimiter=sep)) if sep else [head]
    cols = [c.strip().lower() for c in fields]
    if "smiles" in cols:
        j = cols.index("smiles")
        jn = cols.index("name") if "name" in cols else None
        if sep is None:  # one column: a SMILES a line
            for n, line in enumerate(lines, start=2):
                if line.strip():
                    yield n, "", line.strip()
            return
        reader = csv.reader(lines, delimiter=sep)
        for parts in reader:
            if not any(p.strip() for p in parts):
                continue
            smi = parts[j].strip() if j < len(parts) else ""
            name = parts[jn].strip() if jn is not None and jn < len(parts) else ""
            yield reader.line_num + 1, name, smi
        return
    if sep and len(cols) > 1 and parse(fields[0].strip()) is None:  # as written: CCO, not cco
        raise InputFileError(path, "the first line looks like a table header without a "
                             f"'smiles' column (found: {', '.join(cols[:8])})")
    for n, line in enumerate(itertools.chain([first], lines), start=1):
        if line.strip() and not line.startswith("#"):  # SMILES, then a name: by the first
            # line's separator (tab or comma; a SMILES has neither), else by whitespace
            parts = (line.rstrip("\r\n").split(sep, 1) if sep and sep in line
                     else line.split(maxsplit=1))
            yield n, (parts[1].strip() if len(parts) > 1 else ""), parts[0].strip()


#: the elements the model has features for (others would all read as one "other" element)
MODEL_ELEMENTS = frozenset((*ELEMENTS, "H"))
_ISOTOPE = re.compile(r"\[\d")  # an isotope-labelled atom in a SMILES: [2H], [13CH3]
_FORMULA_ELEMENT = re.compile(r"[A-Z][a-z]?")
_FORMULA_CHARGE = re.compile(r"[+-]\d*$")  # RDKit's C4H12N+, C12H14N2+2


def outside_the_model(written: str, formula: str) -> str:
    """Why a standardised molecule (its SMILES and formula) lies outside what the model
    predicts, or '' when it does not: an element it has no feature for, an isotope label (the
    prediction and its masses would be those of the unlabelled molecule) or a charge left
    after standardising (a permanent ion, or a metal complex reduced to a charged ligand)."""
    if _ISOTOPE.search(written):
        return ("isotope-labelled atoms: the model predicts unlabelled spectra, whose masses "
                "would be wrong for this molecule")
    other = sorted(set(_FORMULA_ELEMENT.findall(formula)) - MODEL_ELEMENTS)
    if other:
        return (f"element(s) {', '.join(other)} outside the model's "
                f"({', '.join(sorted(MODEL_ELEMENTS))})")
    if _FORMULA_CHARGE.search(formula):
        return (f"charged after standardising ({formula}): a permanent ion, or a metal "
                "complex cut to a charged ligand; EI spectra are of neutral molecules")
    return ""


def parse_molecules(items: list[tuple[int, str, str]], max_mz: int
                    ) -> tuple[list[Molecule], list[Chem.Mol], list[tuple[int, str, str]]]:
    """(molecules, their RDKit molecules, rejects (line, smiles, reason)). One parse per
    molecule serves the InChIKey, the formula, the nominal mass and every model feature."""
    mols, rd, bad = [], [], []
    for line, name, smi in items:
        mol = parse(smi)
        if mol is None:
            bad.append((line, smi, "SMILES does not parse (RDKit)"))
            continue
        parent = parent_mol(mol, smi)  # a salt or charged form: its parent, as in training
        written = smi if parent is mol else Chem.MolToSmiles(parent)
        mol = parent
        formula = molecule_formula(mol)
        if why := outside_the_model(written, formula):
            bad.append((line, smi, why))
            continue
        mass = cached_nominal_mass(formula)
        if mass > max_mz:
            bad.append((line, smi, f"nominal mass {mass} above the model's m/z range {max_mz}"))
            continue
        mols.append(Molecule(line, name or smi, written, MolToInchiKey(mol), formula, mass))
        rd.append(mol)
    return mols, rd, bad


def predict_features(model: NeimsModel, mols: list[Chem.Mol], mass: np.ndarray,
                     batch_size: int = BATCH, formulas: list[str] | None = None) -> np.ndarray:
    """Predicted spectra (base peak 1) of parsed molecules (any model kind), with the
    molecular ion's isotope peaks (:func:`msid.ei.predict.add_isotope_peaks`)."""
    return predict_mols(model, mols, mass, batch_size, formulas=formulas)


def sparse_peaks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.flatnonzero(spec >= MIN_RELATIVE)
    return keep.astype(np.float64), spec[keep].astype(np.float32)


def sparse_peaks_many(spec: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`sparse_peaks` of every row, with one pass over the matrix."""
    rows, cols = np.nonzero(spec >= MIN_RELATIVE)
    vals = spec[rows, cols].astype(np.float32)
    mz = cols.astype(np.float64)
    cuts = np.searchsorted(rows, np.arange(len(spec) + 1))
    return [(mz[cuts[k]:cuts[k + 1]], vals[cuts[k]:cuts[k + 1]]) for k in range(len(spec))]


def _records(model: NeimsModel, items: list[tuple[int, str, str]]
             ) -> tuple[list[tuple[Molecule, np.ndarray, np.ndarray]], list]:
    mols, rd, bad = parse_molecules(items, model.cfg.max_mz)
    spec = predict_features(model, rd, np.array([m.mass for m in mols], dtype=np.int64),
                            formulas=[m.formula for m in mols])
    return [(m, *p) for m, p in zip(mols, sparse_peaks_many(spec), strict=True)], bad


def msp_entry(m: Molecule, mz: np.ndarray, inten: np.ndarray) -> str:
    peaks = "\n".join(f"{int(a)} {round(float(b) * 999)}" for a, b in zip(mz, inten,
                                                                         strict=True)
                      if round(float(b) * 999) > 0)
    n = peaks.count("\n") + 1 if peaks else 0
    # DB#: the record's id in stores read from this file; a name alone could equal a measured
    # record's id (a library without DB#) and make its matches count as predicted
    return (f"Name: {m.name}\nDB#: insilico:{m.inchikey or m.line}\nSMILES: {m.smiles}\n"
            f"InChIKey: {m.inchikey}\nFormula: {m.formula}\n"
            f"MW: {m.mass}\nInstrument_type: {INSILICO_INSTRUMENT}\n"
            f"Comment: predicted EI spectrum (msid NEIMS v2)\n"
            f"Num Peaks: {n}\n{peaks}\n\n")


def store_record(m: Molecule, mz: np.ndarray, inten: np.ndarray, source: str
                 ) -> SpectrumRecord:
    return SpectrumRecord(mz, inten, {
        "id": f"{source}:{m.line}", "source_file": source, "native_id": str(m.line),
        "ms_level": 1, "ion_mode": "positive", "instrument_type": INSILICO_INSTRUMENT,
        "name": m.name, "smiles": m.smiles, "inchikey": m.inchikey, "formula": m.formula})


def load_model(path: str | os.PathLike | None) -> tuple[NeimsModel, dict]:
    return load_neims(path or default_model())


_MODELS: dict[str, NeimsModel] = {}
SUB_BATCH = 4096  # molecules parsed and predicted at a time inside a chunk (bounded memory)


def _worker_model(path: str) -> NeimsModel:
    """The model of ``path``, loaded once per worker process."""
    if path not in _MODELS:
        _MODELS.clear()
        _MODELS[path] = load_neims(path)[0]
    return _MODELS[path]


def _batch_job(args: tuple[str, list[tuple[int, str, str]]]):
    model_path, items = args
    torch.set_num_threads(1)  # parallel over processes (n_jobs), one thread each
    return _records(_worker_model(model_path), items)


def _nothing_predicted(path: str | os.PathLike, n: int, rejects: list[tuple[int, str, str]]
                       ) -> None:
    """Raise when no molecule of the file could be predicted (an output would be empty)."""
    if n:
        return
    shown = "; ".join(f"line {line} ({smi[:30]!r}): {why}" for line, smi, why in rejects[:3])
    more = f"; and {len(rejects) - 3} more" if len(rejects) > 3 else ""
    raise InputFileError(path, f"no molecule could be predicted, {len(rejects)} line(s) "
                         f"skipped: {shown}{more}")


def _first_of_each_structure(batches):
    """The batches with each structure (InChIKey) kept once: a later line of the same
    structure is a reject that names the first (one library record per structure)."""
    first: dict[str, int] = {}
    for recs, bad in batches:
        kept, bad = [], list(bad)
        for r in recs:
            m = r[0]
            if m.inchikey and m.inchikey in first:
                bad.append((m.line, m.smiles, f"the structure of line {first[m.inchikey]} "
                            "again (same InChIKey): predicted once"))
            else:
                first.setdefault(m.inchikey, m.line)
                kept.append(r)
        yield kept, bad


def predict_file(smiles_file: str | os.PathLike, out: str | os.PathLike,
                 model_path: str | os.PathLike | None = None, batch: int = 4096,
                 progress: bool = True, n_jobs: int | None = None) -> dict:
    """``msid predict-ei``: a SMILES file -> MSP (``.msp``) or spectrum store (``.h5``).

    Batches of ``batch`` molecules are parsed and predicted on ``n_jobs`` processes (default:
    up to 2 CPUs; a single batch stays in this process), written in input order."""
    path = str(model_path or default_model())
    model, card = load_model(path)
    _MODELS.clear()
    _MODELS[path] = model  # this process and forked workers use the loaded model
    n_jobs = n_jobs or max(1, min(2, os.cpu_count() or 1))
    out = Path(out)
    src = Path(smiles_file).name
    problems: list[tuple[int, str, str]] = []
    items = list(read_smiles_file(smiles_file, problems))
    if not items:
        raise InputFileError(smiles_file, "no molecule in the file (empty, or a header only)"
                             + "".join(f"; {why}" for _, _, why in problems))
    rejects: list[tuple[int, str, str]] = []
    n = 0
    t0 = time.perf_counter()
    bar = progress_bar(total=len(items), desc="predict-ei", unit=" mol", disable=not progress)
    predicted = imap_ordered(_batch_job, ((path, items[a:a + batch])
                                          for a in range(0, len(items), batch)), n_jobs)
    batches = _first_of_each_structure(predicted)
    if out.suffix.lower() == ".h5":
        with SpectrumStoreWriter(out, provenance={"stage": "predict-ei", "input": str(
                smiles_file), "model": card.get("weights_file"),
                "licence": card_licence(card)}) as w:
            for recs, bad in batches:
                w.add_batch(RecordBatch.of([store_record(*r, src) for r in recs]))
                for line, smi, reason in bad:
                    w.quarantine(QuarantineRecord(src, str(line), f"{reason}: {smi[:60]}"))
                n += len(recs)
                rejects += bad
                bar.update(len(recs) + len(bad))
            _nothing_predicted(smiles_file, n, rejects)  # raised here: nothing is written
    else:
        with atomic_path(out) as tmp, open(tmp, "w") as fh:
            for recs, bad in batches:
                fh.writelines(msp_entry(*r) for r in recs)
                n += len(recs)
                rejects += bad
                bar.update(len(recs) + len(bad))
            _nothing_predicted(smiles_file, n, rejects)
    bar.close()
    rejects += problems
    return {"predicted": n, "rejected": rejects, "seconds": time.perf_counter() - t0,
            "model": path}


# -- the in-silico library of the candidate pool -------------------------------------------------
def _chunk_job(args: tuple[str, list[tuple[int, str, str]], str, str]) -> str:
    model_path, items, source, out = args
    torch.set_num_threads(1)  # parallel over processes (n_jobs), one thread each
    model = _worker_model(model_path)
    with SpectrumStoreWriter(out, provenance={"stage": "insilico-chunk"},
                             chunk_size=SUB_BATCH) as w:
        for a in range(0, len(items), SUB_BATCH):
            recs, bad = _records(model, items[a:a + SUB_BATCH])
            w.add_batch(RecordBatch.of([store_record(*r, source) for r in recs]))
            for line, smi, reason in bad:
                w.quarantine(QuarantineRecord(source, str(line), f"{reason}: {smi[:60]}"))
    return out


def library_digest(pools: list[str | os.PathLike], model: str | os.PathLike,
                   chunk_size: int) -> str:
    # v2: salts and charged forms predicted as their parents; v3: labelled, still charged and
    # other-element molecules skipped
    h = hashlib.sha256(f"msid-insilico-v4:{chunk_size}".encode())
    for p in [*pools, model]:
        h.update(Path(p).name.encode())
        h.update(str(Path(p).stat().st_size).encode())
        h.update(str(int(Path(p).stat().st_mtime)).encode())
    return h.hexdigest()[:12]


def _append_chunk(w: SpectrumStoreWriter, path: str, first: dict[str, str]) -> int:
    """Append a chunk store to ``w`` (its columns and flat peak arrays), each structure once:
    a record whose InChIKey an earlier record of the library holds (``first``: InChIKey -> that
    record's id, updated here; a molecule in two pools, say) is left out with a quarantine row
    that names the first. Returns the records appended."""
    with SpectrumStore(path) as s:
        for _, q in s.quarantine.iterrows():
            w.quarantine(QuarantineRecord(q.source_file, q.record_id, q.reason))
        md = s.metadata
        keys, ids = md["inchikey"].astype(str).to_numpy(), md["id"].astype(str).to_numpy()
        keep = np.ones(len(md), dtype=bool)
        for i, (key, rid) in enumerate(zip(keys, ids, strict=True)):
            if not key:
                continue
            if (was := first.setdefault(key, rid)) != rid:
                keep[i] = False
                w.quarantine(QuarantineRecord(
                    str(md["source_file"].iat[i]), str(md["native_id"].iat[i]),
                    f"the structure of {was} again (same InChIKey): kept once"))
        mz, inten, offsets = s.all_peaks()
        counts = np.diff(offsets)
        if not keep.all():
            peak_keep = np.repeat(keep, counts)
            mz, inten, counts = np.asarray(mz)[peak_keep], np.asarray(inten)[peak_keep], \
                counts[keep]
        w.add_batch(RecordBatch({c: md[c].to_numpy()[keep] for c in METADATA_COLUMNS},
                                np.asarray(mz), np.asarray(inten), counts))
        return int(keep.sum())


def build_library(pools: list[str | os.PathLike], model_path: str | os.PathLike,
                  out: str | os.PathLike, chunks_dir: str | os.PathLike,
                  chunk_size: int = 50_000, n_jobs: int = 2, limit: int = 0,
                  progress: bool = True, log=print) -> dict:
    """Predict every molecule of ``pools`` into the store ``out``, chunk by chunk.

    Finished chunks are stores under ``chunks_dir/<digest>/`` (digest of pools, model and chunk
    size); a rerun after a kill predicts only the missing chunks. ``n_jobs`` worker processes
    predict; the parent appends each chunk to ``out`` as soon as it and all before it are done,
    so the final store is written while the workers still predict."""
    t0 = time.perf_counter()
    cdir = Path(chunks_dir) / library_digest(pools, model_path, chunk_size)
    cdir.mkdir(parents=True, exist_ok=True)
    jobs, total = [], 0
    for pool in pools:
        items = list(read_smiles_file(pool))
        if limit:
            items = items[:max(limit - total, 0)]
        total += len(items)
        for k in range(0, len(items), chunk_size):
            out_k = cdir / f"{Path(pool).name}.{k // chunk_size:05d}.h5"
            jobs.append((str(model_path), items[k:k + chunk_size], Path(pool).name, str(out_k)))
        del items
    todo = [j for j in jobs if not Path(j[3]).exists()]
    log(f"in-silico library: {total} molecules in {len(jobs)} chunks, "
        f"{len(jobs) - len(todo)} already done")
    bar = progress_bar(total=len(todo), desc="insilico chunks", disable=not progress)
    done = imap_ordered(_chunk_job, iter(todo), n_jobs)  # lazily, in the order of ``todo``
    pending = {j[3] for j in todo}
    n = 0
    first: dict[str, str] = {}  # InChIKey -> the record that holds it (each structure once)
    t_pred = time.perf_counter() - t0
    with SpectrumStoreWriter(out, provenance={"stage": "insilico-library", "pools": [
            str(p) for p in pools], "model": str(model_path)}, chunk_size=16384) as w:
        for j in jobs:
            if j[3] in pending:
                next(done)
                bar.update(1)
                t_pred = time.perf_counter() - t0
            n += _append_chunk(w, j[3], first)
        for _ in done:  # pragma: no cover - every todo chunk was consumed above
            pass
    bar.close()
    return {"molecules": total, "spectra": n, "chunks": len(jobs), "predicted_chunks": len(todo),
            "seconds_predict": t_pred, "seconds_total": time.perf_counter() - t0}
