"""Bond dissociation energies from ALFABET, cached per molecule in HDF5 (keyed by InChIKey).

This module runs in the ``bde`` environment (``envs/bde.yaml`` / the ``.venv-bde`` venv: ALFABET
0.1.0 on TensorFlow with ``TF_USE_LEGACY_KERAS=1``), reached through its console command
``msid-bde``; it imports only numpy, h5py, pandas and RDKit at module level, so the main
environment can read the cache (:func:`read_cache`) without TensorFlow.

Cache layout (``format = msid-bde-cache``)::

    /molecules/<InChIKey>/  atom1, atom2, bond_index (int32), bde, bdfe (float32, kcal/mol)
                            attrs: smiles
    /unhandled/<InChIKey>   attrs: smiles, reason

Atom and bond indices refer to RDKit's molecule from the SMILES with explicit hydrogens
(``Chem.AddHs``; heavy atoms keep their indices, hydrogens follow). ALFABET predicts single,
acyclic bonds only; others have no row.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

CACHE_FORMAT = "msid-bde-cache"
#: ALFABET 0.1.0 was trained on C, H, N, O molecules (its preprocessor knows no other element)
ALFABET_ELEMENTS = frozenset({"C", "H", "N", "O"})
MAX_HEAVY_ATOMS = 60


@dataclass
class BondBDE:
    atom1: np.ndarray
    atom2: np.ndarray
    bond_index: np.ndarray
    bde: np.ndarray
    bdfe: np.ndarray


def unhandled_reason(smiles: str, max_heavy_atoms: int = MAX_HEAVY_ATOMS) -> str:
    """Why ALFABET cannot take a molecule, or '' when it can."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return "unparseable SMILES"
    if len(Chem.GetMolFrags(mol)) > 1:
        return "several fragments (salt or mixture)"
    if any(a.GetFormalCharge() for a in mol.GetAtoms()):
        return "charged"
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return "radical"
    bad = sorted({a.GetSymbol() for a in mol.GetAtoms()} - ALFABET_ELEMENTS)
    if bad:
        return f"unsupported elements {','.join(bad)} (ALFABET 0.1.0: C, H, N, O)"
    if mol.GetNumHeavyAtoms() > max_heavy_atoms:
        return f"too large ({mol.GetNumHeavyAtoms()} heavy atoms > {max_heavy_atoms})"
    if mol.GetNumHeavyAtoms() < 2 and mol.GetNumAtoms() < 2:
        return "no bond"
    return ""


