"""The licences that spectrum records state (MSP ``LICENSE:``, MGF ``LICENSE=``), and the one a
model trained on them carries in its card: read from the records, never guessed from a file
name."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_LICENCE_LINE = re.compile(r"^\s*licen[cs]e\s*[:=]\s*(.*?)\s*$", re.IGNORECASE)
_RECORD_START = re.compile(r"^\s*(name\s*:|begin ions\s*$)", re.IGNORECASE)
UNSTATED = "no licence stated"
NONCOMMERCIAL = "CC BY-NC-SA 4.0: non-commercial use only"


def stated_licences(files: Iterable[str | os.PathLike]) -> Counter:
    """Records per stated licence over the MSP/MGF ``files`` (gzip or not); records without a
    licence line count under :data:`UNSTATED`. A spectrum store (``.h5``) states none: its
    records all count there."""
    from msid.io.gz import open_binary

    out: Counter = Counter()
    for path in map(Path, files):
        if path.suffix == ".h5":
            from msid.store import SpectrumStore

            with SpectrumStore(path) as st:
                out[UNSTATED] += len(st)
            continue
        fh, _ = open_binary(path)
        records = stated = 0
        with fh:
            for raw in fh:
                line = raw.decode("utf-8", errors="replace")
                if _RECORD_START.match(line):
                    records += 1
                elif m := _LICENCE_LINE.match(line):
                    stated += 1
                    out[m.group(1) or UNSTATED] += 1
        out[UNSTATED] += max(records - stated, 0)
    return +out  # zero counts dropped


def card_licence(card: dict) -> str:
    """The licence a model card states ('' when it states none): msid writes ``licence``;
    cards of older embedders wrote ``license``."""
    return str(card.get("licence") or card.get("license") or "")


def is_noncommercial(licence: str) -> bool:
    """A licence that forbids commercial use (CC BY-NC, BY-NC-SA, BY-NC-ND...)."""
    return bool(re.search(r"\bNC\b|non-?commercial", licence, re.IGNORECASE))


def model_licence(files: Iterable[str | os.PathLike]) -> str:
    """What the card of a model trained on ``files`` says of its licence: non-commercial when
    any record is; else the records' own licences (a record stating none is said so: its
    source's terms, NIST's say, bind the model too)."""
    counts = stated_licences(files)
    listing = ", ".join(f"{lic} ({n} records)" for lic, n in counts.most_common())
    if any(is_noncommercial(lic) for lic in counts):
        return f"{NONCOMMERCIAL} (training records: {listing})"
    if not counts:
        return "unknown: no training record was read"
    return f"the training records' licences: {listing}"
