"""The decoy kernel of :mod:`msid.search.decoys` in plain Python: the reference the compiled
decoys are checked against (same random stream, same steps)."""

from __future__ import annotations

import bisect

import numpy as np

from msid.search.decoys import _GOLDEN, _M1, _M2

_MASK = (1 << 64) - 1


def _mix_py(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def decoy_key(seed: int, pos: int) -> int:
    """The generator key of the decoy of library position ``pos``."""
    return _mix_py((seed * _GOLDEN + pos + 1) & _MASK)


def draw(key: int, counter: int, k: int) -> int:
    """Draw number ``counter`` of a decoy's stream: an integer in [0, k) (plain Python)."""
    return _mix_py((key + (counter + 1) * _GOLDEN) & _MASK) % k


def reference_decoy(pos: int, seed: int, offsets, peak_mz, peak_int, precursor, sorted_mz,
                    sorted_owner, tol: float, sep: float, removal: float, pick: int,
                    max_shared: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_decoys` for one position in plain Python (the reference for tests)."""
    key = decoy_key(seed, pos)
    a, b = int(offsets[pos]), int(offsets[pos + 1])
    n = b - a
    own = [float(x) for x in peak_mz[a:b]]
    sorted_list = [float(x) for x in sorted_mz]
    mz: list[float] = []
    inten: list[float] = []
    if n:
        c = 0
        max_mz = float(precursor[pos]) - removal
        start = own[draw(key, c, n)]
        c += 1
        tries = n_shared = 0
        while len(mz) < n and tries < 20 * n + 20:
            tries += 1
            if not mz:
                f = start
            else:
                f = mz[draw(key, c, len(mz))]
                c += 1
            lo = bisect.bisect_left(sorted_list, f - tol)
            hi = bisect.bisect_right(sorted_list, f + tol)
            donor = (int(sorted_owner[lo + draw(key, c, hi - lo)]) if hi > lo
                     else draw(key, c, len(precursor)))
            c += 1
            if donor == pos:
                continue
            da, db = int(offsets[donor]), int(offsets[donor + 1])
            cand = [k for k in range(da, db) if peak_mz[k] < max_mz]
            for j in range(min(pick, len(cand))):
                r = j + draw(key, c, len(cand) - j)
                c += 1
                cand[j], cand[r] = cand[r], cand[j]
                m = float(peak_mz[cand[j]])
                if any(abs(m - x) <= sep for x in mz):
                    continue
                x = bisect.bisect_left(own, m - tol)
                if x < n and own[x] <= m + tol:
                    if n_shared >= max_shared:
                        continue
                    n_shared += 1
                ins = bisect.bisect_left(mz, m)
                mz.insert(ins, m)
                inten.insert(ins, float(peak_int[cand[j]]))
                if len(mz) >= n:
                    break
    total = sum(inten)
    return np.array(mz), np.array([v * (0.5 / total) for v in inten])
