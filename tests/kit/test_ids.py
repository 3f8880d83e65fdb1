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


def test_id_bits_are_milliseconds_version_counter_variant_and_the_random_read(monkeypatch: Any) -> None:
    rnd = random.Random(5)
    for _ in range(100):
        noise = os.urandom(8 * 40)
        base = rnd.randrange(0, 1 << 48)
        stamps = [(base + i // 7, rnd.randrange(0, 4096)) for i in range(40)]
        monkeypatch.setattr(ids.os, "urandom", lambda n, b=noise: b)
        monkeypatch.setattr(ids, "_stamps", lambda n, s=stamps: s[:n])
        for i, value in enumerate(ids.new_ids(40)):
            bits = uuid.UUID(value).int
            ms, counter = stamps[i]
            assert bits >> 80 == ms
            assert (bits >> 76) & 0xF == 7 and (bits >> 64) & 0xFFF == counter
            assert (bits >> 62) & 0x3 == 0b10
            assert bits & ((1 << 62) - 1) == int.from_bytes(noise[8 * i:8 * i + 8], "big") & ((1 << 62) - 1)
        assert ids.new_id() == ids.new_ids(1)[0]  # one layout for single and bulk ids
