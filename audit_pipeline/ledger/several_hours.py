"""Event ids committed in more than one hour: a notice, not a finding.

Slack may return one id in two different hours (an entry whose ``date_create`` changed).
The ledger commits each as a separate event of its hour, so nothing is lost; but an auditor
must know, and ``prove`` must ask which one. Windows are checked for repeated ids
elsewhere; this finds ids shared *across* hours with little memory: each checked batch
keeps the sorted 64-bit hashes of its ids (8 bytes an event), each hour's distinct hashes
are compared with the other hours' one slice of the hash range at a time (a set of at most
:data:`SLICE` hashes: no table of every id), and only the batches whose hashes meet are
read again, to name the ids (which also rules out hash collisions).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, pairwise

SLICE = 1 << 20  # hashes held in one set while comparing hours (~70 MB)


def id_hashes(ids: Iterable[str]) -> array:
    """id_hashes: a batch's ids as sorted 64-bit hashes (this process's string hash)."""
    return array("q", sorted(map(hash, ids)))


def ids_in_several_hours(
    batches: Iterable[tuple[int, int, array]],
    read_ids: Callable[[int], Sequence[str]],
) -> dict[int, list[tuple[str, int]]]:
    """ids_in_several_hours maps each batch to its ids that an earlier batch of another
    hour also holds, with that hour: ``batches`` are (sequence, window start, sorted
    hashes); ``read_ids(seq)`` reads a batch's ids when hashes meet."""
    by_window: dict[int, list[tuple[int, array]]] = defaultdict(list)
    for seq, window, hashes in batches:
        by_window[window].append((seq, hashes))
    # One sorted run of distinct hashes per hour; a value in two runs is in two hours.
    runs = [_distinct(h for _, h in group) for group in by_window.values()]
    shared = _in_several_runs(runs)
    if not shared:
        return {}
    # The batches holding a shared hash, read in sequence order to name the ids.
    first_window: dict[str, int] = {}
    found: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for seq, window, hashes in sorted(
        (seq, window, hashes) for window, group in by_window.items() for seq, hashes in group
    ):
        if not any(_holds(hashes, value) for value in shared):
            continue
        for event_id in sorted({i for i in read_ids(seq) if hash(i) in shared}):
            first = first_window.setdefault(event_id, window)
            if first != window:
                found[seq].append((event_id, first))
    return dict(found)


def _holds(hashes: array, value: int) -> bool:
    i = bisect_left(hashes, value)
    return i < len(hashes) and hashes[i] == value


def _distinct(hashes: Iterable[array]) -> array:
    """_distinct: one hour's hashes (of all its batches), sorted, each once."""
    arrays = list(hashes)
    distinct = set(chain.from_iterable(arrays))
    if len(arrays) == 1 and len(distinct) == len(arrays[0]):
        return arrays[0]  # one batch without a repeated id: already sorted, each once
    return array("q", sorted(distinct))


def _in_several_runs(runs: Sequence[array]) -> set[int]:
    """_in_several_runs: the values found in more than one of the sorted ``runs`` (each
    distinct within itself), compared one slice of the 64-bit range at a time so that no
    more than about :data:`SLICE` values are ever held in a set (C-speed set operations
    rather than a merge in Python)."""
    total = sum(map(len, runs))
    slices = max(1, -(-total // SLICE))
    bounds = [-(1 << 63) + ((1 << 64) * k) // slices for k in range(slices)] + [1 << 63]
    shared: set[int] = set()
    for low, high in pairwise(bounds):
        seen: set[int] = set()
        for run in runs:
            part = run[bisect_left(run, low) : bisect_left(run, high)]
            shared.update(seen.intersection(part))
            seen.update(part)
    return shared
