"""Time-sortable ids: 48-bit milliseconds + 80 random bits, Crockford base32, with a type prefix.

The generator is reseeded after fork (os.register_at_fork), so processes never share a stream.

Ids that sort by creation time keep SQLite's B-trees appending at the right edge; random ids in a
primary key cost several times more writer CPU. Within one process ids are strictly increasing.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last = 0
# Ids must be unique, not secret: a seeded generator avoids a getrandom() syscall per id, which
# on the ingest path also hands the GIL to the writer thread and waits to get it back.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two characters


def _encode(value: int, length: int) -> str:
    """The low `length` * 5 bits of `value` in base32, most significant first (`length` even)."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range((length - 2) * 5, -1, -10))


def new_id(prefix: str) -> str:
    """`prefix_` + 26 characters; monotonic within the process even within one millisecond."""
    global _last
    with _lock:
        value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
        if value <= _last:
            value = _last + 1
        _last = value
    return f"{prefix}_{_encode(value, 26)}"


MAX_MILLISECONDS = (1 << 48) - 1  # the time field's width: up to the year 10889


def id_floor(prefix: str, unix_seconds: float) -> str:
    """The smallest id that could have been made at `unix_seconds` (for time-range queries).
    Times outside the ids' range are clamped: a cutoff before 1970 (a retention age longer
    than the epoch) is below every id, never a negative number's bits above them all."""
    milliseconds = min(max(int(unix_seconds * 1000), 0), MAX_MILLISECONDS)
    return f"{prefix}_{_encode(milliseconds << 80, 26)}"


def id_time(id_: str) -> float:
    """When an id was made (unix seconds, to the millisecond): the inverse of id_floor."""
    value = 0
    for char in id_.rpartition("_")[2][:10]:  # the first 50 bits: 2 zero bits + milliseconds
        value = value * 32 + _ALPHABET.index(char)
    return value / 1000


def node_name() -> str:
    """This process, as other processes sharing the database see it (jobs, connections)."""
    return f"{socket.gethostname()}:{os.getpid()}"
