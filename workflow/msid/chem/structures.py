"""Structure normalisation with RDKit: one way to write every molecule msid compares.

Every structure msid reads (library records, truth, candidates, the candidate index) goes
through :func:`parse_structure`: standardised with RDKit's ``rdMolStandardize`` (largest
organic fragment, normalisation of functional groups, neutralisation by the uncharger), so a
salt or a charged form gets its parent's formula, mass and InChIKey; then written as canonical
RDKit SMILES (stereo removed for ranking), and compared by InChIKey first block. Writing them
all the same way keeps SMILES spelling from leaking which candidate is the true one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rdkit import Chem, RDLogger, rdBase
from rdkit.Chem import rdMolDescriptors
from rdkit.Chem.MolStandardize import rdMolStandardize

RDLogger.DisableLog("rdApp.*")


@dataclass(frozen=True)
class Structure:
    smiles: str  # canonical, isomeric as given
    smiles_flat: str  # canonical, stereo removed: the form used for ranking
    inchikey: str
    formula: str
    exact_mass: float

    @property
    def inchikey14(self) -> str:
        return self.inchikey[:14]


#: salt-forming metals: only their bonds are cut (RDKit's default cuts every metal's, iron and
#: cobalt complexes included)
SALT_METALS = ("Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba", "Zn", "Al")
_METALS = rdMolStandardize.MetalDisconnector()
_METALS.SetMetalNof(Chem.MolFromSmarts(f"[{','.join(SALT_METALS)}]~[#7,#8,#9,#16]"))
_METALS.SetMetalNon(Chem.MolFromSmarts(f"[{','.join(SALT_METALS)}]~[#17,#35,#53]"))
_FRAGMENT = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
_NORMALIZER = rdMolStandardize.Normalizer()
_UNCHARGER = rdMolStandardize.Uncharger(canonicalOrder=True)


#: what RDKit writes into a canonical isomeric SMILES only for stereo or isotopes
_STEREO_OR_ISOTOPE = re.compile(r"[@/\\]|\[\d")
#: a salt written with a covalent bond to its metal (CC(=O)O[Na]): no dot, no charge
_SALT_METAL = re.compile(rf"\[(?:{'|'.join(SALT_METALS)})[^a-z]")


def needs_standardising(smiles: str) -> bool:
    """True when a SMILES has several fragments, charged atoms or a salt-forming metal (the
    cases the standardiser changes beyond canonical writing); others skip its cost (~3x a
    parse)."""
    return ("." in smiles or "+" in smiles or "-]" in smiles
            or _SALT_METAL.search(smiles) is not None)


def _writable(mol: Chem.Mol) -> bool:
    """True when the molecule's SMILES reads back (a standardiser step can leave a molecule
    RDKit cannot kekulize: the uncharger "neutralising" a pyridinium ring, say)."""
    return mol.GetNumAtoms() > 0 and Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is not None


def _salt_metal_off(mol: Chem.Mol) -> Chem.Mol:
    """``mol`` with its metals disconnected when that leaves an organic (carbon) fragment to
    keep, as for a salt written covalently (CC(=O)O[Na]); an inorganic salt is left as is."""
    out = _METALS.Disconnect(mol)
    if len(Chem.GetMolFrags(out)) == len(Chem.GetMolFrags(mol)):  # no salt-metal bond cut
        return mol
    keep = _FRAGMENT.choose(out)
    return out if any(a.GetAtomicNum() == 6 for a in keep.GetAtoms()) else mol


def standardize_mol(mol: Chem.Mol) -> Chem.Mol:
    """Metals disconnected, largest organic fragment, normalised, neutralised
    (rdMolStandardize): CC(=O)O[Na] and CC(=O)[O-].[Na+] both become acetic acid.

    A step whose result no longer reads back as SMILES is skipped: a permanent cation such as
    cetylpyridinium keeps its charge instead of becoming a different, invalid molecule."""
    mol = _salt_metal_off(mol)
    whole = _UNCHARGER.uncharge(_NORMALIZER.normalize(_FRAGMENT.choose(mol)))
    if _writable(whole):
        return whole
    for step in (_FRAGMENT.choose, _NORMALIZER.normalize, _UNCHARGER.uncharge):
        out = step(mol)
        if _writable(out):
            mol = out
    return mol


def parent_mol(mol: Chem.Mol, smiles: str) -> Chem.Mol:
    """The standardised parent of ``mol`` parsed from ``smiles``: :func:`standardize_mol` when
    the SMILES has fragments or charges, else ``mol`` itself (as parsed, too, when RDKit
    raises on an exotic valence state)."""
    if needs_standardising(smiles):
        with suppress(Exception):
            return standardize_mol(mol)
    return mol


@lru_cache(maxsize=200_000)
def smiles_exact_mass(smiles: str) -> float:
    """Monoisotopic mass of an already standardised structure, isotope labels counted (RDKit);
    NaN if it does not parse (:attr:`Structure.exact_mass` without the standardising)."""
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return float(rdMolDescriptors.CalcExactMolWt(mol)) if mol is not None else float("nan")


@lru_cache(maxsize=200_000)
def flat_smiles(smiles: str) -> str:
    """Canonical stereo-free SMILES of an already standardised structure ('' if unparseable):
    :attr:`Structure.smiles_flat` without the standardising and InChIKey work."""
    with rdBase.BlockLogs():  # matchms, once imported, turns RDKit's error log back on
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return ""
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol, isomericSmiles=False)


def inchikey_as_given(smiles: str) -> str:
    """InChIKey of the molecule exactly as written (a salt stays a salt); '' if unparseable."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles.strip()) if smiles else None
        return (Chem.MolToInchiKey(mol) or "") if mol is not None else ""


