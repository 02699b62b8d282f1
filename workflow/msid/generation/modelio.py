"""Generation model files: safetensors + JSON card (:mod:`msid.modelfile`) + tokenizer JSON."""

from __future__ import annotations

import os
from pathlib import Path

from msid.digest import sha256_file
from msid.generation.config import GenModelConfig
from msid.generation.model import SmilesDecoderModel
from msid.generation.tokenizer import Tokenizer, tokenizer_path
from msid.modelfile import (
    ModelFileError,
    card_path,
    load_tensors,
    save_model,
    verified_card,
)

FAMILIES = ("denovo", "glmr")


def save_generator(model: SmilesDecoderModel, tok: Tokenizer, path: str | os.PathLike, *,
                   family: str, training: dict, metrics: dict, extra: dict | None = None
                   ) -> dict:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(tokenizer_path(path))
    return save_model(model, path, family=family, config=model.cfg.to_dict(), training=training,
                      metrics=metrics, extra={"vocab_size": len(tok),
                                              "tokenizer_file": tokenizer_path(path).name,
                                              "tokenizer_sha256": sha256_file(
                                                  tokenizer_path(path)),
                                              **(extra or {})})


def load_generator(path: str | os.PathLike, family: str | None = None
                   ) -> tuple[SmilesDecoderModel, Tokenizer, dict]:
    """(model in eval mode, tokenizer, card); the weights' hash is checked against the card."""
    path = Path(path)
    card = verified_card(path, family)
    tpath = tokenizer_path(path)
    if not tpath.exists():
        raise ModelFileError(tpath, "tokenizer file missing beside the weights")
    want = card.get("tokenizer_sha256")  # cards written before it was recorded lack it
    if want and sha256_file(tpath) != want:
        raise ModelFileError(tpath, "tokenizer does not match the model card's sha256 (another "
                                    "model's tokenizer, or an edited or damaged file)")
    try:
        tok = Tokenizer.load(tpath)
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise ModelFileError(tpath, f"not a readable tokenizer ({e})") from e
    if "vocab_size" in card and len(tok) != card["vocab_size"]:
        raise ModelFileError(tpath, f"tokenizer has {len(tok)} tokens, the model card says "
                                    f"{card['vocab_size']}")
    try:
        model = SmilesDecoderModel(GenModelConfig.from_dict(card["config"]), len(tok))
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(card_path(path), f"model card config is invalid ({e})") from e
    try:
        model.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as e:
        raise ModelFileError(path, f"weights do not fit the card's architecture ({e})") from e
    return model.eval(), tok, card


def default_path(name: str) -> Path:
    from msid.resources import shipped_model

    return shipped_model(name)
