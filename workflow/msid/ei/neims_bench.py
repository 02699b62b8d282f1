"""``msid bench`` numbers of EI spectrum prediction: teacher and student predictions/s and the
time to build the 1.6M-molecule in-silico library (measured on a sample and extrapolated, said
so, unless ``full``).

On shared cores the wall-clock figures move with other people's load (2x between runs minutes
apart); the library's CPU seconds (parent + workers) divided by the worker count are the
steadier estimate of the build time on free cores. Compare versions back to back, never with a
figure taken at another time.
"""

from __future__ import annotations

import gzip
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from msid.chem.isotopes import molecule_formula
from msid.ei.insilico import build_library, read_smiles_file
from msid.ei.molfeatures import batch_tensors, parse
from msid.ei.neims import mol_graph
from msid.ei.neims_train import load_neims, predict_sqrt
from msid.ei.predict import add_isotope_peaks, predict_mols_sqrt
from msid.resources import resource as shipped_file

MOSES = ("candidates", "moses_train_smiles.csv.gz")  # shipped data (msid.resources)
POOL = ("candidates", "candidate_pool.tsv.gz")
LIBRARY_SIZE = 1_600_000


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished child processes."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _rate(fn, n: int, reset=None) -> float:
    fn()  # warm-up
    if reset is not None:
        reset()
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _from_smiles(model, smiles: list[str]) -> np.ndarray:
    mols = [parse(s) for s in smiles]
    return predict_mols_sqrt(model, mols)


