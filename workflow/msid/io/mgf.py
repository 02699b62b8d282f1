"""MGF, streamed: the file is read piece by piece and cut into chunks of whole records.

:func:`mgf_chunks` never holds more than one chunk of text (a few MB) however large the file,
and a chunk can be parsed anywhere (:func:`parse_mgf_chunk`, pyteomics), so conversion parses
chunks in worker processes. A damaged file keeps every record before the damage: a record
pyteomics cannot parse, a block without ``END IONS`` and a cut or corrupt gzip stream each
become a named quarantine row.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msid.io.errors import InputFileError
from msid.io.values import RT_MISSING
from msid.store import FILE_DAMAGE, FILE_ENDS_EARLY, VALUE_LEFT_OUT, QuarantineRecord

BLOCK = re.compile(r"^BEGIN IONS\s*$(.*?)^END IONS\s*$", re.MULTILINE | re.DOTALL)
CHUNK_CHARS = 1 << 21  # ~2 MB of text per chunk: ~1,500 library spectra


@dataclass
class MgfChunk:
    """Whole MGF records of one file: ``text`` holds ``n_blocks`` blocks, the first being the
    file's block number ``first``."""

    source: str
    text: str
    first: int
    n_blocks: int


#: where an MGF record's id comes from, first found wins (FEATURE_ID / SCANS: MZmine and GNPS
#: FBMN exports); without any, its position in the file
ID_KEYS = ("spectrum_id", "spectrumid", "title", "identifier", "feature_id", "scans")
_ID_LINE = re.compile(rf"^({'|'.join(ID_KEYS)})=(.*)$", re.MULTILINE | re.IGNORECASE)


#: pyteomics' message for a line it cannot read
_BAD_LINE = re.compile(r"Error when parsing MGF file\. Line: (.*)$")
#: Python's message for a header value that should be a number, and the fields pyteomics
#: reads as numbers
_NOT_A_NUMBER = re.compile(r"could not convert string to float: '(.*)'")
_NUMBER_FIELD = re.compile(r"^(pepmass|rtinseconds)=[ \t]*(.*?)\s*$",
                           re.MULTILINE | re.IGNORECASE)


def _record(entry: dict, index: int):
    from msid.io.raw import RawSpectrum

    params = {str(k).lower(): v for k, v in entry.get("params", {}).items()}
    # an MGF record's native identifier is its 0-based position in the file (mzTab's index=N)
    params.setdefault("native_id", f"index={index}")
    rid = next((str(params[k]) for k in ID_KEYS if params.get(k)), f"index={index}")
    if "rtinminutes" in params and "rtinseconds" not in params:
        with suppress(TypeError, ValueError):  # a non-standard key some exporters write
            params["rtinseconds"] = float(params["rtinminutes"]) * 60.0
    mz = np.asarray(entry.get("m/z array", []), dtype=np.float64)
    inten = np.asarray(entry.get("intensity array", []), dtype=np.float32)
    return RawSpectrum(rid, mz, inten, params)


def _read(text: str) -> list[dict]:
    from pyteomics import mgf

    return list(mgf.read(io.StringIO(text), convert_arrays=1, read_charges=False,
                         read_ions=False, use_index=False))


def _marker_line(text: str, i: int, marker: str) -> int:
    """If ``marker`` at offset ``i`` is a line of its own (trailing blanks allowed), the offset
    of that line's newline (``len(text)`` on a last line without one); else -1."""
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    own_line = (i == 0 or text[i - 1] == "\n") and not text[i + len(marker):end].strip()
    return end if own_line else -1


def marker_lines(text: str, marker: str) -> list[int]:
    r"""Offsets of the lines that are ``marker`` (plus trailing blanks): what ``^marker\s*$``
    finds, by ``str.find`` (a MULTILINE regex tries every position of a multi-MB chunk)."""
    out, i = [], text.find(marker)
    while i >= 0:
        if _marker_line(text, i, marker) >= 0:
            out.append(i)
        i = text.find(marker, i + len(marker))
    return out


