"""The one clock of the process: UTC, millisecond precision, replaceable in tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall clock. Tests shift it with `advance` instead of sleeping."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def now_ms(self) -> int:
        return to_ms(self.now())

    def monotonic(self) -> float:
        return time.monotonic() + self._offset.total_seconds()

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self._offset = timedelta(0)


clock = Clock()


def utcnow() -> datetime:
    return clock.now()


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_iso(dt: datetime | None) -> str | None:
    """ISO 8601, UTC, millisecond precision, `Z` suffix (00 §1)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def ms_to_iso(ms: int | None) -> str | None:
    return None if ms is None else to_iso(from_ms(ms))


def parse_iso(value: str) -> datetime:
    """Parse ISO 8601 with an offset; naive values and garbage raise ValueError.

    Fractions finer than microseconds (agents send nanoseconds) are cut, not rejected.
    """
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError("not an ISO 8601 timestamp")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        if not digits:
            raise ValueError("not an ISO 8601 timestamp")
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[i:]}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("not an ISO 8601 timestamp") from exc
    if dt.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset")
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 has no UTC equivalent
        raise ValueError("timestamp out of range") from None
