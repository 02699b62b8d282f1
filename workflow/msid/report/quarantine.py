"""What a run report says about the records a run lost: counts by reason, the records
themselves (the first :data:`LIMIT`) and, when the run's file could not be read at all, why."""

from __future__ import annotations

import pandas as pd

from msid.store import FILE_DAMAGE, FILE_ENDS_EARLY, UNREADABLE, WHOLE_FILE

LIMIT = 500  # quarantined records listed one by one in a report


def quarantine_summary(quarantine: pd.DataFrame) -> dict:
    """``reasons`` (reason -> spectra, the reason cut to its first two ``: `` parts),
    ``quarantine`` (records, at most :data:`LIMIT`), ``quarantine_truncated`` (how many more),
    ``n_records`` (records lost), ``unreadable`` (why the file could not be read at all) and
    ``damaged`` (where a damaged file stopped being readable, what came before was read; or
    that it ends in the middle of a record, which is also counted as a lost record); '' when
    not. The whole-file and file-damage rows are in none of the others."""
    whole = quarantine["record_id"].astype(str) == WHOLE_FILE
    damage = quarantine["reason"].astype(str).str.contains(FILE_DAMAGE, regex=False)
    cut = quarantine["reason"].astype(str).str.contains(FILE_ENDS_EARLY, regex=False)
    records = quarantine[~whole & ~damage]  # the file's own problems are said once, apart
    reasons = (records["reason"].str.split(": ").str[:2].str.join(": ")
               .value_counts().rename_axis("reason").reset_index(name="spectra"))
    return {"reasons": reasons.to_dict("records"),
            "quarantine": records.head(LIMIT).to_dict("records"),
            "quarantine_truncated": max(0, len(records) - LIMIT),
            "n_records": len(records),
            "unreadable": "; ".join(quarantine.loc[whole, "reason"].astype(str)
                                    .str.removeprefix(UNREADABLE)),
            "damaged": "; ".join(quarantine.loc[(damage | cut) & ~whole, "reason"].astype(str))}
