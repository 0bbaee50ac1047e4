"""Event ids committed in more than one hour: a notice, not a finding.

Slack may return one id in two different hours (an entry whose ``date_create`` changed).
The ledger commits each as a separate event of its hour, so nothing is lost; but an auditor
must know, and ``prove`` must ask which one. Windows are checked for repeated ids
elsewhere; this finds ids shared *across* hours with little memory: each checked batch
contributes the 64-bit hashes of its ids (8 bytes an event), and only the batches whose
hashes meet are read again to name the ids (which also rules out hash collisions).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence


def id_hashes(ids: Iterable[str]) -> array:
    """id_hashes: a batch's ids as 64-bit hashes (this process's string hash)."""
    return array("q", map(hash, ids))


def ids_in_several_hours(
    batches: Iterable[tuple[int, int, array]],
    read_ids: Callable[[int], Sequence[str]],
) -> dict[int, list[tuple[str, int]]]:
    """ids_in_several_hours maps each batch to its ids that an earlier batch of another
    hour also holds, with that hour: ``batches`` are (sequence, window start, hashes) in
    sequence order; ``read_ids(seq)`` reads a batch's ids when hashes meet."""
    first_seen: dict[int, int] = {}
    windows: dict[int, int] = {}
    candidates: dict[int, set[int]] = defaultdict(set)
    for seq, window, hashes in batches:
        windows[seq] = window
        for value in hashes:
            other = first_seen.setdefault(value, seq)
            if other != seq and windows[other] != window:
                candidates[seq].add(other)
    found: dict[int, list[tuple[str, int]]] = {}
    for seq, others in sorted(candidates.items()):
        mine = set(read_ids(seq))
        hits = []
        for other in sorted(others):
            hits += [(i, windows[other]) for i in sorted(mine.intersection(read_ids(other)))]
        if hits:
            found[seq] = sorted(dict(hits).items())
    return found
