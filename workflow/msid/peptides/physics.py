"""Peptide physics: residue and modification masses, precursor m/z, b/y fragment ions.

Residue masses come from pyteomics (``mass.std_aa_mass``), the proton and water from pyteomics'
``nist_mass`` / ``calculate_mass``, modification mass shifts from UniMod as shipped with pyOpenMS
(``ModificationsDB``). Nothing here is a hand-typed mass.

Sequences are token lists. A token is a residue (``"A"``), a modified residue in ProForma form
(``"C[Carbamidomethyl]"``) or an N-terminal modification (``"[Acetyl]-"``, always first). I and L
have the same mass; the vocabulary folds I into L (evaluation treats them as equal anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np
from pyteomics import mass, proforma

STANDARD = "ACDEFGHKLMNPQRSTVWY"  # 20 residues, I folded into L
# Modified residues and N-terminal modifications the vocabulary knows (UniMod names).
RESIDUE_MODS: tuple[tuple[str, str], ...] = (
    ("C", "Carbamidomethyl"), ("M", "Oxidation"), ("N", "Deamidated"), ("Q", "Deamidated"),
    ("Q", "Gln->pyro-Glu"), ("E", "Glu->pyro-Glu"), ("C", "Pyro-carbamidomethyl"),
)
NTERM_MODS: tuple[str, ...] = ("Acetyl", "Carbamyl")
# Residue modifications that form only at the peptide's N-terminal residue (cyclisation of its
# free amine): such a residue leads the sequence, with no N-terminal modification before it.
NTERM_ONLY_RESIDUE_MODS: tuple[str, ...] = ("Gln->pyro-Glu", "Glu->pyro-Glu",
                                            "Pyro-carbamidomethyl")

PROTON: float = mass.nist_mass["H+"][0][0]
WATER: float = mass.calculate_mass(formula="H2O")
ISOTOPE: float = mass.nist_mass["C"][13][0] - mass.nist_mass["C"][12][0]  # precursor isotope step
AMMONIA: float = mass.calculate_mass(formula="NH3")


class SequenceError(ValueError):
    """A sequence (ProForma) msid cannot represent."""


def _unimod(name: str, residue: str = ""):
    import pyopenms as oms

    db = oms.ModificationsDB()
    keys = ([f"{name} (N-term {residue})", f"{name} ({residue})"] if residue else []) + [
        f"{name} (N-term)", name]
    for key in keys:
        if db.has(key):  # (a failed getModification prints to stderr from C++)
            return db.getModification(key)
    raise SequenceError(f"UniMod has no modification '{name}' for residue '{residue or 'N-term'}'")


@cache
def unimod_delta(name: str, residue: str = "") -> float:
    """Monoisotopic mass shift of UniMod modification ``name`` (on ``residue`` or N-term)."""
    return float(_unimod(name, residue).getDiffMonoMass())


@cache
def unimod_accession(name: str, residue: str = "") -> str:
    """``UNIMOD:<n>`` of modification ``name``."""
    acc = str(_unimod(name, residue).getUniModAccession())
    return "UNIMOD:" + acc.split(":")[-1]


def residue_mass(aa: str) -> float:
    return float(mass.std_aa_mass[aa])


@dataclass(frozen=True)
class Vocab:
    """Token <-> index. Index 0 is padding / end of sequence (mass 0)."""

    tokens: tuple[str, ...]

    @classmethod
    def default(cls) -> Vocab:
        return cls(("<pad>", *STANDARD, *(f"{a}[{m}]" for a, m in RESIDUE_MODS),
                    *(f"[{m}]-" for m in NTERM_MODS)))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def masses(self) -> np.ndarray:
        return np.array([0.0] + [token_mass(t) for t in self.tokens[1:]])

    def encode(self, tokens: list[str]) -> list[int]:
        idx = self.index
        try:
            return [idx[t] for t in tokens]
        except KeyError as e:
            raise SequenceError(f"token {e.args[0]!r} is not in the vocabulary") from e

    def decode(self, ids: list[int] | np.ndarray) -> list[str]:
        out = []
        for i in ids:
            if int(i) == 0:
                break
            out.append(self.tokens[int(i)])
        return out

    @property
    def nterm_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if t.endswith("-")]

    @property
    def first_only_ids(self) -> list[int]:
        """Tokens that may only open a sequence: N-terminal modifications and residues with an
        N-terminal-only modification (pyro-Glu, pyro-carbamidomethyl)."""
        return self.nterm_ids + [i for i, t in enumerate(self.tokens)
                                 if any(t.endswith(f"[{m}]") for m in NTERM_ONLY_RESIDUE_MODS)]


@cache
def token_mass(token: str) -> float:
    """Mass a token adds to the peptide's residue sum."""
    m = re.fullmatch(r"\[([^\]]+)\]-", token)
    if m:
        return unimod_delta(m.group(1))
    m = re.fullmatch(r"([A-Z])(?:\[([^\]]+)\])?", token)
    if not m:
        raise SequenceError(f"not a residue token: {token!r}")
    aa, mod = m.group(1), m.group(2)
    return residue_mass(aa) + (unimod_delta(mod, aa) if mod else 0.0)


#: how far a mass-delta tag ([+57.021], Casanovo's C+57.021) may lie from the UniMod shift it
#: names (Da): written deltas carry 3 decimals, so 0.01 cannot reach another vocabulary entry
DELTA_TOLERANCE = 0.01
_TAG = re.compile(r"([A-Z]?)\[([^\]]*)\](-?)")


