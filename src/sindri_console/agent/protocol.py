"""C-dialect envelopes (40-agent-protocol §3.3)."""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

from sindri_console.agent.util import now_iso

PROTOCOL_VERSION = "1.0"
AGENT_NAME = "sindri-console-agent"
SUBPROTOCOL = "sindri-agent.v1"


class FrameIds:
    """Frame ids unique per agent process: a random prefix chosen at start plus a counter."""

    def __init__(self) -> None:
        self._prefix = "a" + secrets.token_hex(6)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


def make_frame(
    type_: str, data: dict[str, Any], frame_id: str | None = None, reply_to: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"protocolVersion": PROTOCOL_VERSION, "type": type_}
    if frame_id is not None:
        frame["id"] = frame_id
    if reply_to is not None:
        frame["replyTo"] = reply_to
    frame["ts"] = now_iso()
    frame["data"] = data
    return frame


def encode(frame: dict[str, Any]) -> str:
    # NaN/Infinity are malformed on the wire (§3.3), so refuse them here rather than be dropped.
    return json.dumps(frame, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def parse(text: str | bytes) -> dict[str, Any] | None:
    """A server frame as a dict, or None when it is not a JSON object with a string ``type``."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    data = value.get("data")
    if data is None and isinstance(value.get("payload"), dict):
        data = value["payload"]
    value["data"] = data if isinstance(data, dict) else {}
    return value
