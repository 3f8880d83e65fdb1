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


def new_id() -> str:
    """UUIDv7 with a monotonic 12-bit counter so ids made in one millisecond still sort."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = 0
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_valid_path_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))