#: structures another job of the same workflow parsed, by the SMILES as given: filled by
#: :func:`load_structure_table`, consulted by :func:`parse_structure` before RDKit is
_PARSED: dict[str, Structure] = {}


@lru_cache(maxsize=200_000)
def parse_structure(smiles: str) -> Structure | None:
    """Standardised, normalised structure for a SMILES, or None when RDKit cannot parse it."""
    if not smiles or not isinstance(smiles, str):
        return None
    smiles = smiles.strip()
    if (known := _PARSED.get(smiles)) is not None:
        return known
    with rdBase.BlockLogs():  # an unparseable SMILES is the caller's to report, not RDKit's
        return _parse_structure(smiles)


def _parse_structure(smiles: str) -> Structure | None:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    mol = parent_mol(mol, smiles)
    if mol.GetNumAtoms() == 0:
        return None
    written = Chem.MolToSmiles(mol)
    if _STEREO_OR_ISOTOPE.search(written):
        flat = Chem.Mol(mol)
        Chem.RemoveStereochemistry(flat)
        written_flat = Chem.MolToSmiles(flat, isomericSmiles=False)
    else:  # nothing to remove: the same string (checked on 138k library and pool molecules)
        written_flat = written
    inchikey = Chem.MolToInchiKey(mol) or ""
    return Structure(
        smiles=written,
        smiles_flat=written_flat,
        inchikey=inchikey,
        formula=rdMolDescriptors.CalcMolFormula(mol),
        exact_mass=rdMolDescriptors.CalcExactMolWt(mol),
    )


STRUCTURE_TABLE_COLUMNS = ("given", "smiles", "smiles_flat", "inchikey", "formula", "exact_mass")


@lru_cache(maxsize=1)
def _table_header() -> str:
    """Names what made a structure table: RDKit's version and this module's code (its
    standardising), so that a table either changed would answer differently is not loaded."""
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return "# " + json.dumps({"msid_structure_table": 1, "rdkit": rdBase.rdkitVersion,
                              "standardising": code})


def write_structure_table(smiles: Iterable[str], path: str | os.PathLike) -> int:
    """Parse each distinct SMILES once and write what :func:`parse_structure` made of it (the
    unparseable ones are left out) to a TSV, atomically, under a line naming the RDKit
    version and this module's code. The jobs that rank the same candidates load it
    (:func:`load_structure_table`) instead of standardising and InChIKey-ing every molecule
    again. Returns the rows written."""
    from msid.atomic import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        fh.write(_table_header() + "\n")
        out = csv.writer(fh, delimiter="\t", lineterminator="\n")
        out.writerow(STRUCTURE_TABLE_COLUMNS)
        for given in dict.fromkeys(s.strip() for s in smiles if s and s.strip()):
            st = parse_structure(given)
            if st is not None:
                out.writerow((given, st.smiles, st.smiles_flat, st.inchikey, st.formula,
                              repr(st.exact_mass)))
                n += 1
    return n


def load_structure_table(path: str | os.PathLike) -> int:
    """Let :func:`parse_structure` answer the SMILES of a :func:`write_structure_table` table
    without parsing them again. A table written under another RDKit version or other
    standardising code is ignored (returns 0): its answers could differ. Returns the rows
    loaded."""
    with open(path, newline="") as fh:
        if fh.readline().rstrip("\n") != _table_header():
            return 0
        rows = csv.reader(fh, delimiter="\t")
        if tuple(next(rows, ())) != STRUCTURE_TABLE_COLUMNS:
            return 0
        known = {r[0]: Structure(r[1], r[2], r[3], r[4], float(r[5])) for r in rows}
    _PARSED.update(known)
    return len(known)


def inchikey14(smiles: str) -> str | None:
    s = parse_structure(smiles)
    return s.inchikey14 if s and s.inchikey else None


def unique_structures(smiles: Iterable[str], max_n: int, exclude_ik14: str = "") -> list[Structure]:
    """Up to ``max_n`` parseable structures, first occurrence of each InChIKey first block."""
    out: list[Structure] = []
    seen = {exclude_ik14} if exclude_ik14 else set()
    for s in smiles:
        st = parse_structure(s)
        if st is None or not st.inchikey or st.inchikey14 in seen:
            continue
        seen.add(st.inchikey14)
        out.append(st)
        if len(out) >= max_n:
            break
    return out
