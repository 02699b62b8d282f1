"""Model files: weights as safetensors plus a JSON model card beside them.

``ranker.safetensors`` + ``ranker.json``. The card records the architecture config (enough to
rebuild the module), what the model was trained on (data, split), its metrics, the msid version,
the code version (git hash when available) and the SHA-256 of the weights file. Loading never
unpickles anything: weights come only through safetensors, the card is JSON, and the weights'
hash must match the card. Every problem (missing, truncated or corrupted file, a card that
does not describe these weights) raises :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

from msid import __version__
from msid.atomic import atomic_path, write_text
from msid.digest import sha256_file
from msid.io.errors import ModelFileError

__all__ = ["ModelFileError", "load_model", "read_card", "save_model"]

CARD_FORMAT = "msid-model-card"
CARD_VERSION = 1


def card_path(weights: str | os.PathLike) -> Path:
    return Path(weights).with_suffix(".json")


def code_version() -> str:
    """``git describe``-like hash of the checkout msid runs from ('' when not a git checkout)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def state_dict_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                 metadata: dict[str, str] | None = None) -> Path:
    """Atomic safetensors write."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(state_dict_to_cpu(tensors), str(tmp), metadata=metadata)
    return Path(path)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "file does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(path, f"not a readable safetensors file ({e})") from e


def save_model(model: torch.nn.Module, path: str | os.PathLike, *, family: str, config: dict,
               training: dict | None = None, metrics: dict | None = None,
               extra: dict | None = None) -> dict:
    """Write ``path`` (safetensors) and its card; returns the card."""
    path = Path(path)
    save_tensors(model.state_dict(), path, metadata={"format": "msid-model",
                                                     "family": family})
    card = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "family": family,
        "config": config,
        "training": training or {},
        "metrics": metrics or {},
        "msid_version": __version__,
        "code_version": code_version(),
        "torch_version": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights_file": path.name,
        "weights_sha256": sha256_file(path),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        **(extra or {}),
    }
    write_text(card_path(path), json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return card


def read_card(path: str | os.PathLike) -> dict:
    """The card of weights file ``path`` (checked for format, not against the weights)."""
    cpath = card_path(path)
    if not cpath.exists():
        raise ModelFileError(cpath, f"model card missing (expected beside {Path(path).name})")
    try:
        card = json.loads(cpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(cpath, f"model card is not valid JSON ({e})") from e
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelFileError(cpath, "not an msid model card")
    if card.get("format_version") != CARD_VERSION:
        raise ModelFileError(cpath, f"model card version {card.get('format_version')}, "
                                    f"expected {CARD_VERSION}")
    for key in ("family", "config", "weights_sha256"):
        if key not in card:
            raise ModelFileError(cpath, f"model card lacks '{key}'")
    return card


def annotate_card(path: str | os.PathLike, **fields: str) -> dict:
    """Add ``fields`` (the non-empty ones: a licence, an attribution) to the card of the model
    at ``path``, written again atomically; the weights and their sha256 are untouched."""
    card = read_card(path)
    card.update({k: v for k, v in fields.items() if v})
    write_text(card_path(path), json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return card


def verified_card(path: str | os.PathLike, family: str | None = None) -> dict:
    """The card of the model file at ``path``, after checking that the file exists, that the
    card names ``family`` (when given) and that the weights' sha256 is the card's. Every
    family's loader starts here before it reads a tensor."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "model file does not exist")
    card = read_card(path)
    if family is not None and card.get("family") != family:
        raise ModelFileError(card_path(path), f"model card says family '{card.get('family')}', "
                                              f"expected '{family}'")
    if sha256_file(path) != card.get("weights_sha256"):
        raise ModelFileError(path, "weights do not match the model card's sha256 "
                                   "(corrupted, truncated or replaced file)")
    return card


def load_model(path: str | os.PathLike, family: str | None = None,
               map_location: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, card). Verifies the weights' hash and that they fit the config."""
    from msid.models.config import ModelConfig
    from msid.models.retrieval import build_model

    path = Path(path)
    card = verified_card(path, family)
    tensors = load_tensors(path)
    try:
        cfg = ModelConfig.from_dict({**card["config"], "family": card["family"]})
        model = build_model(cfg)
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(card_path(path), f"model card config is invalid ({e})") from e
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ModelFileError(path, f"weights do not fit the card's architecture ({e})") from e
    return model.to(map_location).eval(), card