def vocabulary_name(tag: str, residue: str) -> str:
    """The vocabulary's UniMod name for a modification tag on ``residue`` ('' = N-terminus):
    the name itself, a UniMod accession (``UNIMOD:4``) or a mass delta (``+57.021``); the tag
    unchanged when none of the vocabulary's modifications fits it (refused by the caller)."""
    names = ([m for a, m in RESIDUE_MODS if a == residue] if residue else list(NTERM_MODS))
    if tag in names:
        return tag
    acc = re.fullmatch(r"(?i)unimod:(\d+)", tag.strip())
    if acc:
        return next((m for m in names if unimod_accession(m, residue) == f"UNIMOD:{acc[1]}"),
                    tag)
    try:
        delta = float(tag)
    except ValueError:
        return tag
    near = [m for m in names if abs(unimod_delta(m, residue) - delta) <= DELTA_TOLERANCE]
    return near[0] if len(near) == 1 else tag


def _leading_delta(m: re.Match) -> str:
    """A mass delta before the first residue: the residue's own N-terminal-only modification
    when one has that mass (Casanovo's ``-17.027Q`` is ``Q[Gln->pyro-Glu]``), else left as an
    N-terminal modification."""
    delta, aa = float(m[1]), m[2]
    for a, name in RESIDUE_MODS:
        if (a == aa and name in NTERM_ONLY_RESIDUE_MODS
                and abs(unimod_delta(name, a) - delta) <= DELTA_TOLERANCE):
            return f"{aa}[{name}]"
    return m[0]


def _named_modifications(seq: str) -> str:
    """``seq`` with every modification written by its vocabulary name: ProForma accessions
    (``C[UNIMOD:4]``) and mass deltas (``M[+15.995]``), and the bare deltas of Casanovo and
    MassIVE-KB (``C+57.021``, ``+42.011PEPTIDE``, ``-17.027QPEP``) become
    ``C[Carbamidomethyl]`` and so on. Two deltas at the N-terminus (``+43.006-17.027``) are not
    read: no single vocabulary entry has their sum."""
    seq = re.sub(r"^([+-]\d+(?:\.\d+)?)([A-Z])(?![+\-\[])", _leading_delta, seq.strip())
    seq = re.sub(r"^([+-]\d+(?:\.\d+)?)(?=[A-Z])", r"[\1]-", seq)
    seq = re.sub(r"([A-Z])([+-]\d+(?:\.\d+)?)", r"\1[\2]", seq)
    return _TAG.sub(lambda t: f"{t[1]}[{vocabulary_name(t[2], t[1] if not t[3] else '')}]"
                              f"{t[3]}", seq)


def parse_proforma(seq: str) -> list[str]:
    """ProForma peptide -> tokens (pyteomics' ProForma parser; I folded into L).

    Modifications may be written by UniMod name, accession or mass delta (see
    :func:`_named_modifications`). Those outside the vocabulary are refused before parsing:
    pyteomics would try to resolve them in online controlled vocabularies (slow, and msid never
    goes online)."""
    known = {m for _, m in RESIDUE_MODS} | set(NTERM_MODS)
    seq = _named_modifications(seq)
    for name in re.findall(r"\[([^\]]*)\]", seq):
        if name not in known:
            raise SequenceError(f"modification '{name}' is not in the vocabulary ({seq!r})")
    try:
        residues, props = proforma.parse(seq)
    except Exception as e:  # pyteomics raises its own ProFormaError and others
        raise SequenceError(f"not a ProForma peptide: {seq!r} ({e})") from e
    for key in ("c_term", "unlocalized_modifications", "labile_modifications", "intervals",
                "isotopes", "fixed_modifications"):
        if props.get(key):
            raise SequenceError(f"unsupported ProForma feature '{key}' in {seq!r}")
    tokens = [f"[{m.value}]-" for m in props.get("n_term") or []]
    for aa, mods in residues:
        aa = "L" if aa == "I" else aa
        if aa not in STANDARD:
            raise SequenceError(f"unknown residue {aa!r} in {seq!r}")
        if mods:
            if len(mods) > 1:
                raise SequenceError(f"more than one modification on {aa} in {seq!r}")
            tokens.append(f"{aa}[{mods[0].value}]")
        else:
            tokens.append(aa)
    if not tokens:
        raise SequenceError("empty peptide")
    return tokens


def to_proforma(tokens: list[str]) -> str:
    return "".join(tokens)


def plain(tokens: list[str]) -> str:
    """Residues only, I = L (the key sequences are split and compared by)."""
    return "".join(t[0] for t in tokens if not t.endswith("-")).replace("I", "L")


def peptide_mass(tokens: list[str]) -> float:
    """Neutral monoisotopic mass."""
    return sum(token_mass(t) for t in tokens) + WATER


def precursor_mz(tokens: list[str], charge: int) -> float:
    return (peptide_mass(tokens) + charge * PROTON) / charge


def neutral_from_mz(mz: float, charge: int) -> float:
    return mz * charge - charge * PROTON


def _residue_blocks(tokens: list[str]) -> list[float]:
    """Per-residue masses with N-terminal modifications folded into the first residue."""
    out: list[float] = []
    carry = 0.0
    for t in tokens:
        if t.endswith("-"):
            carry += token_mass(t)
        else:
            out.append(token_mass(t) + carry)
            carry = 0.0
    return out


def fragment_ions(tokens: list[str], charges: tuple[int, ...] = (1, 2)) -> dict[str, np.ndarray]:
    """b and y ion m/z, ``{"b1": [...], "y1": [...], "b2": ...}``; index i = ion b_{i+1}/y_{i+1}."""
    blocks = np.array(_residue_blocks(tokens))
    b = np.cumsum(blocks)[:-1]
    y = np.cumsum(blocks[::-1])[:-1] + WATER
    out = {}
    for z in charges:
        out[f"b{z}"] = (b + z * PROTON) / z
        out[f"y{z}"] = (y + z * PROTON) / z
    return out
