"""Agent frames: dialect detection, envelopes, field lookup in both casings and timestamps (40 §3.3, §3.9)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

PROTOCOL_VERSION = "1.0"
FRAME_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_INT64 = 2**63 - 1
PAST_WINDOW = timedelta(days=7)
FUTURE_WINDOW = timedelta(minutes=5)

# mimir type aliases (40 §3.3)
TYPE_ALIASES = {
    "heartbeat:ping": "heartbeat",
    "metrics:update": "metrics",
    "terminal:data": "terminal:output",
    "terminal:close": "terminal:closed",
    "event:instance": "event",
}

# frame types that carry the agent's identity in `instance_id` (40 §3.2)
IDENTIFYING_TYPES = ("heartbeat", "metrics", "event", "registration")


class FrameError(Exception):
    """A frame that cannot be processed: `code` is the C error code (MALFORMED, INVALID_PAYLOAD, …)."""

    def __init__(self, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


@dataclass
class Frame:
    """One inbound frame, normalised: `type` after aliasing, `data` the payload object."""

    dialect: str  # "D" or "C"
    type: str
    data: dict[str, Any]
    raw_type: str
    id: str | None = None
    reply_to: str | None = None
    session_id: str | None = None
    protocol_version: str | None = None
    ts: Any = None
    mimir: bool = False
    size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def parse_frame(text: str) -> Frame:
    """Decode one text frame; raises FrameError(MALFORMED | INVALID_PAYLOAD)."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise FrameError("MALFORMED", "The frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError("MALFORMED", "The frame must be a JSON object")
    raw_type = obj.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise FrameError("MALFORMED", "The frame has no type")
    is_d = "protocol_version" in obj or ("payload" in obj and "data" not in obj)
    body = obj.get("payload") if is_d else obj.get("data")
    if body is None:
        body = {}
    frame_id = obj.get("id") if not is_d else None
    if frame_id is not None and (not isinstance(frame_id, str) or not FRAME_ID_RE.match(frame_id)):
        frame_id = None
    reply_to = obj.get("replyTo")
    frame = Frame(
        dialect="D" if is_d else "C",
        type=raw_type if is_d else TYPE_ALIASES.get(raw_type, raw_type),
        data=body if isinstance(body, dict) else {},
        raw_type=raw_type,
        id=frame_id,
        reply_to=reply_to if isinstance(reply_to, str) else None,
        session_id=obj.get("session_id") if isinstance(obj.get("session_id"), str) else None,
        protocol_version=(obj.get("protocol_version") if is_d else obj.get("protocolVersion")),
        ts=obj.get("ts"),
        mimir=(not is_d and "channel" in obj),
        size=len(text),
    )
    if not isinstance(body, dict):
        raise FrameErrorWithFrame(frame, "INVALID_PAYLOAD", "The payload must be a JSON object",
                                  [{"field": "data", "message": "must be an object"}])
    if not is_d:
        corr = obj.get("correlationId")
        if isinstance(corr, str):
            if frame.type.startswith("command:") and "commandId" not in frame.data:
                frame.data["commandId"] = corr
            elif frame.type.startswith("terminal:") and "sessionId" not in frame.data:
                frame.data["sessionId"] = corr
    return frame


class FrameErrorWithFrame(FrameError):
    """A frame that was decoded (so it has a type and maybe an id) but whose payload is unusable."""

    def __init__(self, frame: Frame, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(code, message, details)
        self.frame = frame


# ---- field lookup --------------------------------------------------------------------------------

_CAMEL_PART = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])")


@lru_cache(maxsize=1024)
def snake(name: str) -> str:
    """`memoryUsedBytes` → `memory_used_bytes`, `loadAvg15` → `load_avg_15`."""
    return _CAMEL_PART.sub("_", name).lower()


def pick(obj: Any, *names: str) -> Any:
    """The first present field among `names`, each tried in camelCase then snake_case."""
    if not isinstance(obj, dict):
        return None
    for name in names:
        if name in obj:
            return obj[name]
        s = snake(name)
        if s in obj:
            return obj[s]
    return None


def has(obj: Any, *names: str) -> bool:
    if not isinstance(obj, dict):
        return False
    return any(n in obj or snake(n) in obj for n in names)