def _bond_atoms(smiles: str, bond_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    b = [mol.GetBondWithIdx(int(i)) for i in bond_index]
    return (np.array([x.GetBeginAtomIdx() for x in b], dtype=np.int32),
            np.array([x.GetEndAtomIdx() for x in b], dtype=np.int32))


OUTSIDE_DOMAIN = "outside ALFABET's domain (atom or bond type unknown to its preprocessor)"
NO_BOND = "no single acyclic bond to break"


def _result(smiles: str, df) -> BondBDE | str:
    """One molecule's bond table (ALFABET's ``predict_bdes`` frame) as a cache entry."""
    df = df[df.bde_pred.notna()].sort_values("bond_index")
    if df.empty:
        return NO_BOND
    idx = df.bond_index.to_numpy(dtype=np.int32)
    a1, a2 = _bond_atoms(smiles, idx)
    return BondBDE(a1, a2, idx, df.bde_pred.to_numpy(np.float32),
                   df.bdfe_pred.to_numpy(np.float32))


def predict_molecule(smiles: str) -> BondBDE | str:
    """ALFABET's BDE/BDFE of every single acyclic bond of one molecule, or a reason: its own
    ``predict_bdes``, one model call per molecule (the reference :func:`predict_molecules`
    is tested against)."""
    from alfabet import prediction  # the bde environment only (TensorFlow)

    reason = unhandled_reason(smiles)
    if reason:
        return reason
    outlier, _, _ = prediction.check_input(smiles)
    if outlier:
        return OUTSIDE_DOMAIN
    return _result(smiles, prediction.predict_bdes(smiles, draw=False))


def predict_molecules(smiles: list[str], batch_size: int = 64) -> list[BondBDE | str]:
    """:func:`predict_molecule` for many molecules, the model called once per padded batch of
    ``batch_size`` molecules (ALFABET's preprocessor and padding, as it was trained) instead
    of once per molecule (~13x faster on CPU); each molecule's bonds are then read, ranked
    and de-duplicated as ALFABET's ``predict_bdes`` does. Of bonds equivalent by symmetry
    (which it keeps one of, the one predicted lowest), the last digits of a batched
    prediction may keep another: same fragments, same BDE to 1e-4 kcal/mol."""
    import pandas as pd
    import tensorflow as tf
    from alfabet import prediction
    from alfabet.fragment import fragment_iterator

    pre = prediction.preprocessor
    out: list[BondBDE | str] = [unhandled_reason(s) for s in smiles]
    feats: dict[int, dict] = {}
    for i, s in enumerate(smiles):
        if out[i]:
            continue
        f = pre.construct_feature_matrices(s, train=False)
        if (f["atom"] == 1).any() or (f["bond"] == 1).any():  # check_input's outlier test
            out[i] = OUTSIDE_DOMAIN
        else:
            feats[i] = f
    order = list(feats)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = next(iter(tf.data.Dataset.from_generator(
            lambda rows=rows: (feats[i] for i in rows), output_types=pre.output_types,
            output_shapes=pre.output_shapes).padded_batch(
                len(rows), padded_shapes=pre.padded_shapes(),
                padding_values=pre.padding_values)))
        bde, bdfe = (np.asarray(t)[..., 0] for t in prediction.model(batch, training=False))
        for j, i in enumerate(rows):
            n = int(feats[i]["n_bond"])
            frag = pd.DataFrame(fragment_iterator(smiles[i]))
            if frag.empty:
                out[i] = NO_BOND
                continue
            frag["bde_pred"] = pd.Series(bde[j, :n]).reindex(frag.bond_index).reset_index(
                drop=True)
            frag["bdfe_pred"] = pd.Series(bdfe[j, :n]).reindex(frag.bond_index).reset_index(
                drop=True)
            out[i] = _result(smiles[i], frag.sort_values("bde_pred").drop_duplicates(
                ["fragment1", "fragment2"]))
    return out


def read_cache(path: str | os.PathLike) -> tuple[dict[str, BondBDE], dict[str, str]]:
    """(InChIKey -> bonds, InChIKey -> reason unhandled) of a cache file."""
    done: dict[str, BondBDE] = {}
    bad: dict[str, str] = {}
    if not Path(path).exists():
        return done, bad
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != CACHE_FORMAT:
            raise ValueError(f"{path}: not an msid BDE cache")
        for key, g in h5.get("molecules", {}).items():
            done[key] = BondBDE(*(g[c][:] for c in ("atom1", "atom2", "bond_index", "bde",
                                                    "bdfe")))
        for key, g in h5.get("unhandled", {}).items():
            bad[key] = str(g.attrs["reason"])
    return done, bad


def _write(h5: h5py.File, key: str, smiles: str, result: BondBDE | str) -> None:
    if isinstance(result, str):
        g = h5.require_group("unhandled").create_group(key)
        g.attrs.update({"smiles": smiles, "reason": result})
        return
    g = h5.require_group("molecules").create_group(key)
    g.attrs["smiles"] = smiles
    for col in ("atom1", "atom2", "bond_index", "bde", "bdfe"):
        g.create_dataset(col, data=getattr(result, col))


def _quiet_keras() -> None:
    """No per-molecule Keras progress bars in the logs."""
    try:
        import tf_keras

        tf_keras.utils.disable_interactive_logging()
    except Exception:  # an older or newer Keras: the bars stay, nothing else changes
        pass


#: molecules predicted (and written to the cache) together
CHUNK = 256


def _predict_one(smiles: str) -> BondBDE | str:
    try:
        return predict_molecule(smiles)
    except Exception as e:
        return f"ALFABET failed: {type(e).__name__}: {e}"[:300]


def update_cache(cache: str | os.PathLike, molecules: Iterable[tuple[str, str]],
                 progress: bool = True, log=print) -> dict:
    """Compute the molecules (InChIKey, SMILES) missing from ``cache`` and add them.

    Molecules already in it (handled or not) are never recomputed. The new ones are computed
    into a file of this process's own, then merged into the cache (copy, add, rename) under a
    lock file beside it, held only for the merge: two jobs updating one cache (the DAG's
    ``bde`` and ``bde_set``) neither lose each other's molecules nor wait for each other's
    ALFABET runs. Returns counts.
    """
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done, bad = read_cache(cache)
    todo: dict[str, str] = {}
    for key, smi in molecules:
        if key and key not in done and key not in bad and key not in todo:
            todo[key] = smi
    stats = {"cached": len(done) + len(bad), "computed": 0, "unhandled_new": 0,
             "seconds": 0.0}
    if not todo:
        return stats
    new = cache.with_name(f".{cache.name}.{socket.gethostname()}.{os.getpid()}.new")
    t0 = time.perf_counter()
    try:
        _compute(new, todo, stats, progress)
        with _locked(cache.with_name(f".{cache.name}.lock"), log):
            _merge(cache, new)
    finally:
        new.unlink(missing_ok=True)
    stats["seconds"] = time.perf_counter() - t0
    return stats


@contextlib.contextmanager
def _locked(path: Path, log=print):
    """An exclusive POSIX lock on ``path`` (``fcntl.lockf``, which NFS and Lustre mounted with
    ``flock`` honour across nodes); where the file system has no locks, none, said in the
    log (the merge it guards takes seconds)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(path, "a") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX)
        except OSError as e:
            log(f"bde: no file lock on {path.parent} ({e}); merging into the cache without one")
            yield
            return
        try:
            yield
        finally:
            fcntl.lockf(fh, fcntl.LOCK_UN)


def _compute(out: Path, todo: dict[str, str], stats: dict, progress: bool) -> None:
    """ALFABET on ``todo`` (InChIKey -> SMILES) into a new cache file ``out``."""
    from msid.progress import progress_bar

    _quiet_keras()
    with h5py.File(out, "w") as h5:
        h5.attrs["format"] = CACHE_FORMAT
        h5.attrs["model"] = "alfabet 0.1.0 (kcal/mol)"
        items = list(todo.items())
        bar = progress_bar(total=len(items), desc="ALFABET", unit=" mol", disable=not progress,
                           mininterval=2)
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            try:
                results = predict_molecules([smi for _, smi in chunk])
            except Exception:  # find the molecule that fails: one never stops the batch
                results = [_predict_one(smi) for _, smi in chunk]
            for (key, smi), result in zip(chunk, results, strict=True):
                _write(h5, key, smi, result)
                stats["computed"] += 1
                stats["unhandled_new"] += isinstance(result, str)
            bar.update(len(chunk))
        bar.close()


def _merge(cache: Path, new: Path) -> None:
    """The molecules of ``new`` that ``cache`` lacks, added to it (atomic: copy, add,
    rename); a molecule another job added meanwhile is kept as it is."""
    tmp = cache.with_name(f".{cache.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(cache if cache.exists() else new, tmp)
        with h5py.File(new, "r") as src, h5py.File(tmp, "a") as dst:
            if dst.attrs.get("format") != CACHE_FORMAT:  # replaced meanwhile by another file
                raise ValueError(f"{cache}: not an msid BDE cache")
            have = {k for grp in ("molecules", "unhandled") for k in dst.get(grp, {})}
            for grp in ("molecules", "unhandled"):
                for key in src.get(grp, {}):
                    if key not in have:
                        src.copy(src[grp][key], dst.require_group(grp), name=key)
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)


def read_molecules(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(InChIKey, SMILES) pairs from a TSV with ``inchikey`` and ``smiles`` columns, or from a
    plain list of SMILES (InChIKey computed with RDKit)."""
    import pandas as pd
    from rdkit import Chem

    path = Path(path)
    first = path.read_text().splitlines()[:1]
    if first and "smiles" in first[0].lower().split("\t"):
        df = pd.read_csv(path, sep="\t", dtype=str).fillna("")
        df.columns = [c.lower() for c in df.columns]
        if "inchikey" not in df.columns:
            df["inchikey"] = ""
        pairs = list(zip(df["inchikey"], df["smiles"], strict=True))
    else:
        pairs = [("", s.split()[0]) for s in path.read_text().splitlines() if s.strip()]
    out = []
    for key, smi in pairs:
        if not key:
            mol = Chem.MolFromSmiles(smi)
            key = (Chem.MolToInchiKey(mol) if mol is not None else  # no "/" in HDF5 names
                   "UNPARSEABLE-" + hashlib.sha1(smi.encode()).hexdigest()[:16])
        out.append((key, smi))
    return out


def write_subset(cache: str | os.PathLike, keys: list[str], out: str | os.PathLike
                 ) -> tuple[int, int]:
    """The molecules ``keys`` of ``cache`` into a new cache ``out`` (atomic)."""
    out = Path(out)
    from msid.atomic import atomic_path

    n_ok = n_bad = 0
    with atomic_path(out) as tmp, h5py.File(cache, "r") as src, h5py.File(tmp, "w") as dst:
        dst.attrs.update(dict(src.attrs))
        for key in dict.fromkeys(keys):
            for grp in ("molecules", "unhandled"):
                if grp in src and key in src[grp]:
                    src.copy(src[grp][key], dst.require_group(grp), name=key)
                    n_ok += grp == "molecules"
                    n_bad += grp == "unhandled"
    return n_ok, n_bad


def main(argv: list[str] | None = None) -> int:
    """``msid-bde MOLECULES --cache CACHE.h5 --out OUT.h5 --unhandled OUT.tsv``."""
    ap = argparse.ArgumentParser(prog="msid-bde", description=(
        "ALFABET bond dissociation energies for a molecule list (TSV with inchikey+smiles, or "
        "one SMILES a line), cached by InChIKey."))
    ap.add_argument("molecules")
    ap.add_argument("--cache", required=True, help="persistent cache (HDF5), updated in place")
    ap.add_argument("--out", help="the listed molecules' entries as their own HDF5 file")
    ap.add_argument("--unhandled", help="TSV of molecules ALFABET cannot take, with reasons")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import alfabet  # noqa: F401
    except ImportError:
        print("msid-bde: ALFABET is not installed in this environment; it runs in the bde "
              "environment (make .venv-bde, or snakemake --sdm conda with envs/bde.yaml)",
              file=sys.stderr)
        return 2
    mols = read_molecules(args.molecules)
    stats = update_cache(args.cache, mols, progress=not args.no_progress)
    print(f"msid-bde: {len(mols)} molecules, {stats['cached']} cached before, "
          f"{stats['computed']} computed ({stats['unhandled_new']} unhandled) in "
          f"{stats['seconds']:.1f} s", file=sys.stderr)
    keys = [k for k, _ in mols]
    if args.out:
        write_subset(args.cache, keys, args.out)
    if args.unhandled:
        _, bad = read_cache(args.cache)
        smiles = dict(mols)
        from msid.atomic import write_text

        lines = ["inchikey\tsmiles\treason\n"]
        lines += [f"{k}\t{smiles[k]}\t{bad[k]}\n" for k in dict.fromkeys(keys) if k in bad]
        write_text(args.unhandled, "".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
