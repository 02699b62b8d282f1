"""Evaluation of EI predictors on the test fold (structures unseen in training).

* cosine and weighted cosine (m/z^3 x intensity^0.6, Stein & Scott) between the predicted and
  the measured spectrum of every test spectrum;
* the NEIMS library-matching protocol: each measured test spectrum is searched in a library of
  the measured training spectra plus the *predicted* spectra of the test structures and of decoy
  structures (candidate-pool molecules of the same nominal mass); only entries of the query
  molecule's nominal mass compete (NEIMS's mass filter). Recall@k counts the query's own
  structure (InChIKey first block) within the top k structures, each scored by its best
  library entry (a structure with several training spectra takes one place); ties with the
  truth are broken at random in expectation (:func:`msid.metrics.expected_hit`).

Means come with percentile bootstrap CIs that resample test structures
(:func:`msid.evaluate.bootstrap_ci` with groups).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msid.atomic import write_text
from msid.ei.nominal import dense_nominal, stein_scott_weight
from msid.evaluate import bootstrap_ci
from msid.metrics import expected_hit, truth_ties
from msid.store import SpectrumStore

RECALL_KS = (1, 10)


def weighted(spec: np.ndarray) -> np.ndarray:
    """Stein-Scott weighting m/z^3 x intensity^0.6 of dense spectra (rows)."""
    return stein_scott_weight(np.arange(spec.shape[-1]), spec)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)


@dataclass
class TestSet:
    smiles: list[str]
    key14: list[str]
    mass: np.ndarray
    spectra: np.ndarray  # measured, dense intensity scale


def dense_rows(store: str | os.PathLike, rows: np.ndarray, max_mz: int) -> np.ndarray:
    with SpectrumStore(store) as s:
        return np.stack([dense_nominal(*s.peaks(int(r)), max_mz) for r in rows]) if len(
            rows) else np.zeros((0, max_mz + 1), np.float32)


def decoys_by_mass(pool_smiles: list[str], pool_mass: np.ndarray, masses: set[int],
                   exclude: set[str], per_mass: int, seed: int = 0) -> list[str]:
    """Up to ``per_mass`` pool molecules of each nominal mass in ``masses`` (not in exclude)."""
    rng = np.random.default_rng(seed)
    by_mass: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(pool_mass):
        if int(m) in masses:
            by_mass[int(m)].append(i)
    out = []
    for m in sorted(masses):
        idx = by_mass.get(m, [])
        picks = rng.permutation(len(idx))
        n = 0
        for p in picks:
            s = pool_smiles[idx[p]]
            if s not in exclude:
                out.append(s)
                n += 1
                if n >= per_mass:
                    break
    return out


def library_recall(queries: np.ndarray, query_key: list[str], query_mass: np.ndarray,
                   lib: np.ndarray, lib_key: list[str], lib_mass: np.ndarray
                   ) -> dict[int, np.ndarray]:
    """Per-query expected recall@k (weighted cosine, same-nominal-mass library entries)."""
    qn = normalize_rows(weighted(queries))
    ln = normalize_rows(weighted(lib))
    lib_key_arr = np.array(lib_key)
    out = {k: np.zeros(len(queries)) for k in RECALL_KS}
    for i in range(len(queries)):
        cand = np.flatnonzero(lib_mass == query_mass[i])
        # structures compete, each with its best entry: a structure with several training
        # spectra takes one place in the top k, as in the EI search leaderboard
        keys, inverse = np.unique(lib_key_arr[cand], return_inverse=True)
        is_true = keys == query_key[i]
        if not is_true.any():
            continue  # (cannot happen: the test structure's prediction is in the library)
        scores = np.full(keys.size, -np.inf)
        np.maximum.at(scores, inverse, ln[cand] @ qn[i])
        above, tied = truth_ties(scores, is_true)
        for k in RECALL_KS:
            out[k][i] = float(expected_hit(above, tied, k))
    return out


def score_method(name: str, pred_test: np.ndarray, test: TestSet, pred_decoys: np.ndarray,
                 decoy_mass: np.ndarray, decoy_keys: list[str], train_lib: np.ndarray,
                 train_keys: list[str], train_mass: np.ndarray, seed: int = 0) -> dict:
    """Leaderboard row of one predictor (mean and 95% CI of every figure)."""
    cos = row_cosine(pred_test, test.spectra)
    wcos = row_cosine(weighted(pred_test), weighted(test.spectra))
    # library: measured train spectra + predicted spectra of the test structures (one per
    # structure) + predicted decoys
    uniq = {}
    for j, k in enumerate(test.key14):
        uniq.setdefault(k, j)
    tj = list(uniq.values())
    lib = np.concatenate([train_lib, pred_test[tj], pred_decoys])
    lib_key = list(train_keys) + [test.key14[j] for j in tj] + list(decoy_keys)
    lib_mass = np.concatenate([train_mass, test.mass[tj], decoy_mass])
    rec = library_recall(test.spectra, test.key14, test.mass, lib, lib_key, lib_mass)
    row = {"method": name, "n_test_spectra": len(test.smiles),
           "n_test_structures": len(tj), "library_size": len(lib)}
    for label, vals in (("cosine", cos), ("weighted_cosine", wcos),
                        *((f"recall@{k}", rec[k]) for k in RECALL_KS)):
        m = bootstrap_ci(vals, seed=seed, groups=test.key14)  # structures resampled
        row[label], row[f"{label}_lo"], row[f"{label}_hi"] = m.value, m.ci_low, m.ci_high
    return row


def write_leaderboard(rows: list[dict], out_md: str | os.PathLike,
                      out_csv: str | os.PathLike, notes: list[str] | None = None) -> None:
    df = pd.DataFrame(rows)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_text(out_csv, df.to_csv(index=False))
    lines = ["# EI spectrum prediction: test fold (structures unseen in training)", ""]
    lines += [f"- {n}" for n in notes or []]
    lines += ["", "| method | cosine | weighted cosine | recall@1 | recall@10 | predictions/s |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[c]:.3f} [{r[c + '_lo']:.3f}, {r[c + '_hi']:.3f}]"
                 for c in ("cosine", "weighted_cosine", "recall@1", "recall@10")]
        speed = r.get("predictions_per_s")
        tail = f" | {speed:,.0f} |" if speed else " | - |"
        lines.append(f"| {r['method']} | " + " | ".join(cells) + tail)
    lines += ["", "Means over test spectra with 95% bootstrap CIs (test structures "
              "resampled, each with all its spectra). Recall@k (structures, each by its best "
              "entry): measured test "
              "spectrum searched (weighted cosine, same nominal mass) in measured training "
              "spectra + predicted spectra of test structures and same-mass decoys (NEIMS "
              "protocol)."]
    write_text(out_md, "\n".join(lines) + "\n")