class Fields:
    """Per-field validation that collects errors instead of stopping at the first (40 §3.9 partial frames)."""

    def __init__(self, obj: dict[str, Any], prefix: str = "") -> None:
        self.obj = obj
        self.prefix = prefix
        self.errors: list[dict[str, str]] = []

    def fail(self, name: str, message: str) -> None:
        self.errors.append({"field": f"{self.prefix}{name}", "message": message})

    def number(self, *names: str, lo: float | None = None, hi: float | None = None, clamp_hi: bool = False,
               required: bool = False, integer: bool = False) -> Any:
        v = pick(self.obj, *names)
        label = names[0]
        if v is None:
            if required:
                self.fail(label, "is required")
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not math.isfinite(v)):
            self.fail(label, "must be a number")
            return None
        if integer:
            if isinstance(v, float):
                if not v.is_integer():
                    self.fail(label, "must be an integer")
                    return None
                v = int(v)
            if abs(v) > MAX_INT64:
                self.fail(label, "is larger than a 64-bit integer")
                return None
        if lo is not None and v < lo:
            self.fail(label, f"must be ≥ {lo:g}")
            return None
        if hi is not None and v > hi:
            if clamp_hi:
                return hi
            self.fail(label, f"must be ≤ {hi:g}")
            return None
        return v

    def integer(self, *names: str, lo: int | None = 0, hi: int | None = None, required: bool = False) -> int | None:
        v = self.number(*names, lo=lo, hi=hi, required=required, integer=True)
        return int(v) if v is not None else None

    def text(self, *names: str, max_len: int, min_len: int = 0, required: bool = False) -> str | None:
        v = pick(self.obj, *names)
        label = names[0]
        if v is None:
            if required:
                self.fail(label, "is required")
            return None
        if not isinstance(v, str):
            self.fail(label, "must be a string")
            return None
        v = clean_text(v)
        if len(v) < min_len or len(v) > max_len:
            self.fail(label, f"must be {min_len}-{max_len} characters")
            return None
        return v

    def boolean(self, *names: str) -> bool | None:
        v = pick(self.obj, *names)
        if v is None:
            return None
        if not isinstance(v, bool):
            self.fail(names[0], "must be true or false")
            return None
        return v

    def obj_field(self, *names: str) -> dict[str, Any] | None:
        v = pick(self.obj, *names)
        if v is None:
            return None
        if not isinstance(v, dict):
            self.fail(names[0], "must be an object")
            return None
        return v

    def iso(self, *names: str) -> datetime | None:
        v = pick(self.obj, *names)
        if v is None:
            return None
        t = parse_agent_time(v)
        if t is None:
            self.fail(names[0], "must be an ISO 8601 timestamp with an offset")
        return t


def clean_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL (40 §3.9)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


# ---- time ----------------------------------------------------------------------------------------

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_agent_time(value: Any) -> datetime | None:
    """ISO 8601 with an offset (nanoseconds cut to microseconds) or epoch milliseconds; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 1e15:
            return None
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if not isinstance(value, str) or len(value) > 64:
        return None
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    s = _FRACTION.sub(lambda m: m.group(1), s, count=1)
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.astimezone(UTC)


def to_ms_precision(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def agent_timestamp(value: Any, received: datetime) -> tuple[datetime, int | None]:
    """40 §3.9: the agent's time when within [received − 7 d, received + 5 min], else the receive time.

    Returns (time to store, clock skew in ms when the agent's time was usable or out of the window).
    """
    t = parse_agent_time(value)
    if t is None:
        return to_ms_precision(received), None
    skew = int((t - received).total_seconds() * 1000)
    if received - PAST_WINDOW <= t <= received + FUTURE_WINDOW:
        return to_ms_precision(t), skew
    return to_ms_precision(received), skew


def encode(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def d_frame(type_: str, payload: dict[str, Any], session_id: str | None = None) -> str:
    """D envelope, keys in draupnir's order (40 §3.3)."""
    out: dict[str, Any] = {"protocol_version": PROTOCOL_VERSION, "type": type_}
    if session_id is not None:
        out["session_id"] = session_id
    out["payload"] = payload
    return encode(out)


def c_frame(type_: str, data: dict[str, Any], ts: str, *, frame_id: str | None = None,
            reply_to: str | None = None) -> str:
    out: dict[str, Any] = {"protocolVersion": PROTOCOL_VERSION, "type": type_}
    if frame_id is not None:
        out["id"] = frame_id
    if reply_to is not None:
        out["replyTo"] = reply_to
    out["ts"] = ts
    out["data"] = data
    return encode(out)
