"""Server-generated ids (00 §1): UUIDv7 text, sortable, bulk and single paths alike."""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from sindri_console.kit import ids


def test_bulk_ids_are_sorted_unique_uuid7_and_before_the_next_single_id() -> None:
    bulk = ids.new_ids(5000)
    assert len(set(bulk)) == 5000 and bulk == sorted(bulk)
    for value in bulk[:200]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == value
    assert ids.new_id() > bulk[-1]
    assert ids.new_ids(0) == []


def test_bulk_ids_format_exactly_like_single_ids(monkeypatch: Any) -> None:
    rnd = random.Random(5)
    for _ in range(100):
        noise = os.urandom(8 * 40)
        base = rnd.randrange(0, 1 << 48)
        stamps = [(base + i // 7, rnd.randrange(0, 4096)) for i in range(40)]
        monkeypatch.setattr(ids.os, "urandom", lambda n, b=noise: b)
        monkeypatch.setattr(ids, "_stamps", lambda n, s=stamps: s)
        expected = [ids._format(ms, counter, int.from_bytes(noise[8 * i:8 * i + 8], "big"))
                    for i, (ms, counter) in enumerate(stamps)]
        assert ids.new_ids(40) == expected
