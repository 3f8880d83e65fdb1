"""Server-generated ids: UUIDv7 text, URL-safe and sortable by creation time (00 §1)."""

from __future__ import annotations

import os
import re
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _stamps(count: int) -> list[tuple[int, int]]:
    """`count` (millisecond, 12-bit counter) pairs, strictly increasing across calls and threads."""
    global _last_ms, _counter
    out = []
    with _lock:
        now = time.time_ns() // 1_000_000
        for _ in range(count):
            if now <= _last_ms:
                _counter += 1
                if _counter > 0xFFF:
                    _last_ms += 1
                    _counter = 0
            else:
                _last_ms = now
                _counter = 0
            out.append((_last_ms, _counter))
    return out


# first hex digit of the random half: its top two bits are the RFC 9562 variant (0b10)
_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}


def new_id() -> str:
    """UUIDv7 with a monotonic 12-bit counter so ids made in one millisecond still sort."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """`count` ids from one random read, laid out as text slices (bulk log ingest: about 3x cheaper
    per id than formatting each 128-bit value): 48-bit milliseconds, version 7, the 12-bit counter,
    variant 0b10 and 62 random bits."""
    if count <= 0:
        return []
    noise = os.urandom(8 * count).hex()
    out = []
    last_ms = -1
    head = ""
    for i, (ms, counter) in enumerate(_stamps(count)):
        if ms != last_ms:
            h = f"{ms & ((1 << 48) - 1):012x}"
            head = f"{h[:8]}-{h[8:]}-7"
            last_ms = ms
        r = noise[16 * i:16 * i + 16]
        out.append(f"{head}{counter:03x}-{_VARIANT_DIGIT[r[0]]}{r[1:4]}-{r[4:]}")
    return out


def is_valid_path_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))
