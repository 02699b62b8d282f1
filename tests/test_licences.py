"""A model's licence comes from what its training records state, and users hear it."""

from __future__ import annotations

import gzip

from conftest import RESOURCES
from msid.cli import main
from msid.io.licences import (
    NONCOMMERCIAL,
    UNSTATED,
    attribution,
    card_licence,
    is_noncommercial,
    model_licence,
    short_licence,
)
from msid.modelfile import read_card

EI_MSP = RESOURCES / "massbank_ei" / "massbank_ei.msp.gz"


def test_the_licence_is_read_from_the_records(tmp_path):
    """The shipped MassBank EI records state CC BY-SA and CC BY (1,439 records); one record
    relabelled CC BY-NC-SA makes the whole model non-commercial; records without a LICENSE
    line are counted as stating none; the peptide MGFs state theirs as LICENSE=."""
    open_licence = model_licence([EI_MSP])
    assert open_licence == ("the licences of the training files' records: CC BY-SA (1002 "
                            "records), CC BY (437 records)")
    assert not is_noncommercial(open_licence)
    with gzip.open(EI_MSP, "rt") as fh:
        text = fh.read()
    nc = tmp_path / "one_nc.msp"
    nc.write_text(text.replace("LICENSE: CC BY\n", "LICENSE: CC BY-NC-SA\n", 1))
    licence = model_licence([nc])
    assert licence.startswith(NONCOMMERCIAL) and "CC BY-NC-SA (1 records)" in licence
    bare = tmp_path / "bare.msp"
    bare.write_text("\n".join(line for line in text.splitlines()
                              if not line.startswith("LICENSE")))
    assert model_licence([bare]) == (f"the licences of the training files' records: {UNSTATED} "
                                     "(1439 records)")
    peptides = model_licence(sorted((RESOURCES / "peptides").glob("*.mgf.gz")))
    assert "records" in peptides and UNSTATED not in peptides and not is_noncommercial(peptides)


def test_a_non_commercial_model_is_said_where_it_is_used(tmp_path, capsys):
    """predict-ei with the shipped (CC BY-NC-SA) student says so on stderr; the card's licence
    is read under either spelling of the key."""
    smiles = tmp_path / "m.smi"
    smiles.write_text("CCO ethanol\nc1ccccc1O phenol\n")
    assert main(["predict-ei", str(smiles), "--out", str(tmp_path / "lib.msp")]) == 0
    err = capsys.readouterr().err
    assert "note: neims_student_cc-by-nc-sa.safetensors is licensed CC BY-NC-SA" in err, err
    card = read_card(RESOURCES / "models" / "llm4ms_cc-by-nc-sa.safetensors")
    assert is_noncommercial(card_licence(card))
    assert card_licence({"license": "CC BY 4.0"}) == "CC BY 4.0" and card_licence({}) == ""


def test_cards_credit_the_contributors_and_stay_valid(tmp_path):
    """A model trained on MassBank records credits MassBank and each contributor (CC BY asks
    for it); annotate_card adds it to a card and the model still loads (its weights' sha256
    is the card's); the shipped cards carry a licence and, where MassBank's, an attribution."""
    import json
    import shutil

    from msid.modelfile import annotate_card, verified_card

    credit = attribution([EI_MSP])
    assert credit.startswith("MassBank") and "Kazusa (234 records)" in credit
    assert attribution([RESOURCES / "peptides" / "casanovo_sample_train.mgf.gz"]) == ""
    for f in (RESOURCES / "models").glob("fp_ffn.*"):
        shutil.copy(f, tmp_path / f.name)
    card = annotate_card(tmp_path / "fp_ffn.safetensors", licence="CC BY 4.0",
                         attribution=credit, empty="")
    assert "empty" not in card and verified_card(tmp_path / "fp_ffn.safetensors")["licence"] \
        == "CC BY 4.0"
    for card_file in (RESOURCES / "models").glob("*.json"):
        c = json.loads(card_file.read_text())
        if c.get("format") != "msid-model-card":
            continue
        assert card_licence(c), card_file.name
        assert short_licence(card_licence(c)) and "records)" not in short_licence(card_licence(c))
        if c["family"] != "peptrm":
            assert c.get("attribution", "").startswith("MassBank"), card_file.name
