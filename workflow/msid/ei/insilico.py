"""In-silico EI libraries: predicted spectra of molecule lists, as MSP or a spectrum store.

``msid predict-ei SMILES_FILE --out LIB.msp|LIB.h5`` and the ``insilico_library`` rule use this.
Each molecule is parsed once with RDKit (ECFP counts, nominal mass, InChIKey, formula); a line
that does not parse is reported (quarantined in a store) and skipped, the batch goes on.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula
from tqdm import tqdm

from msid.atomic import atomic_path
from msid.ei.neims import formula_nominal_mass
from msid.ei.neims_train import NeimsModel, load_neims
from msid.models.features import _generator
from msid.parallel import imap_ordered
from msid.store import QuarantineRecord, SpectrumRecord, SpectrumStore, SpectrumStoreWriter

MIN_RELATIVE = 0.005  # predicted peaks below this fraction of the base peak are dropped
REPO_MODELS = Path(__file__).resolve().parents[3] / "resources" / "models"
DEFAULT_MODEL = REPO_MODELS / "neims_student_cc-by-nc-sa.safetensors"


@dataclass
class Molecule:
    line: int
    name: str
    smiles: str
    inchikey: str
    formula: str
    mass: int


def read_smiles_file(path: str | os.PathLike) -> Iterator[tuple[int, str, str]]:
    """(line number, name, SMILES): one SMILES a line (optionally a name after whitespace), or a
    TSV/CSV with a ``smiles`` column (and optionally ``name``); gz allowed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        first = fh.readline()
        head = first.rstrip("\n")
        sep = "\t" if "\t" in head else ("," if "," in head else None)
        cols = [c.strip().lower() for c in head.split(sep)] if sep else [head.strip().lower()]
        if "smiles" in cols:
            j = cols.index("smiles")
            jn = cols.index("name") if "name" in cols else None
            for n, line in enumerate(fh, start=2):
                parts = line.rstrip("\n").split(sep) if sep else [line.strip()]
                if not line.strip():
                    continue
                smi = parts[j].strip() if j < len(parts) else ""
                name = parts[jn].strip() if jn is not None and jn < len(parts) else ""
                yield n, name, smi
            return
        lines = [first, *fh]
    for n, line in enumerate(lines, start=1):
        if line.strip() and not line.startswith("#"):
            parts = line.split(maxsplit=1)
            yield n, (parts[1].strip() if len(parts) > 1 else ""), parts[0]


def parse_molecules(items: list[tuple[int, str, str]], n_bits: int, max_mz: int
                    ) -> tuple[list[Molecule], np.ndarray, list[tuple[int, str, str]]]:
    """(molecules, ECFP count matrix log1p, rejects (line, smiles, reason))."""
    gen = _generator(2, n_bits)
    mols, feats, bad = [], [], []
    for line, name, smi in items:
        mol = Chem.MolFromSmiles(smi) if smi else None
        if mol is None or mol.GetNumAtoms() == 0:
            bad.append((line, smi, "SMILES does not parse (RDKit)"))
            continue
        formula = CalcMolFormula(mol)
        mass = formula_nominal_mass(formula)
        if mass > max_mz:
            bad.append((line, smi, f"nominal mass {mass} above the model's m/z range {max_mz}"))
            continue
        feats.append(np.log1p(gen.GetCountFingerprintAsNumPy(mol).astype(np.float32)))
        mols.append(Molecule(line, name or smi, smi, Chem.MolToInchiKey(mol), formula, mass))
    x = np.stack(feats) if feats else np.zeros((0, n_bits), np.float32)
    return mols, x, bad


@torch.no_grad()
def predict_features(model: NeimsModel, ecfp: np.ndarray, mass: np.ndarray,
                     batch_size: int = 1024) -> np.ndarray:
    """Predicted spectra (base peak 1) of fingerprint rows (student / MLP models)."""
    if model.cfg.kind == "teacher":
        raise ValueError("the teacher reads molecular graphs: use predict_spectra(smiles)")
    out = np.zeros((len(ecfp), model.cfg.max_mz + 1), np.float32)
    for a in range(0, len(ecfp), batch_size):
        b = {"ecfp": torch.from_numpy(ecfp[a:a + batch_size]),
             "mass": torch.from_numpy(mass[a:a + batch_size].astype(np.int64))}
        out[a:a + batch_size] = np.square(model(b).numpy())
    return out / np.maximum(out.max(1, keepdims=True), 1e-12)


def sparse_peaks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.flatnonzero(spec >= MIN_RELATIVE)
    return keep.astype(np.float64), spec[keep].astype(np.float32)


def _records(model: NeimsModel, items: list[tuple[int, str, str]]
             ) -> tuple[list[tuple[Molecule, np.ndarray, np.ndarray]], list]:
    mols, x, bad = parse_molecules(items, model.cfg.n_bits, model.cfg.max_mz)
    if model.cfg.kind == "teacher":
        from msid.ei.neims_train import predict_spectra

        spec = predict_spectra(model, [m.smiles for m in mols])
    else:
        spec = predict_features(model, x, np.array([m.mass for m in mols]))
    return [(m, *sparse_peaks(s)) for m, s in zip(mols, spec, strict=True)], bad