_BEGIN = "BEGIN IONS"
#: a marker line as some writers spell it: indented, or in lower case
_LOOSE_MARKER = re.compile(r"^[ \t]*(begin|end)[ \t]+ions[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def normalise_markers(text: str) -> str:
    """``text`` with every ``BEGIN IONS``/``END IONS`` line written as such: an indented or
    lower-case marker line would otherwise hide its record. A cheap count first, so text whose
    markers are already plain (every intact file) is returned untouched."""
    low = text.lower()
    if (low.count("begin ions") == len(marker_lines(text, _BEGIN))
            and low.count("end ions") == len(marker_lines(text, "END IONS"))):
        return text
    return _LOOSE_MARKER.sub(lambda m: f"{m.group(1).upper()} IONS", text)


def split_blocks(text: str) -> list[tuple[str, bool]]:
    """One (body, closed) per ``BEGIN IONS`` line: the text after it up to its ``END IONS``
    line (closed), or, when another ``BEGIN IONS`` (or the end of ``text``) comes first, up to
    there (not closed: a record whose ``END IONS`` is missing, which must not swallow the next
    one). ``END IONS`` lines outside any record are ignored."""
    begins, ends = marker_lines(text, _BEGIN), marker_lines(text, "END IONS")
    out, j = [], 0
    for k, b in enumerate(begins):
        nxt = begins[k + 1] if k + 1 < len(begins) else len(text)
        while j < len(ends) and ends[j] < b:
            j += 1
        body = b + len(_BEGIN)
        if j < len(ends) and ends[j] < nxt:
            out.append((text[body:ends[j]], True))
            j += 1
        else:
            out.append((text[body:nxt], False))
    return out


def count_blocks(text: str) -> tuple[int, int]:
    """(records in ``text``, ``BEGIN IONS`` lines): every ``BEGIN IONS`` starts a record except
    a last one that no ``END IONS`` closes (a cut file: the rest of it is missing). Quick when
    the markers simply alternate, as they do in any intact file."""
    begins, ends = marker_lines(text, _BEGIN), marker_lines(text, "END IONS")
    if len(begins) == len(ends) and all(
            b < e for b, e in zip(begins, ends, strict=True)) and all(
            e < b for e, b in zip(ends, begins[1:], strict=False)):
        return len(begins), len(begins)
    blocks = split_blocks(text)
    return len(blocks) - (1 if blocks and not blocks[-1][1] else 0), len(begins)


def _last_end(text: str) -> int:
    """Offset just past the last complete ``END IONS`` line (its newline), or -1."""
    i = text.rfind("END IONS")
    while i >= 0:
        end = _marker_line(text, i, "END IONS")
        if 0 <= end < len(text):
            return end + 1
        i = text.rfind("END IONS", 0, i)
    return -1


def parse_mgf_chunk(chunk: MgfChunk) -> list:
    """The chunk's records in order: a RawSpectrum each, or a QuarantineRecord naming why not."""
    try:  # fast path: pyteomics over the whole chunk
        entries = _read(chunk.text)
        if len(entries) != chunk.n_blocks:
            raise ValueError("block count mismatch")
        return [_record(e, chunk.first + i) for i, e in enumerate(entries)]
    except Exception:  # one reader per block, so one bad block is one record
        out = []
        blocks = split_blocks(chunk.text)
        if blocks and not blocks[-1][1]:
            blocks.pop()  # a cut file's last record: mgf_chunks reports it
        for i, (block, closed) in enumerate(blocks, start=chunk.first):
            try:
                if not closed:
                    raise ValueError("no END IONS line before the next BEGIN IONS")
                (entry,) = _read(f"BEGIN IONS{block}END IONS\n")
                out.append(_record(entry, i))
            except Exception as e:
                rid = _block_id(block, i)
                # pyteomics wraps its message ("Pyteomics error, message: '...'"): the message,
                # with the line it names last (reports count reasons by their first two parts)
                why = str(getattr(e, "message", None) or e).replace("\n", " ").strip()
                field = None
                if m := _BAD_LINE.search(why):
                    why = f"a line it cannot read: '{m.group(1)[:60]}'"
                elif m := _NOT_A_NUMBER.search(why):  # which of the fields read as numbers
                    value = m.group(1)
                    field = next((k for k in _NUMBER_FIELD.finditer(block)
                                  if value == k.group(2) or value in k.group(2).split()), None)
                    if field:
                        why = (f"{field.group(1).upper()}={field.group(2)[:40]!r} is not a "
                               "number")
                if field and field.group(1).lower() in OPTIONAL_NUMBER_FIELDS:
                    kept = _read_without(block, field, i)
                    if kept:
                        note = kept[0] and QuarantineRecord(  # counted by field, not value
                            chunk.source, rid, f"{kept[0]}: {field.group(1).upper()} is not a "
                            f"number: {field.group(2)[:40]!r}: {VALUE_LEFT_OUT}")
                        out += [note, kept[1]] if note else [kept[1]]
                        continue
                out.append(QuarantineRecord(chunk.source, rid, f"unparsable MGF record: {why}"))
        return out


#: header fields that pyteomics reads as numbers and that no step needs: a record whose value
#: is not a number is kept without it (a note row says so), never lost for it
OPTIONAL_NUMBER_FIELDS = ("rtinseconds",)
#: a decimal comma (``RTINSECONDS=12,5``, as European locales write it): read as a point, as
#: MSP retention times are
_DECIMAL_COMMA = re.compile(r"^\d+,\d+$")


def _read_without(block: str, field: re.Match, index: int) -> tuple[str, object] | None:
    """The record of ``block`` with ``field`` (a number line whose value is not a number)
    mended or left out: ('', record) for a decimal comma read as a point or a value written as
    missing, ('value left out', record) when a value is dropped; None when the block still
    cannot be read."""
    value = field.group(2)
    if _DECIMAL_COMMA.match(value):
        mended, what = f"{field.group(1)}={value.replace(',', '.')}", ""
    elif RT_MISSING.match(value):  # written as missing (NA, -): nothing to tell of
        mended, what = "", ""
    else:
        mended, what = "", "value left out"
    text = block[:field.start()] + mended + block[field.end():]
    try:
        (entry,) = _read(f"BEGIN IONS{text}END IONS\n")
    except Exception:
        return None
    return what, _record(entry, index)


def _pieces(path: Path) -> Iterator[tuple[str, str]]:
    """(decoded text, problem) pieces; the problem (gzip damage) comes with the last piece."""
    from msid.io.gz import open_binary

    fh, gz = open_binary(path)
    # utf-8-sig: a byte-order mark at the start would hide the first BEGIN IONS line
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    with fh:
        while data := fh.read(CHUNK_CHARS):
            # NUL is never text and a store cannot hold it: U+FFFD, like undecodable bytes
            yield decoder.decode(data).replace("\x00", "\ufffd"), ""
    problem = gz.problem if gz else ""
    if problem and not gz.n_out:
        raise InputFileError(path, f"not a readable gzip file ({problem})")
    yield decoder.decode(b"", final=True), problem


def _block_id(text: str, index: int) -> str:
    """The id of the last block of ``text`` (its TITLE or another :data:`ID_KEYS` line, as a
    whole record's), or ``index=N``."""
    begins = marker_lines(text, _BEGIN)
    last = text[begins[-1] if begins else 0:]
    last = last[:last.rfind("\n") + 1]  # a last line without its newline may be cut short
    found: dict[str, str] = {}
    for m in _ID_LINE.finditer(last):
        found.setdefault(m.group(1).lower(), m.group(2).strip())
    return next((found[k] for k in ID_KEYS if found.get(k)), f"index={index}")


def mgf_chunks(path: str | Path) -> Iterator[MgfChunk | QuarantineRecord]:
    """Stream ``path`` as chunks of whole records, then quarantine rows for what was lost."""
    path = Path(path)
    buf, n_blocks, n_open, seen_text, problem = "", 0, 0, False, ""
    for piece, problem in _pieces(path):
        buf = normalise_markers(buf + piece)
        seen_text = seen_text or bool(piece.strip())
        if len(buf) < CHUNK_CHARS and not problem and piece:
            continue
        cut = _last_end(buf)
        if cut < 0:
            continue
        text, buf = buf[:cut], buf[cut:]
        n, opened = count_blocks(text)
        n_open += opened
        if n:
            yield MgfChunk(str(path), text, n_blocks, n)
            n_blocks += n
    if buf:  # the tail: blocks without END IONS, or text outside any block
        n, opened = count_blocks(buf)
        n_open += opened
        if n:
            yield MgfChunk(str(path), buf, n_blocks, n)
            n_blocks += n
    if not seen_text:
        raise InputFileError(path, "file is empty (no spectra)")
    if not n_blocks and not n_open:
        raise InputFileError(path, "no 'BEGIN IONS ... END IONS' block: not an MGF file"
                             + (f" ({problem})" if problem else ""))
    if n_open > n_blocks:
        yield QuarantineRecord(str(path), _block_id(buf, n_blocks) if n_open == n_blocks + 1
                               else f"index={n_blocks}",
                               f"{n_open - n_blocks} MGF block(s) without END IONS: "
                               f"{FILE_ENDS_EARLY} (truncated file?)")
    if problem:
        yield QuarantineRecord(str(path), f"after index={n_blocks - 1}",
                               f"MGF damaged after {n_blocks} complete records; "
                               f"{FILE_DAMAGE}: {problem}")


def read_mgf(path: str | Path) -> Iterator:
    """Every record of an MGF file, streamed (RawSpectrum or QuarantineRecord)."""
    for item in mgf_chunks(path):
        if isinstance(item, MgfChunk):
            yield from parse_mgf_chunk(item)
        else:
            yield item
