"""Isotope patterns (msid.chem.isotopes) and the molecular ion's isotope peaks that msid adds
to predicted EI spectra (msid.ei.predict.add_isotope_peaks)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyteomics import mass
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from msid.chem.isotopes import formula_counts, formula_pattern, patterns

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "resources" / "candidates" / "candidate_pool.tsv.gz"
EI_MSP = ROOT / "resources" / "massbank_ei" / "massbank_ei.msp.gz"
STUDENT = ROOT / "resources" / "models" / "neims_student_cc-by-nc-sa.safetensors"


def _enumerated(formula: str, max_shift: int) -> np.ndarray:
    """The pattern by pyteomics' own enumeration of isotopic compositions (independent of
    msid's convolution), summed by nominal shift from the most abundant isotopes' mass."""
    counts = formula_counts(formula)
    base = sum(n * max(((i, ab) for i, (_, ab) in mass.nist_mass[e].items() if i),
                       key=lambda t: t[1])[0] for e, n in counts.items())
    by_shift: dict[int, float] = defaultdict(float)
    # isotopes of no natural abundance (3H, 14C) left out; combinations below 1e-9 pruned
    for comp, ab in mass.isotopologues(formula=formula, report_abundance=True,
                                       isotope_threshold=1e-7, overall_threshold=1e-9):
        nominal = sum(n * (int(k.split("[")[1].rstrip("]")) if "[" in k else
                           max(((i, a) for i, (_, a) in mass.nist_mass[k].items() if i),
                               key=lambda t: t[1])[0])
                      for k, n in comp.items())
        by_shift[nominal - base] += ab
    out = np.array([by_shift.get(k, 0.0) for k in range(max_shift + 1)])
    return out / out[0]


@pytest.mark.parametrize("formula", ["C6H5Cl", "C6H4Br2", "C6H3Cl3", "C10H16S",
                                     "C3H9ClSi", "C2H6Se", "C6H7BO2", "C6HBr5Se"])
def test_pattern_equals_pyteomics_enumeration(formula) -> None:
    np.testing.assert_allclose(formula_pattern(formula_counts(formula), 6),
                               _enumerated(formula, 6), rtol=1e-6, atol=1e-8)


def test_textbook_ratios() -> None:
    """Cl: M+2 about a third of M; Br2: 1 : 2 : 1 at M, M+2, M+4; 13C: 1.1% per carbon."""
    cl = formula_pattern({"C": 6, "H": 5, "Cl": 1}, 4)
    br2 = formula_pattern({"C": 6, "H": 4, "Br": 2}, 4)
    assert cl[0] == 1 and cl[2] == pytest.approx(0.2424 / 0.7576, rel=1e-2)  # + 13C2, 18O
    assert br2[2] == pytest.approx(1.95, abs=0.01) and br2[4] == pytest.approx(0.95, abs=0.01)
    assert formula_pattern({"C": 10}, 1)[1] == pytest.approx(10 * 0.0107 / 0.9893, rel=1e-3)


def test_many_at_once_equal_one_by_one_on_the_candidate_pool() -> None:
    """The vectorised series (exp of summed logs) against the exact convolution, on real
    molecules, boron and selenium (lighter isotopes than their most abundant) included."""
    smiles = pd.read_csv(POOL, sep="\t", usecols=["smiles"]).smiles.head(1500).tolist()
    smiles += ["OB(O)c1ccccc1", "C[Se]C", "Brc1ccc(Br)cc1Cl", "[Na+].[Cl-]"]
    counts = [formula_counts(CalcMolFormula(Chem.MolFromSmiles(s))) for s in smiles]
    np.testing.assert_allclose(patterns(counts, 8),
                               np.stack([formula_pattern(c, 8) for c in counts]),
                               rtol=1e-9, atol=1e-12)


def test_shipped_student_gets_the_chlorine_cluster_and_moves_toward_measured() -> None:
    """Chlorobenzene: M+2 at a third of M, nothing past M+8, base peak 1. On the shipped
    MassBank EI records of Cl/Br compounds, the added peaks bring the predictions closer to
    the measured spectra (weighted cosine, m/z^3 x intensity^0.6) on average."""
    if not STUDENT.exists():
        pytest.skip("shipped EI student not present")
    from msid.ei.neims_eval import row_cosine, weighted
    from msid.ei.neims_train import load_neims
    from msid.ei.predict import predict_smiles
    from msid.ei.spectra import dense_nominal, ei_store
    from msid.store import SpectrumStore

    model, _ = load_neims(STUDENT)
    spec, _ = predict_smiles(model, ["Clc1ccccc1"])
    plain, _ = predict_smiles(model, ["Clc1ccccc1"], isotopes=False)
    assert np.allclose(spec.max(1), 1) and not plain[0, 113:].any()
    ratio = spec[0, 114] / spec[0, 112]
    assert ratio == pytest.approx(formula_pattern({"C": 6, "H": 5, "Cl": 1}, 2)[2], rel=1e-5)
    assert spec[0, 113] > 0 and not spec[0, 121:].any()
    with SpectrumStore(ei_store(EI_MSP)) as s:
        md = s.metadata
        rows = [i for i, smi in enumerate(md.smiles) if isinstance(smi, str)
                and ("Cl" in smi or "Br" in smi)]
        measured = np.stack([dense_nominal(*s.peaks(i), model.cfg.max_mz) for i in rows])
        smiles = [md.smiles.iloc[i] for i in rows]
    assert len(smiles) > 50
    with_iso, ok = predict_smiles(model, smiles)
    without, ok2 = predict_smiles(model, smiles, isotopes=False)
    assert ok.tolist() == ok2.tolist()
    gain = (row_cosine(weighted(with_iso), weighted(measured[ok]))
            - row_cosine(weighted(without), weighted(measured[ok])))
    # (no change where the predicted molecular ion is 0 or lies past the m/z range)
    print(f"mean gain {gain.mean():.3f}, better {(gain > 0).mean():.2f}, worse "
          f"{(gain < 0).mean():.2f}")
    assert gain.mean() > 0.02 and (gain > 0).mean() > 2 * (gain < 0).mean()


def test_isotope_labels_weigh_their_own_mass_and_have_no_spread() -> None:
    """A deuterated or 13C internal standard: its formula keeps the labels apart, its nominal
    mass counts them (CD3Cl 53, not chloromethane's 50) and its pattern is that of the
    unlabelled atoms alone, so the Cl M+2 peak of a predicted spectrum lands at 55."""
    from msid.chem.isotopes import molecule_formula
    from msid.ei.neims import nominal_mass
    from msid.ei.predict import add_isotope_peaks

    cases = {"[2H]C([2H])([2H])Cl": ("CD3Cl", 53, {"C": 1, "Cl": 1}),
             "O=[13C](O)[13CH2][13CH2][13C](=O)O": ("[13C]4H6O4", 122, {"H": 6, "O": 4}),
             "C[18OH]": ("CH4[18O]", 34, {"C": 1, "H": 4}),
             "ClC": ("CH3Cl", 50, {"C": 1, "H": 3, "Cl": 1})}
    for smiles, (formula, nominal, natural) in cases.items():
        mol = Chem.MolFromSmiles(smiles)
        assert molecule_formula(mol) == formula and nominal_mass(mol) == nominal, smiles
        np.testing.assert_allclose(patterns([formula_counts(formula)], 4)[0],
                                   formula_pattern(natural, 4), rtol=1e-9, atol=1e-12)
    spec = np.zeros((1, 100), np.float32)
    spec[0, 53], spec[0, 35] = 1.0, 0.5
    out = add_isotope_peaks(spec, ["CD3Cl"])[0]
    assert out[55] == pytest.approx(0.32, abs=0.01) and out[52] == 0 and out[56] < 0.01