def msp_entry(m: Molecule, mz: np.ndarray, inten: np.ndarray) -> str:
    peaks = "\n".join(f"{int(a)} {round(float(b) * 999)}" for a, b in zip(mz, inten,
                                                                         strict=True)
                      if round(float(b) * 999) > 0)
    n = peaks.count("\n") + 1 if peaks else 0
    return (f"Name: {m.name}\nSMILES: {m.smiles}\nInChIKey: {m.inchikey}\nFormula: {m.formula}\n"
            f"MW: {m.mass}\nComment: predicted EI spectrum (msid NEIMS v2)\n"
            f"Num Peaks: {n}\n{peaks}\n\n")


def store_record(m: Molecule, mz: np.ndarray, inten: np.ndarray, source: str
                 ) -> SpectrumRecord:
    return SpectrumRecord(mz, inten, {
        "id": f"{source}:{m.line}", "source_file": source, "native_id": str(m.line),
        "ms_level": 1, "ion_mode": "positive", "instrument_type": "in-silico EI",
        "name": m.name, "smiles": m.smiles, "inchikey": m.inchikey, "formula": m.formula})


def load_model(path: str | os.PathLike | None) -> tuple[NeimsModel, dict]:
    return load_neims(path or DEFAULT_MODEL)


def predict_file(smiles_file: str | os.PathLike, out: str | os.PathLike,
                 model_path: str | os.PathLike | None = None, batch: int = 4096,
                 progress: bool = True) -> dict:
    """``msid predict-ei``: a SMILES file -> MSP (``.msp``) or spectrum store (``.h5``)."""
    model, card = load_model(model_path)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out = Path(out)
    src = Path(smiles_file).name
    items = list(read_smiles_file(smiles_file))
    rejects: list[tuple[int, str, str]] = []
    n = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), desc="predict-ei", unit=" mol", disable=not progress)
    if out.suffix == ".h5":
        with SpectrumStoreWriter(out, provenance={"stage": "predict-ei", "input": str(
                smiles_file), "model": card.get("weights_file"),
                "licence": card.get("licence", "")}) as w:
            for a in range(0, len(items), batch):
                recs, bad = _records(model, items[a:a + batch])
                for m, mz, inten in recs:
                    w.add(store_record(m, mz, inten, src))
                for line, smi, reason in bad:
                    w.quarantine(QuarantineRecord(src, str(line), f"{reason}: {smi[:60]}"))
                n += len(recs)
                rejects += bad
                bar.update(min(batch, len(items) - a))
    else:
        with atomic_path(out) as tmp, open(tmp, "w") as fh:
            for a in range(0, len(items), batch):
                recs, bad = _records(model, items[a:a + batch])
                fh.writelines(msp_entry(*r) for r in recs)
                n += len(recs)
                rejects += bad
                bar.update(min(batch, len(items) - a))
    bar.close()
    return {"predicted": n, "rejected": rejects, "seconds": time.perf_counter() - t0,
            "model": str(model_path or DEFAULT_MODEL)}


# -- the in-silico library of the candidate pool -------------------------------------------------
def _chunk_job(args: tuple[str, list[tuple[int, str, str]], str, str]) -> str:
    model_path, items, source, out = args
    torch.set_num_threads(1)
    model, _ = load_neims(model_path)
    recs, bad = _records(model, items)
    with SpectrumStoreWriter(out, provenance={"stage": "insilico-chunk"}) as w:
        for m, mz, inten in recs:
            w.add(store_record(m, mz, inten, source))
        for line, smi, reason in bad:
            w.quarantine(QuarantineRecord(source, str(line), f"{reason}: {smi[:60]}"))
    return out


def library_digest(pools: list[str | os.PathLike], model: str | os.PathLike,
                   chunk_size: int) -> str:
    h = hashlib.sha256(f"msid-insilico-v1:{chunk_size}".encode())
    for p in [*pools, model]:
        h.update(Path(p).name.encode())
        h.update(str(Path(p).stat().st_size).encode())
        h.update(str(int(Path(p).stat().st_mtime)).encode())
    return h.hexdigest()[:12]


def build_library(pools: list[str | os.PathLike], model_path: str | os.PathLike,
                  out: str | os.PathLike, chunks_dir: str | os.PathLike,
                  chunk_size: int = 50_000, n_jobs: int = 2, limit: int = 0,
                  progress: bool = True, log=print) -> dict:
    """Predict every molecule of ``pools`` into the store ``out``, chunk by chunk.

    Finished chunks are stores under ``chunks_dir/<digest>/`` (digest of pools, model and chunk
    size); a rerun after a kill predicts only the missing chunks, then concatenates."""
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
    todo = [j for j in jobs if not Path(j[3]).exists()]
    log(f"in-silico library: {total} molecules in {len(jobs)} chunks, "
        f"{len(jobs) - len(todo)} already done")
    bar = tqdm(total=len(todo), desc="insilico chunks", disable=not progress)
    for _ in imap_ordered(_chunk_job, iter(todo), n_jobs):
        bar.update(1)
    bar.close()
    t_pred = time.perf_counter() - t0
    n = 0
    with SpectrumStoreWriter(out, provenance={"stage": "insilico-library", "pools": [
            str(p) for p in pools], "model": str(model_path)}) as w:
        for j in jobs:
            with SpectrumStore(j[3]) as s:
                for _, q in s.quarantine.iterrows():
                    w.quarantine(QuarantineRecord(q.source_file, q.record_id, q.reason))
                for rec in s.iter_records():
                    w.add(rec)
                    n += 1
    return {"molecules": total, "spectra": n, "chunks": len(jobs), "predicted_chunks": len(todo),
            "seconds_predict": t_pred, "seconds_total": time.perf_counter() - t0}
