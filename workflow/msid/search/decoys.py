"""Compiled kernels for target-decoy search: spectrum-based decoys and best-hit scoring.

Both work on the flat layout of :class:`msid.search.library.SpectralLibrary` (spectra sorted by
precursor m/z, peaks of position ``p`` at ``offsets[p]:offsets[p + 1]``, sorted by m/z). Decoys
live in the same layout: the decoy of position ``p`` fills the first ``count[p]`` slots of the
library's own range of ``p`` (it has at most as many peaks as its target), so a decoy index is
the library's offsets plus per-position counts, and one scoring kernel serves targets and decoys.

Random draws come from a counter-based generator (splitmix64 of a per-spectrum key and a draw
counter): a decoy depends only on the seed and its library position, never on which other decoys
are made or in what order (tests/decoy_reference.py reproduces them in plain Python).
The kernels are compiled with numba (a dependency of matchms) on first use and cached on disk
(about a second, once per installation); later processes load them in a few milliseconds.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _jit(fn):
    """``numba.njit`` cached on disk, or uncached where no cache folder is writable."""
    try:
        return nb.njit(cache=True)(fn)
    except RuntimeError:  # numba found no writable cache location
        return nb.njit(fn)


@_jit
def _mix(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@_jit
def _draw(key: np.uint64, counter: int, k: int) -> int:
    return np.int64(_mix(key + np.uint64(counter + 1) * np.uint64(_GOLDEN)) % np.uint64(k))


@_jit
def _key(seed: int, pos: int) -> np.uint64:
    return _mix(np.uint64(seed) * np.uint64(_GOLDEN) + np.uint64(pos + 1))


@_jit
def _first_at_least(arr, lo, hi, x):
    """First index in [lo, hi) of sorted ``arr`` with ``arr[i] >= x`` (hi: none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _first_above(arr, lo, hi, x):
    """First index in [lo, hi) of sorted ``arr`` with ``arr[i] > x`` (hi: none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def make_decoys(positions, seed, offsets, peak_mz, peak_int, precursor, sorted_mz, sorted_owner,
                tol, sep, removal, pick, max_shared, out_mz, out_int, out_count):
    """Fill the decoys of library ``positions`` into ``out_*`` (the library's layout).

    A decoy starts from a random fragment of its target; each step takes a random fragment
    already in the decoy (the start fragment while it is empty), a random library peak within
    ``tol`` of it (``sorted_mz``/``sorted_owner``: all library peaks by m/z and their positions;
    none: a random spectrum), and a random subset of up to ``pick`` of that donor spectrum's
    fragments below the target's precursor less ``removal``. A fragment is skipped when within
    ``sep`` of one already taken, or when it is one of the target's fragments (within ``tol``)
    and ``max_shared[pos]`` of those are taken. The decoy stops at its target's peak count or
    after 20 x peaks + 20 steps; its peaks are kept sorted by m/z and scaled to sum to 1/2.
    ``tests/decoy_reference.py`` is the same in plain Python.
    """
    n_lib = len(precursor)
    n_sorted = len(sorted_mz)
    swap_at = np.empty(2 * pick, np.int64)  # partial Fisher-Yates over a virtual index range
    swap_val = np.empty(2 * pick, np.int64)
    for t in range(len(positions)):
        pos = positions[t]
        key = _key(seed, pos)
        a = offsets[pos]
        b = offsets[pos + 1]
        n = b - a
        cnt = 0
        if n > 0:
            c = 0  # draw counter
            max_mz = precursor[pos] - removal
            start = peak_mz[a + _draw(key, c, n)]
            c += 1
            tries = 0
            n_shared = 0
            while cnt < n and tries < 20 * n + 20:
                tries += 1
                if cnt == 0:
                    f = start
                else:
                    f = out_mz[a + _draw(key, c, cnt)]
                    c += 1
                lo = _first_at_least(sorted_mz, 0, n_sorted, f - tol)
                hi = _first_above(sorted_mz, lo, n_sorted, f + tol)
                if hi > lo:
                    donor = sorted_owner[lo + _draw(key, c, hi - lo)]
                else:
                    donor = _draw(key, c, n_lib)
                c += 1
                if donor == pos:
                    continue
                da = offsets[donor]
                m_cand = _first_at_least(peak_mz, da, offsets[donor + 1], max_mz) - da
                n_swap = 0
                for j in range(min(pick, m_cand)):
                    r = j + _draw(key, c, m_cand - j)
                    c += 1
                    vr = r
                    vj = j
                    for s in range(n_swap):  # values now at slots r and j
                        if swap_at[s] == r:
                            vr = swap_val[s]
                        if swap_at[s] == j:
                            vj = swap_val[s]
                    swap_at[n_swap] = r  # slot r takes slot j's value (slot j is done)
                    swap_val[n_swap] = vj
                    n_swap += 1
                    k = da + vr
                    m = peak_mz[k]
                    ins = _first_at_least(out_mz, a, a + cnt, m)
                    if ins > a and m - out_mz[ins - 1] <= sep:
                        continue
                    if ins < a + cnt and out_mz[ins] - m <= sep:
                        continue
                    x = _first_at_least(peak_mz, a, b, m - tol)
                    if x < b and peak_mz[x] <= m + tol:  # one of the target's fragments
                        if n_shared >= max_shared[pos]:
                            continue
                        n_shared += 1
                    for y in range(a + cnt, ins, -1):
                        out_mz[y] = out_mz[y - 1]
                        out_int[y] = out_int[y - 1]
                    out_mz[ins] = m
                    out_int[ins] = peak_int[k]
                    cnt += 1
                    if cnt >= n:
                        break
            total = 0.0
            for y in range(a, a + cnt):
                total += out_int[y]
            for y in range(a, a + cnt):
                out_int[y] *= 0.5 / total
        out_count[pos] = cnt


@_jit
def best_in_windows(lo, hi, skip, q_off, q_mz, q_int, offsets, count, s_mz, s_int, tol,
                    best, arg, pol, q_pol):
    """Per query ``i``: the best entropy similarity of its cleaned peaks
    (``q_mz/q_int[q_off[i]:q_off[i + 1]]``) against positions ``lo[i]..hi[i] - 1`` but
    ``skip[i]`` and those of the opposite polarity (``pol[p] * q_pol[i] < 0``), whose peaks are
    ``s_*[offsets[p]:offsets[p] + count[p]]`` (sorted by m/z), into ``best[i]``, and the
    position of that best into ``arg[i]`` (left as is when no score is above ``best[i]``'s
    start value). Peaks pair when within ``tol``."""
    for i in range(len(lo)):
        qa = q_off[i]
        qb = q_off[i + 1]
        if qb == qa:
            continue
        for p in range(lo[i], hi[i]):
            if p == skip[i] or pol[p] * q_pol[i] < 0:
                continue
            a = offsets[p]
            b = a + count[p]
            if b == a:
                continue
            s = 0.0
            for k in range(qa, qb):
                m = q_mz[k]
                j = _first_at_least(s_mz, a, b, m - 2 * tol)
                while j < b and s_mz[j] <= m + 2 * tol:
                    if abs(m - s_mz[j]) <= tol:
                        x = q_int[k]
                        y = s_int[j]
                        s += (x + y) * math.log2(x + y) - x * math.log2(x) - y * math.log2(y)
                    j += 1
            s = min(s, 1.0)  # entropy similarity; the sum can overshoot 1 by rounding
            if s > best[i]:
                best[i] = s
                arg[i] = p
