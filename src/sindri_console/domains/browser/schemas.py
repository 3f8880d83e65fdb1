"""Wire shapes of the browser socket `/ws` (40 §8): channels, inbound envelopes, outbound frames."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.rbac import Role

PROTOCOL_VERSION = "1.0"
MAX_MESSAGE_ID_CHARS = 64

# channel -> minimum role (40 §8.3); the order is the order of `welcome.channels` and of replies
CHANNEL_ROLES: dict[str, Role] = {
    "metrics": Role.VIEWER,
    "heartbeats": Role.VIEWER,
    "logs": Role.VIEWER,
    "events": Role.VIEWER,
    "alerts": Role.VIEWER,
    "commands": Role.DEVELOPER,
}
CHANNELS = tuple(CHANNEL_ROLES)

# the last segment of `instance.<id>.<kind>` -> (channel, push type); `commands` picks its type per payload
TOPIC_KINDS: dict[str, tuple[str, str]] = {
    "metrics": ("metrics", "metrics"),
    "heartbeat": ("heartbeats", "heartbeat"),
    "logs": ("logs", "logs"),
    "events": ("events", "event"),
    "status": ("events", "instance:status"),
    "agent": ("events", "agent:status"),
    "reports": ("events", "report:updated"),
    "llm_usage": ("events", "llm_usage"),
    "alerts": ("alerts", "alert"),
    "commands": ("commands", ""),
}
# the bus patterns the one distributor of a replica listens to (40 §12)
BUS_PATTERNS = ("instance.*.*", "command.*", "fleet.alerts", "scope.changed")

REPORT_FIELDS = ("instanceId", "kind", "timestamp", "requestId")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class BadMessage(Exception):
    """A client message answered with `error` (the socket stays open)."""

    STATUS = {"BAD_REQUEST": 400, "UNKNOWN_TYPE": 400, "VALIDATION": 422, "FORBIDDEN": 403, "NOT_FOUND": 404,
              "CAPABILITY_MISSING": 409, "CONFLICT": 409, "LIMIT_EXCEEDED": 429, "RATE_LIMITED": 429,
              "AGENT_OFFLINE": 503, "INTERNAL": 500}

    def __init__(self, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def data(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "statusCode": self.STATUS[self.code], "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def invalid(field: str, message: str) -> BadMessage:
    return BadMessage("VALIDATION", f"Invalid message: {field} {message}", [{"field": field, "message": message}])


@dataclass
class Inbound:
    type: str
    id: str | None
    data: dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_inbound(text: str) -> tuple[Inbound | None, str | None, BadMessage | None]:
    """(message, its id, error): the id is returned even when the message is rejected, for `replyTo`."""
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None, None, BadMessage("BAD_REQUEST", "The message is not valid JSON")
    if not isinstance(doc, dict):
        return None, None, BadMessage("BAD_REQUEST", "The message must be a JSON object")
    raw_id = doc.get("id")
    msg_id = raw_id if isinstance(raw_id, str) and _MESSAGE_ID.match(raw_id) else None
    type_ = doc.get("type")
    if not isinstance(type_, str) or not type_:
        return None, msg_id, BadMessage("BAD_REQUEST", "The message needs a string field 'type'")
    if raw_id is not None and msg_id is None:
        return None, None, invalid("id", f"must be 1-{MAX_MESSAGE_ID_CHARS} characters of letters, digits, '_.:-'")
    data = doc.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, msg_id, invalid("data", "must be a JSON object")
    # mimir-style frames carry correlationId at the top level: it is the message id when there is none
    if msg_id is None and isinstance(doc.get("correlationId"), str) and _MESSAGE_ID.match(doc["correlationId"]):
        msg_id = doc["correlationId"]
    return Inbound(type_.strip(), msg_id, data), msg_id, None


def field(data: dict[str, Any], camel: str, snake: str) -> Any:
    """A payload field under its camelCase or snake_case name (40 §3.3 field-name equivalence)."""
    return data[camel] if camel in data else data.get(snake)


@dataclass(frozen=True)
class Target:
    """What one subscription addresses: every instance in scope, one instance, or one command."""

    instance_id: str | None = None  # None with command_id None = every instance in scope ("*")
    command_id: str | None = None

    @property
    def key(self) -> str:
        if self.command_id is not None:
            return "c:" + self.command_id
        return "*" if self.instance_id is None else "i:" + self.instance_id


@dataclass
class SubscribeRequest:
    channels: list[str] | None  # None = every channel the role allows
    instance_id: str | None  # None = "*"
    command_id: str | None


def parse_subscribe(data: dict[str, Any]) -> SubscribeRequest:
    """Validate `{channel?, instanceId?, commandId?}`; raises BadMessage VALIDATION."""
    channel = data.get("channel")
    channels: list[str] | None = None
    if channel is not None:
        if not isinstance(channel, str) or channel.strip().lower() not in CHANNEL_ROLES:
            raise invalid("channel", "must be one of " + ", ".join(CHANNELS))
        channels = [channel.strip().lower()]
    instance_id = field(data, "instanceId", "instance_id")
    if instance_id is not None:
        # a malformed id names no instance: the service answers NOT_FOUND, as for an unknown one
        if not isinstance(instance_id, str) or not 1 <= len(instance_id) <= 256:
            raise invalid("instanceId", "must be an instance id or \"*\"")
        if instance_id == "*":
            instance_id = None
    command_id = field(data, "commandId", "command_id")
    if command_id is not None:
        if not isinstance(command_id, str) or not 1 <= len(command_id) <= 256:
            raise invalid("commandId", "must be a command id")
        if channels is not None and channels != ["commands"]:
            raise invalid("commandId", "is only valid on the commands channel")
        channels = ["commands"]
    return SubscribeRequest(channels, instance_id, command_id)


def now_iso() -> str:
    return to_iso(utcnow()) or ""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class Frame:
    """One server message without its `seq`, which the socket assigns when it is written.

    The text is `head + str(seq) + tail`, so a push is serialised once and shared by every socket.
    """

    head: str
    tail: str
    droppable: bool  # pushes may be dropped for a slow consumer; replies never are
    size: int  # approximate bytes on the wire, for the 8 MiB queue bound

    def text(self, seq: int) -> str:
        return self.head + str(seq) + self.tail


def _frame(head: str, tail: str, droppable: bool) -> Frame:
    return Frame(head, tail, droppable, len(head) + len(tail) + 8)


def build_frame(type_: str, data: dict[str, Any], *, channel: str | None = None, reply_to: str | None = None,
                ts: str | None = None, droppable: bool = False) -> Frame:
    """Key order: type, channel, seq, ts, replyTo, data (40 §8.2)."""
    head = '{"type":' + dumps(type_)
    if channel is not None:
        head += ',"channel":' + dumps(channel)
    head += ',"seq":'
    tail = ',"ts":"' + (ts or now_iso()) + '"'
    if reply_to is not None:
        tail += ',"replyTo":' + dumps(reply_to)
    tail += ',"data":' + dumps(data) + "}"
    return _frame(head, tail, droppable)


def push_frame(type_: str, channel: str, data_json: str, ts: str) -> Frame:
    return _frame('{"type":"' + type_ + '","channel":"' + channel + '","seq":',
                  ',"ts":"' + ts + '","data":' + data_json + "}", True)
