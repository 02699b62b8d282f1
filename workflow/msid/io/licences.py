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


_MASSBANK_ID = re.compile(
    r"^\s*(?:db#|spectrum_?id|accession)\s*[:=]\s*MSBNK-(.+)-[A-Za-z0-9]+\s*$", re.IGNORECASE)


def massbank_contributors(files: Iterable[str | os.PathLike]) -> Counter:
    """Records per MassBank contributor (the middle part of ``MSBNK-<Contributor>-<id>``
    accessions; one per record) in the MSP/MGF ``files``: whom a model trained on them
    credits."""
    from msid.io.gz import open_binary

    out: Counter = Counter()
    for path in map(Path, files):
        if path.suffix == ".h5":
            continue
        fh, _ = open_binary(path)
        in_record: set[str] = set()
        with fh:
            for raw in fh:
                line = raw.decode("utf-8", errors="replace")
                if _RECORD_START.match(line):
                    in_record = set()
                elif (m := _MASSBANK_ID.match(line)) and not in_record:
                    in_record.add(m.group(1))
                    out[m.group(1)] += 1
    return out


def attribution(files: Iterable[str | os.PathLike]) -> str:
    """What a model card credits: MassBank and its contributors of the training records
    (CC BY and BY-SA ask for it), or '' when the records are not MassBank's."""
    who = massbank_contributors(files)
    if not who:
        return ""
    names = ", ".join(f"{c} ({n} records)" for c, n in who.most_common())
    return f"MassBank (the MassBank consortium, massbank.eu) and its contributors: {names}"


def card_licence(card: dict) -> str:
    """The licence a model card states ('' when it states none): msid writes ``licence``;
    cards of older embedders wrote ``license``."""
    return str(card.get("licence") or card.get("license") or "")


def short_licence(licence: str) -> str:
    """A card's licence for a table cell: the licences without their record counts and
    notes ("CC BY, CC BY-SA, CC0"), or the non-commercial statement."""
    if is_noncommercial(licence):
        return NONCOMMERCIAL
    body = licence.split(": ", 1)[-1] if licence.startswith("the licences of") else licence
    return re.sub(r" \(\d+ records\)| \(added to this card[^)]*\)", "", body).strip()


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
        return f"{NONCOMMERCIAL} (records of the training files: {listing})"
    if not counts:
        return "unknown: no training record was read"
    return f"the licences of the training files' records: {listing}"
