"""Generation family: tokenizer round trip, KV-cached decoding equals the full forward, beam
search returns distinct valid canonical molecules, the precursor filter, model files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from msid.chem.structures import parse_structure
from msid.generation.beam import beam_search, distinct_valid, heavy_atoms, token_element
from msid.generation.config import GenModelConfig, GenRunConfig
from msid.generation.model import SmilesDecoderModel
from msid.generation.modelio import load_generator, save_generator
from msid.generation.tokenizer import Tokenizer, tokenizer_path
from msid.io.errors import ModelFileError

MOLS = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
        "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O", "Clc1ccc(Br)cc1"]


def small_cfg(**kw) -> GenModelConfig:
    run = GenRunConfig.from_dict({"size": "tiny"})
    return GenModelConfig.from_dict({**run.model.to_dict(), "d_model": 32, "n_layers": 2,
                                     "n_heads": 2, "max_len": 48, **kw})


def test_tokenizer_round_trip_and_json(tmp_path):
    tok = Tokenizer.build(MOLS, min_count=1)
    for s in MOLS:
        ids = tok.encode(s)
        assert ids[0] == tok.bos and ids[-1] == tok.eos
        assert tok.decode(ids) == s
    path = tok.save(tmp_path / "t.tokenizer.json")
    assert path.read_text().lstrip().startswith("{")  # JSON, never a pickle
    again = Tokenizer.load(path)
    assert again.itos == tok.itos and again.encode(MOLS[2]) == tok.encode(MOLS[2])
    assert tok.encode("C" * 200) is None  # too long: skipped, not truncated
    assert tokenizer_path("m/denovo.safetensors").name == "denovo.tokenizer.json"


def test_selfies_tokenizer_round_trips_real_molecules():
    """The SELFIES tokenizer (generation.train.model.tokenizer: selfies): every token is one
    SELFIES symbol, and decoding gives back the same molecule (canonical SMILES compared)."""
    from rdkit import Chem

    tok = Tokenizer.build(MOLS, kind="selfies", min_count=1)
    assert all(t.startswith("[") and t.endswith("]") for t in tok.itos if t not in
               ("<pad>", "<bos>", "<eos>", "<unk>"))
    for s in MOLS:
        back = tok.decode(tok.encode(s))
        assert Chem.CanonSmiles(back) == Chem.CanonSmiles(s)


def _batch(n: int, spectra: bool = True) -> dict:
    g = torch.Generator().manual_seed(0)
    b = {"mass": torch.full((n,), 180.06, dtype=torch.float64),
         "mz": torch.rand(n, 5, generator=g, dtype=torch.float64) * 170 + 10}
    if spectra:
        b.update(intensity=torch.rand(n, 5, generator=g), pad_mask=torch.zeros(n, 5, dtype=bool),
                 precursor_mz=torch.full((n,), 181.07, dtype=torch.float64),
                 adduct=torch.ones(n, dtype=torch.long))
    return b


def test_cached_decoding_matches_full_forward():
    torch.manual_seed(0)
    tok = Tokenizer.build(MOLS, min_count=1)
    model = SmilesDecoderModel(small_cfg(), len(tok)).eval()
    batch = _batch(2)
    mem, keep = model.memory(batch)
    kv = model.memory_kv(mem)
    tokens = torch.tensor([tok.encode(MOLS[0])[:12], tok.encode(MOLS[1])[:12]])
    full = model.logits(tokens, kv, keep)
    caches = [{} for _ in model.layers]
    steps = [model.logits(tokens[:, t:t + 1], kv, keep, caches, start=t) for t in
             range(tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def overfit():
    """A decoder trained on four molecules (mass token only): (model, tokenizer, masses)."""
    torch.manual_seed(0)
    tok = Tokenizer.build(MOLS, min_count=1)
    model = SmilesDecoderModel(small_cfg(dropout=0.0, n_layers=1), len(tok))
    seqs = [torch.tensor(tok.encode(s)) for s in MOLS]
    tokens = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    masses = torch.tensor([parse_structure(s).exact_mass for s in MOLS], dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):
        loss, _ = model.loss({"tokens": tokens, "mass": masses})
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1
    return model.eval(), tok, masses


def test_overfit_model_beam_search_returns_training_molecules(overfit):
    """Beams are decoded, canonicalised, de-duplicated and ranked by likelihood."""
    model, tok, masses = overfit
    beams = beam_search(model, tok, {"mass": masses}, beam_width=4)
    for s, b in zip(MOLS, beams, strict=True):
        mols, _ = distinct_valid(b, 4, filter_precursor=False)
        keys = [m.structure.inchikey14 for m in mols]
        assert len(keys) == len(set(keys))  # distinct
        assert keys[0] == parse_structure(s).inchikey14  # the trained molecule is first
        assert all(m.structure.smiles_flat == parse_structure(m.structure.smiles_flat)
                   .smiles_flat for m in mols)  # canonical


def test_heavy_atoms_of_formulas_and_smiles_tokens():
    assert heavy_atoms("C9H8O4") == {"C": 9, "O": 4}
    assert heavy_atoms("C5H5N+") == {"C": 5, "N": 1}  # a charge suffix is not an element
    assert heavy_atoms("C6H5BrClNO2S") == {"C": 6, "Br": 1, "Cl": 1, "N": 1, "O": 2, "S": 1}
    assert heavy_atoms("[C5H5N]+") is None and heavy_atoms("") is None
    expected = {"c": "C", "Cl": "Cl", "Br": "Br", "B": "B", "[nH]": "N", "[13CH3]": "C",
                "[Se]": "Se", "[se]": "Se", "[O-]": "O", "[C@@H]": "C", "[H]": "", "%10": "",
                "(": "", "=": "", "1": "", "<eos>": ""}
    assert {t: token_element(t) for t in expected} == expected


def test_formula_constrained_beams_place_exactly_the_formulas_heavy_atoms(overfit):
    """Every finished beam of a constrained query holds exactly its formula's heavy atoms; the
    trained molecule still comes first; a row without a budget decodes as without any."""
    model, tok, masses = overfit
    budgets = [heavy_atoms(parse_structure(s).formula) for s in MOLS[:3]] + [None]
    beams = beam_search(model, tok, {"mass": masses}, beam_width=6, atom_budgets=budgets)
    for s, budget, b in zip(MOLS[:3], budgets[:3], beams[:3], strict=True):
        assert b, "no constrained beam finished"
        for text, _ in b:
            counts: dict[str, int] = {}
            for t in tok.split(text):
                if token_element(t):
                    counts[token_element(t)] = counts.get(token_element(t), 0) + 1
            assert counts == budget, text
        first = distinct_valid(b, 1, filter_precursor=False)[0][0]
        assert first.structure.inchikey14 == parse_structure(s).inchikey14
    free = beam_search(model, tok, {"mass": masses}, beam_width=6)
    assert beams[3] == free[3]


def test_distinct_valid_drops_invalid_and_filters_by_precursor():
    aspirin = parse_structure(MOLS[0])
    beams = [("C1CC", -0.1),  # unclosed ring: invalid, dropped
             ("OC(=O)c1ccccc1OC(C)=O", -0.2),  # aspirin, another spelling
             (MOLS[0], -0.3),  # same molecule again: not returned twice
             ("CCO", -0.4)]  # valid but the wrong mass
    mols, dropped = distinct_valid(beams, 10, mass=aspirin.exact_mass)
    assert [m.structure.inchikey14 for m in mols] == [aspirin.inchikey14]
    assert dropped == 1
    mols, _ = distinct_valid(beams, 10, filter_precursor=False)
    assert len(mols) == 2 and all(parse_structure(m.structure.smiles_flat) for m in mols)
    mols, _ = distinct_valid(beams, 10, formula="C2H6O", mass=aspirin.exact_mass)
    assert [m.structure.formula for m in mols] == ["C2H6O"]  # the formula wins over the mass
    assert distinct_valid(beams, 10, mass=math.nan)[0]  # unknown mass: nothing to filter on


def test_model_file_round_trip_and_corruption(tmp_path):
    tok = Tokenizer.build(MOLS, min_count=1)
    model = SmilesDecoderModel(small_cfg(), len(tok)).eval()
    path = tmp_path / "denovo.safetensors"
    save_generator(model, tok, path, family="denovo", training={}, metrics={})
    again, tok2, card = load_generator(path, family="denovo")
    batch = _batch(1)
    torch.testing.assert_close(again.memory(batch)[0], model.memory(batch)[0])
    assert tok2.itos == tok.itos and card["vocab_size"] == len(tok)
    with pytest.raises(ModelFileError, match="family"):
        load_generator(path, family="glmr")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_generator(path)


@pytest.mark.parametrize("fusion", ["cross", "concat", "average"])
def test_glmr_fusion_reads_candidates(fusion):
    torch.manual_seed(0)
    tok = Tokenizer.build(MOLS, min_count=1)
    model = SmilesDecoderModel(small_cfg(fusion=fusion, cand_dim=8), len(tok)).eval()
    batch = _batch(2)
    batch["cand_enc"] = torch.randn(2, 3, 8)
    batch["cand_mask"] = torch.tensor([[True, True, False], [False, False, False]])
    mem, keep = model.memory(batch)
    other = dict(batch, cand_enc=batch["cand_enc"] + 1.0)
    mem2, _ = model.memory(other)
    assert not torch.allclose(mem[0], mem2[0])  # the candidates change the memory
    assert not keep[1, -1]  # an empty candidate set contributes nothing
    model.freeze_encoder()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert np.isfinite(float(model.loss({**batch, "tokens": torch.tensor(
        [tok.encode(MOLS[0]), tok.encode(MOLS[0])])})[0].detach()))


def test_copy_fusion_mixes_a_distribution_that_can_copy_the_candidates():
    """GLMR copy fusion: the candidates' tokens join the memory; the output is a probability
    distribution (vocabulary and pointer mixed), the same token by token with the cache as in
    one pass; with the gate shut it puts all its mass on the candidates' tokens; a query
    without candidates reads the vocabulary alone."""
    from msid.generation.data import candidate_tokens

    torch.manual_seed(0)
    tok = Tokenizer.build(MOLS, min_count=1)
    model = SmilesDecoderModel(small_cfg(fusion="copy"), len(tok)).eval()
    batch = _batch(2)
    sets = [[np.asarray(tok.encode(m)) for m in MOLS[:2]], []]
    batch["cand_tokens"], batch["cand_slots"] = candidate_tokens(sets)
    mem, keep = model.memory(batch)
    ptr = model.pointer(batch, mem)
    assert ptr is not None and ptr[1].shape == (2, batch["cand_tokens"][0].numel())
    kv = model.memory_kv(mem)
    tokens = torch.tensor([tok.encode(MOLS[0])[:10], tok.encode(MOLS[1])[:10]])
    full = model.logits(tokens, kv, keep, pointer=ptr)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(2, 10), atol=1e-4, rtol=0)
    caches = [{} for _ in model.layers]
    steps = [model.logits(tokens[:, t:t + 1], kv, keep, caches, start=t, pointer=ptr)
             for t in range(tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        model.ptr_gate.bias.fill_(-1e4)  # all copy
    shut = model.logits(tokens, kv, keep, pointer=ptr).exp().detach()
    allowed = torch.zeros(len(tok), dtype=torch.bool)
    allowed[torch.unique(batch["cand_tokens"][0])] = True
    allowed[:2] = False  # never <pad> or <bos>
    assert float(shut[0][:, ~allowed].sum()) < 1e-6
    no_cands = model.logits(tokens[1:], [(k[1:], v[1:]) for k, v in kv], keep[1:],
                            pointer=(ptr[0][1:], ptr[1][1:]))
    vocab_only = torch.log_softmax(model.logits(tokens[1:], [(k[1:], v[1:]) for k, v in kv],
                                                keep[1:]), -1)
    torch.testing.assert_close(no_cands, vocab_only, atol=1e-4, rtol=1e-4)
    beams = beam_search(model, tok, batch, beam_width=3, max_len=12)
    assert len(beams) == 2 and all(len(b) <= 3 for b in beams)

