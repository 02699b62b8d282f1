"""SMILES tokens for the decoder: a regex tokenizer whose vocabulary comes from the training data.

The vocabulary is written beside the model weights as JSON (``<model>.tokenizer.json``), never
pickled. ``kind="selfies"`` tokenises SELFIES strings instead (needs the ``selfies`` package);
decoding always returns SMILES.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from msid.atomic import write_text

# Schwaller et al.'s SMILES regex (bracket atoms, two-letter halogens, ring-bond numbers).
SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|"
    r"%[0-9]{2}|[0-9])")
SELFIES_REGEX = re.compile(r"(\[[^\]]*\]|\.)")
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
TOKENIZER_FORMAT = "msid-smiles-tokenizer"


def _selfies():
    try:
        import selfies
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError("tokenizer kind 'selfies' needs the 'selfies' package "
                          "(pip install selfies)") from e
    return selfies


class Tokenizer:
    """Token <-> id mapping; ids 0..3 are ``<pad> <bos> <eos> <unk>``."""

    def __init__(self, tokens: Sequence[str], kind: str = "smiles", max_len: int = 100) -> None:
        if kind not in ("smiles", "selfies"):
            raise ValueError("tokenizer kind must be 'smiles' or 'selfies'")
        self.kind = kind
        self.max_len = max_len
        self.itos = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad, self.bos, self.eos, self.unk = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.itos)

    def split(self, smiles: str) -> list[str]:
        if self.kind == "selfies":
            text = _selfies().encoder(smiles) or ""
            return SELFIES_REGEX.findall(text)
        toks = SMILES_REGEX.findall(smiles)
        return toks if "".join(toks) == smiles else []  # a character the regex misses: skip

    def encode(self, smiles: str) -> list[int] | None:
        """``<bos> tokens <eos>`` ids, or None when the molecule is too long or untokenisable."""
        toks = self.split(smiles)
        if not toks or len(toks) + 2 > self.max_len:
            return None
        return [self.bos, *(self.stoi.get(t, self.unk) for t in toks), self.eos]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i in (self.pad, self.bos):
                continue
            out.append(self.itos[i] if i < len(self.itos) else "")
        text = "".join(out)
        if self.kind == "selfies":
            return _selfies().decoder(text) or ""
        return text

    @classmethod
    def build(cls, smiles: Iterable[str], kind: str = "smiles", max_len: int = 100,
              min_count: int = 2) -> Tokenizer:
        counts: Counter[str] = Counter()
        probe = cls([], kind, max_len)
        for s in smiles:
            counts.update(probe.split(s))
        return cls(sorted(t for t, c in counts.items() if c >= min_count), kind, max_len)

    def to_dict(self) -> dict:
        return {"format": TOKENIZER_FORMAT, "kind": self.kind, "max_len": self.max_len,
                "tokens": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        if not isinstance(d, dict) or d.get("format") != TOKENIZER_FORMAT:
            raise ValueError("not an msid tokenizer file")
        return cls(d["tokens"], d.get("kind", "smiles"), int(d.get("max_len", 100)))

    def save(self, path: str | os.PathLike) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        return cls.from_dict(json.loads(Path(path).read_text()))


def tokenizer_path(weights: str | os.PathLike) -> Path:
    """``denovo.safetensors`` -> ``denovo.tokenizer.json``."""
    return Path(weights).with_suffix(".tokenizer.json")
