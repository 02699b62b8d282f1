"""Nominal-mass isotope patterns of molecules, from the isotope abundances of pyteomics' NIST
table (``pyteomics.mass.nist_mass``).

A pattern ``r`` gives, for each shift ``k`` of ``0..max_shift`` nominal mass units above the
molecule's nominal mass (every atom its most abundant isotope, as
:func:`msid.ei.neims.nominal_mass` counts it), the abundance of the isotopologues at that
shift relative to shift 0: ``r[0] == 1``; one chlorine gives ``r[2]`` about 0.32, one bromine
about 0.97.

An isotope-labelled atom (``[2H]``, ``[13C]``: a deuterated or 13C internal standard) has the
mass of its label and no natural spread: it counts at that mass in the nominal mass and
nowhere in the pattern. Formulas are written as RDKit writes them with the labels apart
(:func:`molecule_formula`: ``CD3Cl``, ``[13C]4H6O4``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

#: a formula's element or labelled isotope ([13C], and RDKit's D and T), and its count
_FORMULA_TOKEN = re.compile(r"(\[\d+[A-Z][a-z]?\]|[A-Z][a-z]?)(\d*)")
_HYDROGEN_LABELS = {"D": "[2H]", "T": "[3H]"}
_LABEL = re.compile(r"^\[(\d+)([A-Z][a-z]?)\]$")


def molecule_formula(mol: Chem.Mol) -> str:
    """The molecular formula with isotope labels kept apart, as RDKit writes it: ``CH3Cl`` for
    chloromethane, ``CD3Cl`` for its d3 form, ``[13C]4H6O4`` for 13C4-succinic acid (a
    formula written without them would give a labelled molecule the unlabelled mass)."""
    return CalcMolFormula(mol, separateIsotopes=True)


@cache
def most_common_isotope(symbol: str) -> int:
    """Mass number of an element's most abundant isotope (RDKit's periodic table)."""
    return int(Chem.GetPeriodicTable().GetMostCommonIsotope(symbol))


def formula_nominal_mass(formula: str) -> int:
    """Nominal mass of a molecular formula: each atom its most abundant isotope's mass
    number, a labelled one (``[13C]``, D) its own."""
    return sum((label_mass_number(el) or most_common_isotope(el)) * n
               for el, n in formula_counts(formula).items())


def label_mass_number(key: str) -> int | None:
    """The mass number of a labelled-isotope key of :func:`formula_counts` (``[13C]`` -> 13),
    None for a plain element."""
    m = _LABEL.match(key)
    return int(m.group(1)) if m else None


@cache
def element_shifts(symbol: str) -> tuple[int, np.ndarray]:
    """(lowest shift, abundances by shift from it) of one element's natural isotopes, shifts
    counted from its most abundant isotope's mass number."""
    from pyteomics.mass import nist_mass

    if symbol not in nist_mass:
        raise ValueError(f"no isotope abundances for element {symbol!r}")
    iso = {n: ab for n, (_, ab) in nist_mass[symbol].items() if n and ab > 0}
    if not iso:  # radioactive only (Tc, Pm, ...): its one stated mass, no pattern
        return 0, np.ones(1)
    top = max(iso, key=iso.__getitem__)
    lo, hi = min(iso) - top, max(iso) - top
    dist = np.zeros(hi - lo + 1)
    for n, ab in iso.items():
        dist[n - top - lo] = ab
    return lo, dist


def _convolve(a: tuple[int, np.ndarray], b: tuple[int, np.ndarray], hi_cap: int | None
              ) -> tuple[int, np.ndarray]:
    lo = a[0] + b[0]
    d = np.convolve(a[1], b[1])
    return lo, d if hi_cap is None else d[:hi_cap - lo + 1]


