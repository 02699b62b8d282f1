"""What a run report says about the records a run lost: counts by reason, the records
themselves (the first :data:`LIMIT`) and, when the run's file could not be read at all, why."""

from __future__ import annotations

import pandas as pd

from msid.store import (
    FILE_DAMAGE,
    FILE_ENDS_EARLY,
    UNREADABLE,
    WHOLE_FILE,
    is_kept_note,
    reason_group,
)

LIMIT = 500  # quarantined records listed one by one in a report


def quarantine_summary(quarantine: pd.DataFrame) -> dict:
    """``reasons`` (reason -> spectra, grouped by :func:`msid.store.reason_group`),
    ``quarantine`` (records, at most :data:`LIMIT`), ``quarantine_truncated`` (how many more),
    ``n_records`` (records lost), ``unreadable`` (why the file could not be read at all) and
    ``damaged`` (where a damaged file stopped being readable, what came before was read; or
    that it ends in the middle of a record, which is also counted as a lost record); '' when
    not; ``file_note`` (:func:`file_note`). The whole-file and file-damage rows are in none of
    the others. ``kept_notes`` (reason -> records, grouped the same way) counts the records
    that were kept without a value they stated (:data:`msid.store.VALUE_LEFT_OUT`): no loss."""
    whole = quarantine["record_id"].astype(str) == WHOLE_FILE
    damage = quarantine["reason"].astype(str).str.contains(FILE_DAMAGE, regex=False)
    cut = quarantine["reason"].astype(str).str.contains(FILE_ENDS_EARLY, regex=False)
    noted = is_kept_note(quarantine["reason"])
    records = quarantine[~whole & ~damage & ~noted]  # the file's own problems: said apart
    kept_notes = (quarantine.loc[noted, "reason"].astype(str).map(reason_group)
                  .value_counts().rename_axis("reason").reset_index(name="spectra"))
    reasons = (records["reason"].astype(str).map(reason_group)
               .value_counts().rename_axis("reason").reset_index(name="spectra"))
    unreadable = "; ".join(quarantine.loc[whole, "reason"].astype(str)
                           .str.removeprefix(UNREADABLE))
    damaged = "; ".join(quarantine.loc[(damage | cut) & ~whole, "reason"].astype(str))
    return {"reasons": reasons.to_dict("records"),
            "quarantine": records.head(LIMIT).to_dict("records"),
            "quarantine_truncated": max(0, len(records) - LIMIT),
            "n_records": len(records),
            "unreadable": unreadable, "damaged": damaged,
            "kept_notes": kept_notes.to_dict("records"),
            "file_note": file_note(unreadable, damaged, len(records))}


#: quarantine reasons of a spectrum without a precursor ion (an EI spectrum read as MS/MS)
NO_PRECURSOR = ("require_precursor_mz", "require_ms2")


def all_lost_for_want_of_precursor(n_kept: int, quarantine: pd.DataFrame) -> bool:
    """No spectrum kept and every record lost for want of a precursor m/z (or as MS1): the
    mark of GC-MS (EI) spectra read as MS/MS."""
    if n_kept:
        return False
    records = quarantine[quarantine["record_id"].astype(str) != WHOLE_FILE]
    reasons = records["reason"].astype(str)
    return bool(len(reasons)) and bool(reasons.str.startswith(NO_PRECURSOR).all())


def wrong_kind_hint(kind: str, n_kept: int, quarantine: pd.DataFrame) -> str:
    """What a run of MS/MS kind says when :func:`all_lost_for_want_of_precursor`."""
    if kind == "ei" or not all_lost_for_want_of_precursor(n_kept, quarantine):
        return ""
    return (f"No spectrum of this {kind.replace('_', ' ')} run states a precursor m/z. An EI "
            "(GC-MS) run? Give it kind 'ei' in the sample sheet (or put it in the runs "
            "folder's ei/ subfolder) and it is searched against the EI library.")


def file_note(unreadable: str, damaged: str, n_records: int) -> str:
    """What the quarantine section says when no single record is listed: never "nothing was
    quarantined" of a file that could not be read, or whose end was lost."""
    if n_records:
        return ""
    if unreadable:
        return ("No record is listed: the file could not be read at all (above), so none of "
                "its records was read.")
    if damaged:
        return ("No record before the damage was quarantined; the records after it are lost "
                "with the rest of the file (above), how many is unknown.")
    return "No record was quarantined."
