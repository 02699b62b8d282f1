import gzip
import itertools

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from msid.chem.candidates import CandidateIndex, candidate_set, formula_and_mass
from msid.chem.structures import parse_structure

RES = __import__("conftest").RESOURCES


def test_fast_formula_and_mass_equal_sanitised_rdkit():
    with gzip.open(RES / "candidates" / "moses_train_smiles.csv.gz", "rt") as fh:
        smiles = [ln.strip() for ln in itertools.islice(fh, 1, 3001)]
    formulas, masses = formula_and_mass(smiles, n_jobs=2, chunk=1000)
    for s, f, m in zip(smiles, formulas, masses, strict=True):
        mol = Chem.MolFromSmiles(s)
        assert f == rdMolDescriptors.CalcMolFormula(mol)
        assert abs(m - rdMolDescriptors.CalcExactMolWt(mol)) < 1e-9


def test_mass_window_and_formula_lookup(pool_index):
    ix = CandidateIndex(pool_index)
    assert len(ix) == 26653 and np.all(np.diff(ix.mass) >= 0)
    true = parse_structure("CC1CC2=C(C(=CC=C2)O)C(=O)O1")  # mellein, C10H10O3
    window = ix.mass_window(true.exact_mass, 10)
    assert len(window) > 0
    assert np.all(np.abs(ix.mass[window] - true.exact_mass) <= true.exact_mass * 10e-6 + 1e-9)
    cands = candidate_set(ix, mass=true.exact_mass, ppm=10, max_n=256, true=true)
    assert cands[0].inchikey14 == true.inchikey14
    assert len({c.inchikey14 for c in cands}) == len(cands)
    by_formula = candidate_set(ix, formula="C10H10O3", max_n=256)
    assert by_formula and all(c.formula == "C10H10O3" for c in by_formula)
    assert len(candidate_set(ix, mass=true.exact_mass, max_n=3)) <= 3


def test_precursor_without_adduct_takes_its_charge():
    """A doubly charged precursor without an adduct is [M+2H]2+ (or [M-2H]2-), not [M+H]+:
    pyteomics' proton mass gives the neutral mass each way."""
    from pyteomics.mass import nist_mass

    from msid.chem.adducts import neutral_mass

    proton = nist_mass["H+"][0][0]
    mz = 301.1
    assert neutral_mass(mz, "", "positive", 2) == pytest.approx(2 * (mz - proton), abs=1e-5)
    assert neutral_mass(mz, "", "", 2) == pytest.approx(2 * (mz - proton), abs=1e-5)
    assert neutral_mass(mz, "", "negative", -2) == pytest.approx(2 * (mz + proton), abs=1e-5)
    assert neutral_mass(mz, "", "positive", 0) == pytest.approx(mz - proton, abs=1e-5)
    assert neutral_mass(mz, "[M+Na]+", "positive", 1) == pytest.approx(
        mz - nist_mass["Na"][0][0] + nist_mass["e*"][0][0], abs=1e-4)


def test_a_candidate_window_in_ppm_is_one_of_the_precursor_mz():
    """Pool candidates are matched as library hits are: a candidate's ion (the query's adduct)
    within ``ppm`` of the precursor m/z, whatever the ion: the neutral-mass window that
    ``mass_ppm`` gives ends where that ion is ``ppm`` away."""
    from msid.chem.adducts import ion_mz, mass_ppm, neutral_mass

    for mz, adduct, mode, z in [(181.0707, "[M+H]+", "positive", 1),
                                (179.0561, "[M-H]-", "negative", -1),
                                (203.0526, "[M+Na]+", "positive", 1),
                                (361.1339, "[2M+H]+", "positive", 1),
                                (300.6543, "", "positive", 2)]:
        mass = neutral_mass(mz, adduct, mode, z)
        edge = mass * (1 + mass_ppm(10.0, mz, adduct, mode, z) * 1e-6)
        theo = ion_mz(edge, mz, adduct, mode, z)
        assert abs((mz - theo) / theo * 1e6) == pytest.approx(10.0, rel=1e-4), adduct
    assert mass_ppm(10.0, float("nan")) == 10.0  # no precursor: as given
    from msid.chem.adducts import mass_da

    assert mass_da(0.01, 300.6543, "", "positive", 2) == pytest.approx(0.02)  # |z| / n
    assert mass_da(0.01, 361.1339, "[2M+H]+", "positive", 1) == pytest.approx(0.005)
    assert mass_da(0.01, 181.0707, "[M+H]+", "positive", 1) == pytest.approx(0.01)


