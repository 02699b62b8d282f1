"""De novo peptide sequencing (msid.peptides): physics, data, metrics, decoding, DP, outputs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from msid.peptides.data import read_annotated_mgf, sequence_fold, split_by_sequence
from msid.peptides.decode import beam, greedy
from msid.peptides.dp import DPConfig, SpectrumGraphDP
from msid.peptides.metrics import aa_match, bootstrap, score_predictions, summary
from msid.peptides.physics import (
    ISOTOPE,
    PROTON,
    WATER,
    SequenceError,
    Vocab,
    fragment_ions,
    neutral_from_mz,
    parse_proforma,
    peptide_mass,
    precursor_mz,
    token_mass,
    unimod_accession,
    unimod_delta,
)
from msid.peptides.synthetic import NOISY, CurriculumConfig, random_peptide, synthetic_spectrum

ROOT = Path(__file__).resolve().parents[1]
MGF = sorted((ROOT / "resources" / "peptides").glob("*.mgf.gz"))


@pytest.fixture(scope="module")
def annotated():
    return read_annotated_mgf(MGF)


def test_masses_match_reference_values():
    # UniMod monoisotopic deltas (unimod.org) and textbook constants
    assert unimod_delta("Carbamidomethyl", "C") == pytest.approx(57.021464, abs=1e-6)
    assert unimod_delta("Oxidation", "M") == pytest.approx(15.994915, abs=1e-6)
    assert unimod_delta("Deamidated", "N") == pytest.approx(0.984016, abs=1e-6)
    assert unimod_delta("Acetyl") == pytest.approx(42.010565, abs=1e-6)
    assert unimod_delta("Carbamyl") == pytest.approx(43.005814, abs=1e-6)
    assert unimod_delta("Gln->pyro-Glu", "Q") == pytest.approx(-17.026549, abs=1e-6)
    assert unimod_accession("Carbamidomethyl", "C") == "UNIMOD:4"
    assert pytest.approx(1.007276, abs=1e-6) == PROTON
    assert pytest.approx(18.010565, abs=1e-6) == WATER
    assert token_mass("G") == pytest.approx(57.021464, abs=1e-6)
    assert token_mass("C[Carbamidomethyl]") == pytest.approx(160.030649, abs=1e-6)
    pep = parse_proforma("PEPTIDE")
    assert precursor_mz(pep, 1) == pytest.approx(800.367245, abs=1e-5)  # [M+H]+
    assert precursor_mz(pep, 2) == pytest.approx(400.687261, abs=1e-5)
    ions = fragment_ions(pep)
    assert ions["b1"][1] == pytest.approx(227.102633, abs=1e-5)  # b2 PE
    assert ions["y1"][0] == pytest.approx(148.060434, abs=1e-5)  # y1 E
    assert len(ions["b1"]) == len(ions["y1"]) == 6
    # b_i + y_(n-i) = [M+H]+ + proton
    assert ions["b1"][2] + ions["y1"][3] == pytest.approx(peptide_mass(pep) + 2 * PROTON)
    acetyl = parse_proforma("[Acetyl]-PEPTIDE")
    assert peptide_mass(acetyl) - peptide_mass(pep) == pytest.approx(42.010565, abs=1e-6)
    assert fragment_ions(acetyl)["b1"][0] - ions["b1"][0] == pytest.approx(42.010565, abs=1e-6)


def test_proforma_parsing_and_errors():
    assert parse_proforma("[Acetyl]-AIC[Carbamidomethyl]K") == [
        "[Acetyl]-", "A", "L", "C[Carbamidomethyl]", "K"]
    # the same peptide by UniMod accession, ProForma mass delta and Casanovo's bare deltas
    want = ["[Acetyl]-", "C[Carbamidomethyl]", "M[Oxidation]", "N[Deamidated]",
            "Q[Deamidated]", "K"]
    for seq in ("[Acetyl]-C[Carbamidomethyl]M[Oxidation]N[Deamidated]Q[Deamidated]K",
                "[UNIMOD:1]-C[UNIMOD:4]M[UNIMOD:35]N[UNIMOD:7]Q[UNIMOD:7]K",
                "[+42.011]-C[+57.021]M[+15.995]N[+0.984]Q[+0.984]K",
                "+42.011C+57.021M+15.995N+0.984Q+0.984K"):
        assert parse_proforma(seq) == want, seq
    assert parse_proforma("Q-17.027EK")[0] == "Q[Gln->pyro-Glu]"
    assert parse_proforma("-17.027QEK")[0] == "Q[Gln->pyro-Glu]"  # Casanovo's N-terminal form
    for bad in ("", "PEPTIDEX", "PEPT[Phospho]IDE", "PEPTIDE-[Amidated]", "PEPS[Foo]",
                "S[UNIMOD:21]K", "M[+79.966]K", "K[+15.995]", "-17.027KEK",
                "+43.006-17.027QEK"):
        with pytest.raises(SequenceError):
            Vocab.default().encode(parse_proforma(bad))


def test_every_annotated_spectrum_agrees_with_its_sequence(annotated):
    """Precursor m/z of every spectrum in the repo copy matches sequence + charge."""
    assert len(annotated.spectra) == 1164 and not annotated.quarantine
    for s in annotated.spectra:
        assert abs(precursor_mz(s.tokens, s.charge) - s.precursor_mz) < 0.05, s.id
    vocab = Vocab.default()
    for s in annotated.spectra:
        assert vocab.decode(vocab.encode(s.tokens)) == s.tokens


def test_bad_records_are_quarantined(tmp_path):
    f = tmp_path / "bad.mgf"
    f.write_text("BEGIN IONS\nTITLE=ok\nPEPMASS=400.687261\nCHARGE=2+\nSEQ=PEPTIDE\n"
                 "100.0 1.0\n200.0 2.0\nEND IONS\n"
                 "BEGIN IONS\nTITLE=wrongmass\nPEPMASS=500.0\nCHARGE=2+\nSEQ=PEPTIDE\n"
                 "100.0 1.0\nEND IONS\n"
                 "BEGIN IONS\nTITLE=noseq\nPEPMASS=500.0\nCHARGE=2+\n100.0 1.0\nEND IONS\n"
                 "BEGIN IONS\nTITLE=badmod\nPEPMASS=500.0\nCHARGE=2+\nSEQ=PEP[Foo]TIDE\n"
                 "100.0 1.0\nEND IONS\n")
    r = read_annotated_mgf(f)
    assert [s.id for s in r.spectra] == ["ok"]
    assert [q[1] for q in r.quarantine] == ["wrongmass", "noseq", "badmod"]


def test_split_is_by_sequence_with_i_equal_l(annotated):
    folds = split_by_sequence(annotated.spectra)
    keys = {f: {s.key for s in v} for f, v in folds.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"]
    assert not keys["val"] & keys["test"]
    assert all(len(v) > 50 for v in folds.values())
    assert sequence_fold("PEPTLDE") == sequence_fold(
        "".join(t[0] for t in parse_proforma("PEPTIDE")))


def test_synthetic_spectra_hold_the_ladder():
    rng = np.random.default_rng(0)
    pep = random_peptide(rng, 8, 12)
    assert pep[-1] in ("K", "R") and 8 <= len([t for t in pep if not t.endswith("-")]) <= 12
    clean = synthetic_spectrum(pep, 2, CurriculumConfig and __import__(
        "msid.peptides.synthetic", fromlist=["NoiseConfig"]).NoiseConfig(), rng)
    ions = fragment_ions(pep, (1,))
    for m in np.concatenate([ions["b1"], ions["y1"]]):
        assert np.min(np.abs(clean.mz - m)) < 1e-6
    noisy = synthetic_spectrum(pep, 2, NOISY, rng)
    assert len(noisy.mz) >= NOISY.noise_peaks and np.all(np.diff(noisy.mz) >= 0)
    assert CurriculumConfig().clean_share_at(0.0) == 0.8
    assert CurriculumConfig().clean_share_at(0.99) == 0.0


def test_metrics_casanovo_conventions():
    t = parse_proforma("PEPTLDEK")
    assert aa_match(parse_proforma("PEPTIDEK"), t) == (8, True)  # I = L
    assert aa_match(parse_proforma("PEPTLDEQ"), t) == (8, True)  # K/Q within 0.1 Da
    n, ok = aa_match(parse_proforma("EPPTLDEK"), t)  # swapped pair: prefix breaks, suffix holds
    assert not ok and n == 6
    sc = score_predictions([t, None, parse_proforma("GGGGGGGG")], [0.9, 0.0, 0.5],
                           [t, t, t])
    s = summary(sc)
    assert s["peptide_recall"] == pytest.approx(1 / 3)
    assert s["aa_recall"] == pytest.approx(8 / 24)
    assert s["aa_precision"] == pytest.approx(8 / 16)
    ci = bootstrap({"a": sc, "b": sc}, n_boot=50)
    lo, hi = ci["a"]["peptide_recall"]
    assert 0 <= lo <= hi <= 1 and ci["b"]["delta_peptide_recall"] == (0.0, 0.0)
    # one peptide's three spectra drawn together: every draw holds all three, so the CI is
    # the point (1/3); drawn one by one it spreads
    grouped = bootstrap({"a": sc}, n_boot=50, groups=["PEPTIDEK"] * 3)
    assert grouped["a"]["peptide_recall"] == pytest.approx((1 / 3, 1 / 3))
    lo, hi = bootstrap({"a": sc}, n_boot=200)["a"]["peptide_recall"]
    assert lo < 1 / 3 < hi


def test_a_true_residue_is_never_matched_twice():
    """A prediction heavier than the truth (the greedy fallback, the DP off the precursor
    mass): the C-terminal pass stops where the N-terminal one did, in both peptides, so
    matched residues never outnumber the true ones (Casanovo's aa_match_prefix_suffix)."""
    assert aa_match(parse_proforma("AGG"), parse_proforma("AG")) == (2, False)
    n, ok = aa_match(parse_proforma("PEPTLDEEK"), parse_proforma("PEPTLDEK"))
    assert not ok and n <= 8
    rng = np.random.default_rng(0)
    letters = list("ACDEFGHKLMNPQRSTVWY")
    for _ in range(300):
        t = "".join(rng.choice(letters, rng.integers(4, 12)))
        p = list(t)
        for _ in range(rng.integers(1, 3)):  # insert or substitute residues
            k = int(rng.integers(0, len(p)))
            p.insert(k, str(rng.choice(letters))) if rng.random() < 0.5 else p.__setitem__(
                k, str(rng.choice(letters)))
        n, _ = aa_match(parse_proforma("".join(p)), parse_proforma(t))
        assert n <= len(t), ("".join(p), t)


def test_peptide_precision_coverage_ties_never_decided_by_list_order():
    t = parse_proforma("PEPTLDEK")
    preds = [t, parse_proforma("GGGGGGGG"), parse_proforma("GGGGGGGG")]
    aucs = {summary(score_predictions(p, [1.0] * 3, [t] * 3))["pc_auc"]
            for p in (preds, preds[::-1])}
    assert len(aucs) == 1 and aucs.pop() == pytest.approx(1 / 3)  # one group: 1/3 precision
    ordered = summary(score_predictions(preds, [0.9, 0.5, 0.5], [t] * 3))["pc_auc"]
    assert ordered == pytest.approx(1 / 3 * 1 + 2 / 3 * 1 / 3)  # the right one ranked first


def test_amino_acid_precision_coverage_ranks_residues_by_their_own_scores():
    """Casanovo's amino-acid curve: residues sorted by their probability; scores that put the
    wrong residues last give a higher AUC than scores that put them first, and without
    per-residue scores every residue takes its peptide's score."""
    from msid.peptides.metrics import residue_scores

    t = parse_proforma("PEPTLDEK")
    pred = parse_proforma("PEPTLDGG")  # the last two residues are wrong
    good = [0.9] * 6 + [0.1, 0.1]
    bad = [0.1] * 6 + [0.9, 0.9]
    s_good = summary(score_predictions([pred], [0.5], [t], [good]))
    s_bad = summary(score_predictions([pred], [0.5], [t], [bad]))
    assert s_good["aa_precision"] == s_bad["aa_precision"] == pytest.approx(6 / 8)
    assert s_good["aa_pc_auc"] > s_bad["aa_pc_auc"]
    flat = summary(score_predictions([pred], [0.5], [t]))["aa_pc_auc"]
    assert s_bad["aa_pc_auc"] < flat < s_good["aa_pc_auc"]  # ties: never by list order
    assert flat == pytest.approx(6 / 8)
    assert s_good["aa_pc_auc"] == pytest.approx(6 / 8 * 1 + 2 / 8 * 6 / 8)
    # an N-terminal modification is folded into its residue, at the lower probability
    np.testing.assert_allclose(
        residue_scores(parse_proforma("[Acetyl]-PEK"), [0.4, 0.9, 0.8, 0.7], 0.5),
        [0.4, 0.8, 0.7])
    np.testing.assert_allclose(residue_scores(parse_proforma("PEK"), None, 0.5), [0.5] * 3)


def test_beam_respects_the_precursor_mass():
    vocab = Vocab.default()
    true = parse_proforma("PEPTLDEK")
    pm = peptide_mass(true)
    ids = vocab.encode(true)
    logp = np.full((12, len(vocab)), -8.0)
    for k, i in enumerate(ids):
        logp[k, i] = -0.5
        if k in (2, 5):
            logp[k, vocab.index["G"]] = -0.1  # greedy prefers G here: wrong mass
    logp[len(ids):, 0] = -0.01
    g = greedy(logp, vocab, pm)
    assert not g.mass_ok and g.score < 0
    b = beam(logp, vocab, pm, beam_size=20)
    assert b.mass_ok and b.tokens == true and 0 < b.score <= 1
    # per-token probabilities (Casanovo's aa_scores); the sequence score is their geometric
    # mean with the end token's
    assert b.aa_scores == pytest.approx([np.exp(-0.5)] * len(true))
    assert b.score == pytest.approx(np.exp(np.mean([*np.log(b.aa_scores), -0.01])))
    assert len(g.aa_scores) == len(g.tokens) and all(0 < p <= 1 for p in g.aa_scores)
    assert g.aa_scores[2] == pytest.approx(np.exp(-0.1))  # the G greedy took


def test_report_shades_residues_by_their_scores():
    from msid.report.peptides import residues

    r = residues("M[Oxidation]PEK", "0.950,0.600,0.200,0.800")
    assert [(t, c) for t, _, c in r] == [("M[Oxidation]", "aa-high"), ("P", "aa-mid"),
                                         ("E", "aa-low"), ("K", "aa-high")]
    assert residues("PEK", float("nan")) == [] and residues("PEK", "0.9,0.9") == []
    r = residues("[Acetyl]-SIC[Carbamidomethyl]K", "0.9,0.9,0.3,0.9,0.6")  # I as written
    assert [(t, c) for t, _, c in r] == [("[Acetyl]-", "aa-high"), ("S", "aa-high"),
                                         ("I", "aa-low"), ("C[Carbamidomethyl]", "aa-high"),
                                         ("K", "aa-mid")]


def test_dp_baseline_sequences_a_clean_ladder():
    pep = parse_proforma("PEPTLDEK")
    s = synthetic_spectrum(pep, 2, __import__("msid.peptides.synthetic",
                                              fromlist=["NoiseConfig"]).NoiseConfig(),
                           np.random.default_rng(1))
    d = SpectrumGraphDP(DPConfig()).sequence(s)
    assert d.mass_ok and aa_match(d.tokens, pep)[1]


def test_real_spectrum_dp_and_annotation(annotated):
    from msid.peptides.denovo import annotate

    s = next(x for x in annotated.spectra if x.source.startswith("massivekb"))
    d = SpectrumGraphDP().sequence(s)
    assert neutral_from_mz(s.precursor_mz, s.charge) > 0
    ann = annotate(s, s.tokens, 0.05)
    assert ann["n_matched"] >= 3 and len(ann["labels"]) == len(s.mz)
    assert isinstance(d.score, float)


def test_ion_evidence_sees_the_true_residues_ions(annotated):
    """On real annotated spectra, the true residue's b/y ions (given the true prefix) are among
    the peaks far more than any other token's; the precursor-closure feature fires at the end."""
    import torch

    from msid.peptides.model import PepTRM, PepTRMConfig, tensorize

    cfg, vocab = PepTRMConfig(), Vocab.default()
    spectra = [s for s in annotated.spectra if len(s.tokens) <= cfg.max_len][::10][:80]
    batch = tensorize(spectra, cfg, vocab)
    model = PepTRM(cfg, vocab)
    tok = batch["tokens"]
    f = model.evidence.features(batch, model.true_prefix(tok))  # (B, L, V, F)
    true = torch.nn.functional.one_hot(tok, len(vocab)).bool() & (tok > 0).unsqueeze(-1)
    other = ~torch.nn.functional.one_hot(tok, len(vocab)).bool() & (tok > 0).unsqueeze(-1)
    for j in (0, 1, 2, 3):  # b1 and y1 at both tolerances
        assert f[..., j][true].mean() > 5 * f[..., j][other].mean()
    ends = torch.nn.functional.one_hot(tok, len(vocab))[..., 0].bool() & (tok == 0)
    first_end = ends & (torch.cumsum(ends, 1) == 1)
    assert f[..., 0, -3][first_end].mean() > 0.9  # precursor mass reached at the end token
    # the 13C peak picked as the precursor (1 Da heavier): still closed at the end, not before
    shifted = dict(batch, precursor_mass=batch["precursor_mass"] + ISOTOPE)
    f13 = model.evidence.features(shifted, model.true_prefix(tok))
    assert f13[..., 0, -3][first_end].mean() > 0.9
    assert f13[..., -3][true].mean() < 0.2 and f[..., -3][true].mean() < 0.2


def test_beam_with_evidence_reads_a_ladder_the_prior_does_not_know():
    """Uniform logits: the sequence can come only from the spectrum through the evidence
    callback (each partial sequence scored with its own prefix), and beam search recovers it."""
    import torch

    from msid.peptides.model import PepTRM, PepTRMConfig, tensorize

    vocab = Vocab.default()
    true = parse_proforma("PEPTLDEK")
    s = synthetic_spectrum(true, 2, __import__("msid.peptides.synthetic",
                                               fromlist=["NoiseConfig"]).NoiseConfig(),
                           np.random.default_rng(0))
    cfg = PepTRMConfig()
    model = PepTRM(cfg, vocab)
    one = tensorize([s], cfg, vocab, with_tokens=False)

    def evidence(prefix: np.ndarray) -> np.ndarray:
        batch = {key: v.expand(len(prefix), *v.shape[1:]) for key, v in one.items()}
        f = model.evidence.features(batch, torch.tensor(prefix, dtype=torch.float32)[:, None])
        f = f[:, 0].numpy()  # (n, V, F): b1, y1, closure, overshoot, hand-weighted
        return 8 * (f[..., 0] + f[..., 2] + f[..., -3]) - 20 * f[..., -2]

    logits = np.zeros((cfg.max_len, len(vocab)))
    b = beam(logits, vocab, peptide_mass(true), beam_size=10, evidence=evidence)
    assert b.mass_ok and b.tokens == true
    assert beam(logits, vocab, peptide_mass(true), beam_size=10).tokens != true


def test_decoders_open_sequences_only_with_n_terminal_tokens():
    """pyro-Glu and pyro-carbamidomethyl residues and N-terminal modifications only lead a
    sequence: where one is the most probable token later on, greedy and beam take the next."""
    vocab = Vocab.default()
    true = parse_proforma("[Acetyl]-PEPTLDEK")
    ids = vocab.encode(true)
    logp = np.full((12, len(vocab)), -8.0)
    for k, i in enumerate(ids):
        logp[k, i] = -0.5
    logp[len(ids):, 0] = -0.01
    pyro = vocab.index["E[Glu->pyro-Glu]"]
    logp[3, pyro] = -0.1  # most probable there, but never after the first residue
    logp[5, vocab.index["[Carbamyl]-"]] = -0.1
    assert {pyro, vocab.index["Q[Gln->pyro-Glu]"], vocab.index["C[Pyro-carbamidomethyl]"],
            vocab.index["[Acetyl]-"]} <= set(vocab.first_only_ids)
    for d in (greedy(logp, vocab, peptide_mass(true)),
              beam(logp, vocab, peptide_mass(true), beam_size=10)):
        assert d.tokens == true and d.mass_ok
    lead = parse_proforma("Q[Gln->pyro-Glu]PEPTLDEK")  # leading, it is allowed
    lp2 = np.full((12, len(vocab)), -8.0)
    for k, i in enumerate(vocab.encode(lead)):
        lp2[k, i] = -0.5
    lp2[len(lead):, 0] = -0.01
    assert beam(lp2, vocab, peptide_mass(lead)).tokens == lead


def test_isotope_corrected_ppm_is_the_error_against_the_matched_peak():
    """A precursor recorded on the 13C peak of a sequence (plus 3 ppm): the table says
    isotope 1 and a 3 ppm error against that peak, where the error against the monoisotopic
    peptide is ~1,000/m ppm; on the monoisotopic peak the two agree; no mass match: none."""
    import pandas as pd

    from msid.peptides.data import PeptideSpectrum
    from msid.peptides.decode import Decoded
    from msid.peptides.denovo import decoded_rows

    tokens = parse_proforma("PEPTIDEK")
    calc = precursor_mz(tokens, 2)
    md = pd.DataFrame({"charge_assumed": [False] * 3, "rt": [60.0] * 3,
                       "native_id": ["a", "b", "c"]})
    iso_peak = (calc + ISOTOPE / 2) * (1 + 3e-6)
    spectra = [PeptideSpectrum(k, np.array([100.0]), np.array([1.0]), mz, 2)
               for k, mz in (("a", iso_peak), ("b", calc * (1 - 2e-6)), ("c", calc + 5.0))]
    decoded = [Decoded(tokens, 0.9, True), Decoded(tokens, 0.8, True),
               Decoded(tokens, -0.5, False)]
    rows = decoded_rows(spectra, md, decoded, "peptrm").set_index("query_id")
    assert rows.at["a", "isotope_error"] == 1
    assert rows.at["a", "isotope_corrected_ppm"] == pytest.approx(3.0, abs=0.01)
    assert rows.at["a", "precursor_mz_error_ppm"] == pytest.approx(
        ISOTOPE / 2 / calc * 1e6, rel=0.01)  # ~1,000/m ppm
    assert rows.at["b", "isotope_error"] == 0
    assert rows.at["b", "isotope_corrected_ppm"] == pytest.approx(
        rows.at["b", "precursor_mz_error_ppm"]) == pytest.approx(-2.0, abs=0.01)
    assert pd.isna(rows.at["c", "isotope_error"]) and pd.isna(rows.at["c",
                                                                   "isotope_corrected_ppm"])
    # a best guess that misses the precursor says so in a column of its own
    assert rows["matches_precursor"].to_dict() == {"a": True, "b": True, "c": False}


def test_qc_check_reads_mztab_modifications_by_accession_and_residue():
    """mzTab PSM modifications (pos-UNIMOD:n) become tokens; UNIMOD:7 (Deamidated) is a
    modification of N and of Q, each read as its own residue's."""
    from msid.peptides.qc_check import psm_tokens

    assert psm_tokens("NQCK", "1-UNIMOD:7,2-UNIMOD:7,3-UNIMOD:4") == [
        "N[Deamidated]", "Q[Deamidated]", "C[Carbamidomethyl]", "K"]
    assert psm_tokens("QEK", "0-UNIMOD:28") == ["Q[Gln->pyro-Glu]", "E", "K"]
    assert psm_tokens("PEPTIDE", "0-UNIMOD:1")[0] == "[Acetyl]-"
    assert psm_tokens("PEPTIDE", "null") == list("PEPTLDE")
    assert psm_tokens("KEK", "1-UNIMOD:7") is None  # no deamidation of K in the vocabulary
    assert psm_tokens("SEK", "1-UNIMOD:21") is None  # phospho: outside it


def test_an_annotated_record_listing_several_charges_takes_the_one_its_peptide_fits(tmp_path):
    """CHARGE=1+ and 2+ on an annotated record: the charge whose precursor m/z the peptide's
    own mass gives, not the first one listed (nor the record lost)."""
    import gzip as _gzip

    from msid.peptides.data import read_annotated_mgf

    src = ROOT / "resources/peptides/nist_bsa_it_consensus_train.mgf.gz"
    with _gzip.open(src, "rt") as fh:
        text = fh.read()
    record = text[:text.index("END IONS") + len("END IONS")] + "\n"
    base = read_annotated_mgf(src).spectra[0]
    other = next(c for c in (1, 2, 3, 4) if c != base.charge)
    listed = [other, base.charge]
    changed = re.sub(r"CHARGE=[^\n]*", "CHARGE=" + " and ".join(f"{c}+" for c in listed),
                     record, count=1)
    path = tmp_path / "two.mgf"
    path.write_text(changed)
    read = read_annotated_mgf(path)
    assert not read.quarantine and read.spectra[0].charge == base.charge