def formula_pattern(counts: dict[str, int], max_shift: int) -> np.ndarray:
    """Isotope pattern ``r[0..max_shift]`` (``r[0] == 1``) of a formula given as element
    counts. Exact: the elements with isotopes lighter than their most abundant one (B, Se)
    come first, uncut; shifts above ``max_shift`` are dropped only after them, when no later
    element can bring them back down."""
    total: tuple[int, np.ndarray] = (0, np.ones(1))
    natural = _natural(counts)
    for symbol, n in sorted(natural.items(), key=lambda kv: (element_shifts(kv[0])[0] >= 0,
                                                             kv[0])):
        if n <= 0:
            continue
        base = element_shifts(symbol)
        # the running total reaches down to total[0] (< 0 after B, Se): a power of this
        # element is kept up to max_shift - total[0], which that reach can bring back down
        cap = max_shift if base[0] >= 0 else None
        power = n
        while power:  # exponentiation by squaring
            if power & 1:
                total = _convolve(total, base, cap)
            power >>= 1
            if power:
                base = _convolve(base, base, None if cap is None else cap - total[0])
    lo, d = total
    out = np.zeros(max_shift + 1)
    seg = d[-lo:] if lo <= 0 else np.concatenate([np.zeros(lo), d])
    seg = seg[:max_shift + 1]
    out[:len(seg)] = seg
    return out / out[0] if out[0] > 0 else out


def formula_counts(formula: str) -> dict[str, int]:
    """Element counts of a formula as RDKit writes it (``C6H5Cl``; a charge sign ignored);
    labelled isotopes are keys of their own (``CD3Cl`` -> C 1, [2H] 3, Cl 1)."""
    counts: Counter = Counter()
    for symbol, n in _FORMULA_TOKEN.findall(formula):
        counts[_HYDROGEN_LABELS.get(symbol, symbol)] += int(n) if n else 1
    return dict(counts)


def _natural(counts: dict[str, int]) -> dict[str, int]:
    """The atoms of natural isotope composition (labelled ones have one mass: no spread)."""
    return {e: n for e, n in counts.items() if not e.startswith("[")}


@cache
def _log_series(symbol: str, max_shift: int) -> np.ndarray | None:
    """Coefficients 0..max_shift of log(d(x) / d(0)) for an element whose most abundant
    isotope is its lightest (d: abundances by shift); None for one with a lighter isotope
    (B, Se, ...), whose pattern :func:`formula_pattern` works out instead."""
    lo, d = element_shifts(symbol)
    if lo < 0:
        return None
    u = np.zeros(max_shift + 1)
    u[1:min(len(d), max_shift + 1)] = (d / d[0])[1:max_shift + 1]
    out, power = np.zeros(max_shift + 1), np.zeros(max_shift + 1)
    power[0] = 1.0
    for k in range(1, max_shift + 1):  # log(1 + u) = sum (-1)^(k+1) u^k / k, u has no x^0
        power = np.convolve(power, u)[:max_shift + 1]
        out += (-1) ** (k + 1) * power / k
    return out


def patterns(counts: Sequence[dict[str, int]], max_shift: int) -> np.ndarray:
    """:func:`formula_pattern` of many formulas at once (rows): the product of the elements'
    abundance polynomials raised to their counts is exp(sum of count x log series), worked
    out on truncated power series for all rows together (exact: the truncation never feeds
    a lower power)."""
    counts = [_natural(c) for c in counts]
    n = len(counts)
    out = np.zeros((n, max_shift + 1))
    symbols = sorted({e for c in counts for e in c})
    series = {e: _log_series(e, max_shift) for e in symbols}
    plain = [e for e in symbols if series[e] is not None]
    col = {e: j for j, e in enumerate(plain)}
    cmat = np.zeros((n, len(plain)))
    odd = []
    for i, c in enumerate(counts):
        if any(series[e] is None for e in c):
            odd.append(i)
            continue
        for e, k in c.items():
            cmat[i, col[e]] = k
    logs = cmat @ np.stack([series[e] for e in plain]) if plain else np.zeros((n, max_shift + 1))
    # exp of a series with no constant term: e_0 = 1, e_k = sum_j (j/k) l_j e_(k-j)
    out[:, 0] = 1.0
    for k in range(1, max_shift + 1):
        j = np.arange(1, k + 1)
        out[:, k] = (logs[:, j] * (j / k) * out[:, k - j]).sum(1)
    for i in odd:
        out[i] = formula_pattern(counts[i], max_shift)
    return out

