"""Spectrum ids as reports show them."""

from __future__ import annotations

from collections.abc import Iterable


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Display names for a run's native spectrum ids: where every id is ``key=value`` pairs
    (mzML native ids: Sciex ``sample=1 period=1 cycle=659 experiment=6``, Thermo
    ``controllerType=0 controllerNumber=1 scan=1234``), the pairs that are the same for the
    whole run are left out (``cycle=659 experiment=6``, ``scan=1234``). Other ids stay as
    they are. The reports show the full id on hover."""
    ids = [str(i) for i in dict.fromkeys(ids)]
    if len(ids) < 2:
        return {i: i for i in ids}
    parsed = []
    for i in ids:
        pairs = [t.split("=", 1) for t in i.split()]
        if not pairs or any(len(p) != 2 for p in pairs):
            return {i: i for i in ids}
        parsed.append(dict(pairs))
    constant = {k for k in parsed[0] if len({p.get(k) for p in parsed}) == 1}
    out = {}
    for i, p in zip(ids, parsed, strict=True):
        kept = " ".join(f"{k}={v}" for k, v in p.items() if k not in constant)
        out[i] = kept or i
    return out