def test_formula_candidates_take_the_formula_a_query_carries(tmp_path, data_dir):
    """`--candidate-kind formula`: a query with no structure but an MGF FORMULA= line gets the
    pool molecules of that formula; one with neither gets a row that says why, and the run
    goes on."""
    import re

    from msid.cli import main
    from msid.rankings import read_rankings

    text = (data_dir / "bad" / "pesticides_first3.mgf").read_text()
    text = re.sub(r"(?m)^(SMILES|INCHI|INCHIAUX)=.*\n", "", text)
    (tmp_path / "q.mgf").write_text(text.replace("BEGIN IONS\n", "BEGIN IONS\nFORMULA=C11H8N2O\n",
                                                 1))
    assert main(["identify", str(tmp_path / "q.mgf"), "--method", "random", "--candidate-kind",
                 "formula", "--top-k", "5", "--out", str(tmp_path / "o.tsv")]) == 0
    rows = read_rankings(tmp_path / "o.tsv")
    first = rows[rows["query_id"] == rows["query_id"].iat[0]]
    assert (first["rank"] > 0).all()
    assert {parse_structure(s).formula for s in first["smiles"]} == {"C11H8N2O"}
    rest = rows[rows["query_id"] != rows["query_id"].iat[0]]
    assert len(rest) == 2 and (rest["rank"] == 0).all()
    assert rest["note"].str.contains("it carries neither a structure nor a formula").all()


def _open_record_keys() -> set[str]:
    """InChIKey first blocks of the shipped MassBank records (ESI and EI): as each record
    gives it and as RDKit computes it from the record's SMILES."""
    import pandas as pd

    keys: set[str] = set()
    for path in (RES / "massbank_esi" / "massbank_esi_msms_metadata.tsv.gz",
                 RES / "massbank_ei" / "massbank_ei_metadata.tsv.gz"):
        md = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        keys |= {k[:14] for k in md["inchikey"] if k}
        for smiles in set(md["smiles"]) - {""}:
            mol = Chem.MolFromSmiles(smiles)
            if mol is not None and (key := Chem.MolToInchiKey(mol)):
                keys.add(key[:14])
    return keys


def test_every_shipped_record_is_open_and_every_pool_molecule_has_an_open_source():
    """The data msid ships is openly licensed: no MassBank record (ESI, EI) under a
    non-commercial licence, and every candidate-pool molecule comes from a NEIMS list or is the
    structure of a shipped MassBank record (resources/candidates/SOURCE.md: the upstream pool's
    other molecules, of the CC BY-NC-SA EI set among them, are left out)."""
    import pandas as pd

    for path in (RES / "massbank_esi" / "massbank_esi_msms_metadata.tsv.gz",
                 RES / "massbank_ei" / "massbank_ei_metadata.tsv.gz"):
        licences = set(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)["license"])
        assert licences and not {x for x in licences if "NC" in x.upper()}, (path, licences)
    with gzip.open(RES / "massbank_ei" / "massbank_ei.msp.gz", "rt") as fh:
        msp = {line.split(":", 1)[1].strip() for line in fh if line.upper().startswith("LICENSE:")}
    assert msp and not {x for x in msp if "NC" in x.upper()}, msp
    pool = pd.read_csv(RES / "candidates" / "candidate_pool.tsv.gz", sep="\t", dtype=str,
                       keep_default_na=False)
    no_neims = pool[~pool["sources"].str.contains("NEIMS")]
    assert len(no_neims) > 1000  # the open sets' structures are there
    untraced = set(no_neims["inchikey14"]) - _open_record_keys()
    assert not untraced, f"{len(untraced)} pool molecules of no open source: {sorted(untraced)[:3]}"


def test_every_shipped_data_file_is_named_with_its_source_and_notice():
    """Each data file in resources/ (models aside) is named in its folder's SOURCE.md, each
    fixture in tests/data/SOURCE_fixtures.md, and THIRD_PARTY_NOTICES.md names every folder,
    with the licence texts it points to in LICENSES/."""
    import subprocess

    root = RES.parent
    files = subprocess.run(["git", "ls-files", "resources", "tests/data"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split()
    notices = (root / "THIRD_PARTY_NOTICES.md").read_text()
    missing = []
    for f in files:
        path = root / f
        if path.name in ("SOURCE.md", "README.md", "SOURCE_fixtures.md") or "models/" in f:
            continue
        if f.startswith("tests/data/bad/"):
            continue  # made from the fixtures (SOURCE_fixtures.md says how)
        source = (root / "tests/data/SOURCE_fixtures.md" if f.startswith("tests/data/")
                  else path.parent / "SOURCE.md")
        if path.name not in source.read_text():
            missing.append(f"{f} (not in {source.name})")
        folder = str(path.parent.relative_to(root))
        if folder not in notices and f not in notices and path.name not in notices:
            missing.append(f"{f} (not in THIRD_PARTY_NOTICES.md)")
    assert not missing, missing
    for text in ("Apache-2.0.txt", "BSD-3-Clause-OpenMS.txt", "MIT-MOSES.txt"):
        assert text in notices and (root / "LICENSES" / text).stat().st_size > 500
