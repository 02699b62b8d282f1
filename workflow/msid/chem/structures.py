"""Structure normalisation with RDKit: one way to write every molecule msid compares.

Every candidate and every target goes through :func:`normalize_smiles` before ranking (canonical
RDKit SMILES, stereo removed), and molecules are compared by InChIKey first block. Writing them
all the same way keeps SMILES spelling from leaking which candidate is the true one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from rdkit import Chem, RDLogger
from rdkit.Chem import rdMolDescriptors

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


@lru_cache(maxsize=200_000)
def parse_structure(smiles: str) -> Structure | None:
    """Normalised structure for a SMILES, or None when RDKit cannot parse it."""
    if not smiles or not isinstance(smiles, str):
        return None
    mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    flat = Chem.Mol(mol)
    Chem.RemoveStereochemistry(flat)
    inchikey = Chem.MolToInchiKey(mol) or ""
    return Structure(
        smiles=Chem.MolToSmiles(mol),
        smiles_flat=Chem.MolToSmiles(flat, isomericSmiles=False),
        inchikey=inchikey,
        formula=rdMolDescriptors.CalcMolFormula(mol),
        exact_mass=rdMolDescriptors.CalcExactMolWt(mol),
    )


def normalize_smiles(smiles: str) -> str | None:
    s = parse_structure(smiles)
    return s.smiles_flat if s else None


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
