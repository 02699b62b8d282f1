"""Structure standardisation: salts and charged forms become their parent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase

from msid.chem.candidates import CandidateIndex, PoolSource, build_index
from msid.chem.structures import needs_standardising, parse_structure

REPO = Path(__file__).resolve().parents[1]

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_salt_gets_parents_inchikey_formula_and_mass():
    parent = parse_structure(ASPIRIN)
    for salt in ("CC(=O)Oc1ccccc1C(=O)[O-].[Na+]", "CC(=O)Oc1ccccc1C(=O)O.Cl",
                 "[K+].CC(=O)Oc1ccccc1C([O-])=O"):
        st = parse_structure(salt)
        assert st.inchikey == parent.inchikey
        assert st.formula == parent.formula == "C9H8O4"
        assert abs(st.exact_mass - parent.exact_mass) < 1e-9
        assert st.smiles_flat == parent.smiles_flat


def test_zwitterion_kept_and_amine_hydrochloride_neutral():
    betaine = parse_structure("C[N+](C)(C)CC(=O)[O-]")
    assert betaine.formula == "C5H11NO2"  # a real zwitterion is its own parent
    assert parse_structure("CCN.Cl").smiles_flat == "CCN"


def test_candidate_index_holds_salts_at_parent_mass(tmp_path):
    src = tmp_path / "pool.tsv"
    src.write_text("smiles\tformula\tmonoisotopic_mass\n"
                   "CC(=O)Oc1ccccc1C(=O)[O-].[Na+]\tC9H7NaO4\t202.0237\n"
                   "CCO\tC2H6O\t46.041865\n")
    build_index([PoolSource(src, "pool")], tmp_path / "i.npz", log=lambda *_: None)
    index = CandidateIndex(tmp_path / "i.npz")
    parent = parse_structure(ASPIRIN)
    hits = index.structures(index.mass_window(parent.exact_mass, 5.0), 10)
    assert [h.inchikey for h in hits] == [parent.inchikey]
    assert len(index.formula_matches("C9H8O4")) == 1
    assert np.isfinite(index.mass).all()


def test_permanent_cation_keeps_its_charge_and_reads_back():
    # the shipped MassBank record MSBNK-BAFG-CSL23110965 (cetylpyridinium, [M]+): the uncharger
    # used to turn it into an unkekulizable "neutral" pyridine with another InChIKey
    st = parse_structure("CCCCCCCCCCCCCCCCN1C=C[CH+]C=C1")
    assert st.inchikey == "NEUSVAOJNUQRTM-UHFFFAOYSA-N"  # as the record gives it
    assert st.formula == "C21H38N+"
    assert Chem.MolFromSmiles(st.smiles) is not None


def test_every_standardised_library_structure_reads_back():
    md = pd.read_csv(REPO / "resources/massbank_esi/massbank_esi_msms_metadata.tsv.gz",
                     sep="\t", dtype=str, keep_default_na=False)
    charged = sorted({s for s in md["smiles"] if s and needs_standardising(s)})
    assert len(charged) > 500  # salts, zwitterions and cations of the shipped library
    unreadable = [s for s in charged if (st := parse_structure(s)) is not None
                  and Chem.MolFromSmiles(st.smiles) is None]
    assert unreadable == []


def test_flat_smiles_shortcut_equals_removing_stereo():
    """A structure without stereo or isotopes reuses its SMILES as the flat form; for every
    shipped library structure and the first pool molecules that is RDKit's stereo-free SMILES."""
    md = pd.read_csv(REPO / "resources/massbank_esi/massbank_esi_msms_metadata.tsv.gz",
                     sep="\t", dtype=str, keep_default_na=False)
    pool = pd.read_csv(REPO / "resources/candidates/candidate_pool.tsv.gz", sep="\t",
                       dtype=str, keep_default_na=False, nrows=5000)
    smiles = sorted({s for s in [*md["smiles"], *pool["smiles"]] if s})
    n_stereo, wrong = 0, []
    for s in smiles:
        st = parse_structure(s)
        if st is None:
            continue
        mol = Chem.MolFromSmiles(st.smiles)
        Chem.RemoveStereochemistry(mol)
        n_stereo += st.smiles != st.smiles_flat
        if Chem.MolToSmiles(mol, isomericSmiles=False) != st.smiles_flat:
            wrong.append(s)
    assert n_stereo > 500 and wrong == []  # both paths taken, one answer


def test_a_salt_written_with_a_covalent_metal_bond_is_its_parent():
    """CC(=O)O[Na] (no dot, no charge) and CC(=O)[O-].[Na+] are one compound: acetic acid,
    with its InChIKey, formula and mass (so both spellings share a fold)."""
    from msid.chem.structures import parse_structure

    covalent, ionic = parse_structure("CC(=O)O[Na]"), parse_structure("CC(=O)[O-].[Na+]")
    assert covalent.inchikey == ionic.inchikey == "QTBSBXVTEAMEQO-UHFFFAOYSA-N"
    assert covalent.formula == "C2H4O2" and covalent.exact_mass == ionic.exact_mass
    assert parse_structure("O=S(=O)(O[Na])c1ccccc1").smiles == "O=S(=O)(O)c1ccccc1"
    # only salt-forming metals are cut off: an iron or cobalt complex keeps its metal, however
    # it is written (with a hydrate's water or without)
    iron = parse_structure("CC(=O)O[Fe]OC(C)=O")
    assert iron.formula == "C4H6FeO4" == parse_structure("CC(=O)O[Fe]OC(C)=O.O").formula
    assert "Co" in parse_structure("C[N+](C)(C)CCO[Co](N)(N)N").formula


def test_structure_table_answers_as_parsing_would(tmp_path):
    """A table benchmark_inputs writes makes parse_structure answer without RDKit, with what
    RDKit would have said; one from another RDKit version is not trusted."""
    import msid.chem.structures as structures

    md = pd.read_csv(REPO / "resources/massbank_esi/massbank_esi_msms_metadata.tsv.gz",
                     sep="\t", dtype=str, keep_default_na=False, nrows=3000)
    smiles = [*[s for s in md["smiles"] if s][:1500], "C1CC", "not a molecule"]
    assert any(needs_standardising(s) for s in smiles)  # salts and charged forms among them
    parsed = {s: parse_structure(s) for s in smiles}
    n = structures.write_structure_table(smiles, tmp_path / "t.tsv")
    assert n == sum(v is not None for v in parsed.values()) and n < len(set(smiles))
    parse_structure.cache_clear()
    calls = []
    real = structures._parse_structure
    structures._parse_structure = lambda s: calls.append(s) or real(s)
    try:
        assert structures.load_structure_table(tmp_path / "t.tsv") == n
        assert {s: parse_structure(s) for s in smiles} == parsed  # masses to the last bit
        assert sorted(set(calls)) == ["C1CC", "not a molecule"]  # only those parsed again
        text = (tmp_path / "t.tsv").read_text()
        (tmp_path / "old.tsv").write_text(text.replace(rdBase.rdkitVersion, "2019.03.1"))
        assert structures.load_structure_table(tmp_path / "old.tsv") == 0
        header = text.split("\n", 1)[0]
        code = json.loads(header[2:])["standardising"]  # this module's code, as it was
        (tmp_path / "edited.tsv").write_text(text.replace(code, "0" * len(code)))
        assert structures.load_structure_table(tmp_path / "edited.tsv") == 0
    finally:
        structures._parse_structure = real
        structures._PARSED.clear()
        parse_structure.cache_clear()