def bench_ei_prediction(teacher: str | os.PathLike, student: str | os.PathLike,
                        n_molecules: int = 2000, library_sample: int = 20_000,
                        jobs: int = 2, full: bool = False, log=print) -> dict:
    """Predictions/s of teacher and student from SMILES (same molecules, 1 thread), with the
    featurisation the models were trained with (``*_before``: :func:`predict_sqrt`, batches of
    256, graph cache cleared before the timed run) and with :mod:`msid.ei.predict` (one parse
    per molecule, sparse ECFP, vectorised graphs, inference mode); from parsed molecules (the
    parse, shared by both and by the library's InChIKeys, left out); the networks alone; then
    the library build."""
    torch.set_num_threads(1)
    smiles = [s for _, _, s in read_smiles_file(shipped_file(*MOSES))][:max(n_molecules, 1)]
    t_model, _ = load_neims(teacher)
    s_model, _ = load_neims(student)
    out: dict = {"molecules": len(smiles), "threads": 1}
    n = len(smiles)
    for name, model in (("teacher", t_model), ("student", s_model)):
        out[f"{name}_predictions_per_s_before"] = _rate(
            lambda m=model: predict_sqrt(m, smiles, 256), n, mol_graph.cache_clear)
        out[f"{name}_predictions_per_s"] = _rate(lambda m=model: _from_smiles(m, smiles), n)
    # from parsed molecules: each model's own featurisation + network. The parse is the same
    # for both and an in-silico library needs it anyway (InChIKey, formula), so this is what
    # one model costs over the other; the SMILES parse alone bounds the ratio from SMILES.
    out["parse_per_s"] = _rate(lambda: [parse(s) for s in smiles], n)
    mols = [parse(s) for s in smiles]
    for name, model in (("teacher", t_model), ("student", s_model)):
        out[f"{name}_from_parsed_per_s"] = _rate(lambda m=model: predict_mols_sqrt(m, mols), n)
    out["student_vs_teacher_speedup_from_parsed"] = (out["student_from_parsed_per_s"]
                                                     / out["teacher_from_parsed_per_s"])
    # the ratio from SMILES that a student costing nothing would reach
    out["speedup_from_smiles_bound"] = out["parse_per_s"] / out["teacher_predictions_per_s"]
    # network alone (features ready): what the model costs beside RDKit
    for name, model in (("teacher", t_model), ("student", s_model)):
        b = batch_tensors(mols, model.cfg.n_bits, model.cfg.kind == "teacher")
        with torch.inference_mode():
            out[f"{name}_network_only_per_s"] = _rate(lambda m=model, b=b: m(b), n)
    # the molecular ion's isotope peaks, added to every prediction msid writes (formula,
    # pattern, peaks; the same for every model)
    spec = np.zeros((n, s_model.cfg.max_mz + 1), np.float32)
    out["isotope_peaks_per_s"] = _rate(
        lambda: add_isotope_peaks(spec, [molecule_formula(m) for m in mols]), n)
    out["student_vs_teacher_speedup"] = (out["student_predictions_per_s"]
                                         / out["teacher_predictions_per_s"])
    out["student_vs_teacher_speedup_before"] = (out["student_predictions_per_s_before"]
                                                / out["teacher_predictions_per_s_before"])
    log(f"   from SMILES, 1 thread, {n:,} molecules: teacher "
        f"{out['teacher_predictions_per_s']:,.0f} predictions/s | student "
        f"{out['student_predictions_per_s']:,.0f} predictions/s (x"
        f"{out['student_vs_teacher_speedup']:.1f}); before (training featurisation): teacher "
        f"{out['teacher_predictions_per_s_before']:,.0f} | student "
        f"{out['student_predictions_per_s_before']:,.0f} (x"
        f"{out['student_vs_teacher_speedup_before']:.1f})")
    log(f"   from parsed molecules (each model's featurisation + network; the parse is shared): "
        f"teacher {out['teacher_from_parsed_per_s']:,.0f}/s | student "
        f"{out['student_from_parsed_per_s']:,.0f}/s (x"
        f"{out['student_vs_teacher_speedup_from_parsed']:.1f}); networks alone: teacher "
        f"{out['teacher_network_only_per_s']:,.0f}/s, student "
        f"{out['student_network_only_per_s']:,.0f}/s; the SMILES parse alone "
        f"{out['parse_per_s']:,.0f}/s caps the ratio from SMILES at "
        f"x{out['speedup_from_smiles_bound']:.1f}; the molecular ion's isotope peaks (added to "
        f"every prediction, any model) {out['isotope_peaks_per_s']:,.0f} molecules/s")
    with tempfile.TemporaryDirectory(prefix="msid-insilico-") as tmp:
        pools: list[Path] = [shipped_file(*POOL), shipped_file(*MOSES)]
        limit = 0
        if not full:
            sample = Path(tmp) / "sample.csv.gz"
            with gzip.open(shipped_file(*MOSES), "rt") as fh, gzip.open(sample, "wt") as o:
                for i, line in enumerate(fh):
                    if i > library_sample:
                        break
                    o.write(line)
            pools, limit = [sample], library_sample
        t0 = time.perf_counter()
        cpu0 = _cpu_seconds()
        st = build_library(pools, student, Path(tmp) / "lib.h5", Path(tmp) / "chunks",
                           chunk_size=max(1000, (limit or LIBRARY_SIZE) // (4 * jobs)),
                           n_jobs=jobs, progress=False, log=lambda *_: None)
        secs = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0  # parent + its reaped worker processes
    rate = st["molecules"] / secs
    scale = 1.0 if full else LIBRARY_SIZE / st["molecules"]
    out.update({"library_molecules": st["molecules"], "library_seconds": secs,
                "library_molecules_per_s": rate, "library_jobs": jobs,
                "library_1_6m_minutes": (secs if full else LIBRARY_SIZE / rate) / 60,
                "library_1_6m_extrapolated": not full, "library_cpu_seconds": cpu,
                "library_1_6m_minutes_if_cores_free": cpu * scale / max(jobs, 1) / 60})
    how = "measured" if full else f"extrapolated from {st['molecules']:,} molecules"
    log(f"   in-silico library: {rate:,.0f} molecules/s on {jobs} processes -> 1.6M molecules "
        f"in {out['library_1_6m_minutes']:.1f} min ({how}; shared cores: noisy); CPU time "
        f"{cpu:,.0f} s -> {out['library_1_6m_minutes_if_cores_free']:.1f} min on {jobs} "
        "free cores")
    return out
