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


def _format(ms: int, counter: int, rand: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """UUIDv7 with a monotonic 12-bit counter so ids made in one millisecond still sort."""
    (ms, counter), = _stamps(1)
    return _format(ms, counter, int.from_bytes(os.urandom(8), "big"))


def new_ids(count: int) -> list[str]:
    """`count` ids as `new_id` makes them, with one random read for all (bulk log ingest)."""
    if count <= 0:
        return []
    noise = os.urandom(8 * count)
    return [_format(ms, counter, int.from_bytes(noise[8 * i:8 * i + 8], "big"))
            for i, (ms, counter) in enumerate(_stamps(count))]


def is_valid_path_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))
