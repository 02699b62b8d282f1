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


_MASSBANK_ID = re.compile(
    r"^\s*(?:db#|spectrum_?id|accession)\s*[:=]\s*MSBNK-(.+)-[A-Za-z0-9]+\s*$", re.IGNORECASE)


def _scan(path: Path) -> tuple[Counter, Counter]:
    """One pass over an MSP/MGF file (gzip or not): records per stated licence (those without
    a licence line under :data:`UNSTATED`) and per MassBank contributor (the middle part of a
    record's ``MSBNK-<Contributor>-<id>`` accession). A spectrum store (``.h5``) states no
    licence and names no contributor."""
    from msid.io.gz import open_binary

    licences: Counter = Counter()
    contributors: Counter = Counter()
    if path.suffix == ".h5":
        from msid.store import SpectrumStore

        with SpectrumStore(path) as st:
            licences[UNSTATED] += len(st)
        return licences, contributors
    fh, _ = open_binary(path)
    records = stated = 0
    credited = False  # the record's contributor counted (DB# and SPECTRUM_ID both name it)
    with fh:
        for raw in fh:
            line = raw.decode("utf-8", errors="replace")
            if _RECORD_START.match(line):
                records += 1
                credited = False
            elif m := _LICENCE_LINE.match(line):
                stated += 1
                licences[m.group(1) or UNSTATED] += 1
            elif not credited and (m := _MASSBANK_ID.match(line)):
                credited = True
                contributors[m.group(1)] += 1
    licences[UNSTATED] += max(records - stated, 0)
    return licences, contributors


def stated_licences(files: Iterable[str | os.PathLike]) -> Counter:
    """Records per stated licence over the MSP/MGF ``files`` (see :func:`_scan`)."""
    out: Counter = Counter()
    for path in map(Path, files):
        out += _scan(path)[0]
    return out


def massbank_contributors(files: Iterable[str | os.PathLike]) -> Counter:
    """Records per MassBank contributor in the MSP/MGF ``files``: whom a model trained on them
    credits."""
    out: Counter = Counter()
    for path in map(Path, files):
        out += _scan(path)[1]
    return out


def model_licence_and_attribution(files: Iterable[str | os.PathLike]) -> tuple[str, str]:
    """:func:`model_licence` and :func:`attribution` of ``files`` from one pass over each."""
    licences: Counter = Counter()
    contributors: Counter = Counter()
    for path in map(Path, files):
        lic, who = _scan(path)
        licences += lic
        contributors += who
    return _licence_text(licences), _credit_text(contributors)


def attribution(files: Iterable[str | os.PathLike]) -> str:
    """What a model card credits: MassBank and its contributors of the training records
    (CC BY and BY-SA ask for it), or '' when the records are not MassBank's."""
    return _credit_text(massbank_contributors(files))


def _credit_text(who: Counter) -> str:
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
    return _licence_text(stated_licences(files))


def _licence_text(counts: Counter) -> str:
    listing = ", ".join(f"{lic} ({n} records)" for lic, n in counts.most_common())
    if any(is_noncommercial(lic) for lic in counts):
        return f"{NONCOMMERCIAL} (records of the training files: {listing})"
    if not counts:
        return "unknown: no training record was read"
    return f"the licences of the training files' records: {listing}"
