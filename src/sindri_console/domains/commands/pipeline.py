"""The command delivery pipeline over the agent socket (40 §6.2–§6.5).

The agent socket (`domains/agents`) calls three entry points on the replica that holds the socket:
`on_hello` after `welcome`, `on_agent_frame` for `command:ack|progress|result`, and `on_control` for
the `deliver` / `cancel` ops of the bus topic `agent.<instanceId>.control`. Routes and the sweeper ask
for a delivery or a cancel with `request_delivery` / `request_cancel`, which write directly when this
replica holds the socket and otherwise publish the control op for the replica that does.

Every state change is a compare-and-set (`state.transition`); the move to SENT is committed before the
frame is written, so a failed write leaves the row SENT and the next `hello` redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.domains.agents.contracts import AgentConn
from sindri_console.domains.commands import repository as repo
from sindri_console.domains.commands import state
from sindri_console.domains.commands.state import FAILED, QUEUED, RUNNING, SENT, TERMINAL_STATUSES, TIMED_OUT
from sindri_console.domains.commands.wire import dispatch_data, open_env, open_stdin
from sindri_console.kit.clock import from_ms, parse_iso, utcnow
from sindri_console.kit.crypto import CryptoError
from sindri_console.kit.ids import is_valid_path_id
from sindri_console.models.commands import CommandExecution
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.commands")
T = TypeVar("T")

REDELIVER_PER_SECOND = 100
PROGRESS_MAX_BYTES = 16 * 1024
PROGRESS_PER_SECOND = 10
AGENT_TIME_PAST = timedelta(days=7)
AGENT_TIME_FUTURE = timedelta(minutes=5)
REFUSAL_CODES = ("DISABLED", "BAD_WORKDIR", "BUSY")
RESTARTED_MESSAGE = "Agent restarted while the command was running; outcome unknown"
UNSEALED_MESSAGE = ("The command's env values or stdin cannot be decrypted: SECRET_VAULT_KEY is missing or "
                    "differs from the key they were stored with")

# background redeliveries beyond the first second of a hello (kept referenced until they finish)
_background: set[asyncio.Task[None]] = set()
# progress frames forwarded per command in the current second: id -> (second, count)
_progress_window: dict[str, tuple[int, int]] = {}


# ---- requests from routes and loops ------------------------------------------------------------


def _local_conn(rt: Runtime, instance_id: str) -> AgentConn | None:
    hub = rt.services.get("agents")
    if hub is None:
        return None
    conn: AgentConn | None = hub.local(instance_id)
    return conn


async def request_delivery(rt: Runtime, instance_id: str, command_id: str) -> None:
    """After commit: deliver a QUEUED row now when this replica holds the agent socket, else ask the
    replica that holds it (bus `agent.<id>.control {op:"deliver"}`)."""
    conn = _local_conn(rt, instance_id)
    if conn is not None and conn.is_console:
        await deliver(rt, conn, command_id)
        return
    await rt.bus.publish(f"agent.{instance_id}.control", {"op": "deliver", "commandId": command_id})


async def request_cancel(rt: Runtime, instance_id: str, command_id: str, reason: str) -> None:
    """After commit: send `command:cancel` to the instance's agent wherever its socket is held."""
    conn = _local_conn(rt, instance_id)
    if conn is not None and conn.is_console:
        await _send_cancel(conn, command_id, reason)
        return
    await rt.bus.publish(f"agent.{instance_id}.control",
                         {"op": "cancel", "commandId": command_id, "reason": reason})


async def _send_cancel(conn: AgentConn, command_id: str, reason: str) -> None:
    if not conn.is_console:
        return
    try:
        await conn.send_frame("command:cancel", {"commandId": command_id, "reason": reason})
    except ConnectionError:
        log.info("command_cancel_not_sent", command_id=command_id, connection_id=conn.connection_id)


# ---- delivery ----------------------------------------------------------------------------------


async def _write(rt: Runtime, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in a group-committed transaction (domains/commands/writer.py) when the writer runs."""
    writer = rt.services.get("command_writer")
    if writer is None:
        async with rt.db.write() as s:
            return await work(s)
    result: T = await writer.run(work)
    return result


def local_console_conn(rt: Runtime, instance_id: str) -> AgentConn | None:
    """The instance's console-agent socket when this replica holds it."""
    conn = _local_conn(rt, instance_id)
    return conn if conn is not None and conn.is_console else None


async def mark_sent(s: AsyncSession, rt: Runtime, conn: AgentConn, command_id: str) -> dict[str, Any] | None:
    """In the caller's transaction: QUEUED → SENT (or SENT on an earlier connection → SENT) on `conn`;
    returns the `command:dispatch` data to write after the commit, or None when nothing is to be sent
    (already SENT on this connection, acknowledged, terminal, expired, another instance's)."""
    settings = rt.settings
    now = utcnow()
    row = await repo.fresh_row(s, command_id)
    if row is None or row.instance_id != conn.instance_id or row.status not in (QUEUED, SENT):
        return None
    if row.expires_at <= now:
        return None  # the sweeper times it out
    if row.status == SENT and row.sent_connection_id == conn.connection_id:
        return None
    try:
        env = open_env(settings.SECRET_VAULT_KEY, row)
        stdin = open_stdin(settings.SECRET_VAULT_KEY, row)
    except (CryptoError, ValueError) as exc:
        log.warning("command_inputs_unreadable", command_id=command_id, error=type(exc).__name__)
        await state.transition(s, command_id, allowed_from=(row.status,), to=FAILED,
                               values={"error": UNSEALED_MESSAGE}, now=now)
        return None
    previous_conn = row.sent_connection_id
    same_delivery = (CommandExecution.sent_connection_id.is_(None) if previous_conn is None
                     else CommandExecution.sent_connection_id == previous_conn)
    deadline = now + timedelta(milliseconds=row.timeout_ms, seconds=settings.COMMAND_RESULT_GRACE_SECONDS)
    moved = await state.transition(
        s, command_id, allowed_from=(row.status,), to=SENT, extra_where=(same_delivery,), now=now,
        values={"sent_at": now, "sent_connection_id": conn.connection_id, "result_deadline_at": deadline,
                "delivery_attempts": CommandExecution.delivery_attempts + 1},
    )
    return dispatch_data(row, env, stdin) if moved is not None else None


async def write_dispatch(conn: AgentConn, frame: dict[str, Any]) -> bool:
    """Write a dispatch whose SENT state is committed; a dead socket leaves the row for redelivery."""
    try:
        await conn.send_frame("command:dispatch", frame)
    except ConnectionError:
        # the row stays SENT on a dead connection; the next hello redelivers it (40 §6.3)
        log.info("command_dispatch_not_written", command_id=frame.get("commandId"),
                 connection_id=conn.connection_id)
        return False
    return True


async def deliver(rt: Runtime, conn: AgentConn, command_id: str) -> bool:
    """Move the row to SENT on this connection (committed), then write `command:dispatch`.
    True when a frame was written."""
    if not conn.is_console:
        return False  # 40 §6.4: legacy connections never receive commands
    frame = await _write(rt, lambda s: mark_sent(s, rt, conn, command_id))
    if frame is None:
        return False
    return await write_dispatch(conn, frame)


async def _redeliver(rt: Runtime, conn: AgentConn, ids: list[str], started: float) -> None:
    """Deliver `ids` in order, at most REDELIVER_PER_SECOND per second."""
    window_start, sent = started, 0
    for command_id in ids:
        if sent >= REDELIVER_PER_SECOND:
            await asyncio.sleep(max(0.0, window_start + 1.0 - time.monotonic()))
            window_start, sent = time.monotonic(), 0
        try:
            await deliver(rt, conn, command_id)
        except Exception as exc:  # one bad row must not stop the others
            log.warning("command_redelivery_failed", command_id=command_id, error=type(exc).__name__)
        sent += 1


async def on_hello(rt: Runtime, conn: AgentConn, in_flight: list[str]) -> None:
    """40 §6.4, after `welcome` on a console connection.

    1. RUNNING rows the agent no longer knows (not in `in_flight`) → FAILED `AGENT_RESTARTED`.
    2. QUEUED and unacknowledged SENT rows not expired → delivered oldest first, ≤ 100 per second
       (the first second inline, the rest in the background).
    """
    if not conn.is_console:
        return
    known = set(in_flight or [])
    now = utcnow()
    async with rt.db.write() as s:
        running = await repo.active_ids_of_instance(s, conn.instance_id, (RUNNING,))
        lost = [cid for cid in running if cid not in known]
        await state.transition_many(s, lost, allowed_from=(RUNNING,), to=FAILED, now=now,
                                    values={"error_code": "AGENT_RESTARTED", "error": RESTARTED_MESSAGE})
    async with rt.db.read() as s:
        pending = await repo.deliverable_ids(s, conn.instance_id, now)
    started = time.monotonic()
    first, rest = pending[:REDELIVER_PER_SECOND], pending[REDELIVER_PER_SECOND:]
    await _redeliver(rt, conn, first, started)
    if rest:
        task = asyncio.create_task(_redeliver(rt, conn, rest, started), name=f"redeliver-{conn.connection_id}")
        _background.add(task)
        task.add_done_callback(_background.discard)


async def on_control(rt: Runtime, conn: AgentConn, msg: dict[str, Any]) -> None:
    """Ops `deliver` and `cancel` of `agent.<instanceId>.control` at the replica holding the socket."""
    op = msg.get("op")
    command_id = msg.get("commandId")
    if not isinstance(command_id, str) or not command_id:
        return
    if op == "deliver":
        await deliver(rt, conn, command_id)
    elif op == "cancel":
        reason = r if isinstance(r := msg.get("reason"), str) else "cancelled"
        await _send_cancel(conn, command_id, reason)


async def shutdown() -> None:
    """Let queued agent replies commit and be answered (at most 5 s), then stop background work."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await settle()
    for task in list(_background):
        task.cancel()
    for task in list(_background):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# ---- agent replies -----------------------------------------------------------------------------


class _Fields:
    """Reads a payload with camelCase / snake_case names and collects per-field problems (40 §3.9)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[dict[str, str]] = []

    def raw(self, camel: str, snake: str) -> Any:
        if camel in self.data:
            return self.data[camel]
        return self.data.get(snake)

    def _bad(self, field: str, message: str) -> None:
        self.problems.append({"field": field, "message": message})

    def int_(self, camel: str, snake: str, *, lo: int | None = None) -> int | None:
        v = self.raw(camel, snake)
        if v is None:
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or abs(v) > 2**62:
            self._bad(camel, "must be an integer" + (f" >= {lo}" if lo is not None else ""))
            return None
        return v

    def str_(self, camel: str, snake: str, *, max_len: int | None = None) -> str | None:
        v = self.raw(camel, snake)
        if v is None:
            return None
        if not isinstance(v, str):
            self._bad(camel, "must be a string")
            return None
        v = clean_text(v)
        return v[:max_len] if max_len is not None else v

    def bool_(self, camel: str, snake: str) -> bool | None:
        v = self.raw(camel, snake)
        if v is None:
            return None
        if not isinstance(v, bool):
            self._bad(camel, "must be true or false")
            return None
        return v

    def time_(self, camel: str, snake: str, now: datetime) -> datetime | None:
        v = self.raw(camel, snake)
        if v is None:
            return None
        try:
            if isinstance(v, int | float) and not isinstance(v, bool):
                t = from_ms(int(v))
            else:
                t = parse_iso(v)
        except (ValueError, TypeError, OverflowError, OSError):
            self._bad(camel, "must be an ISO 8601 timestamp")
            return None
        # agent clocks are trusted only within [now − 7 days, now + 5 minutes] (40 §3.9)
        return t if now - AGENT_TIME_PAST <= t <= now + AGENT_TIME_FUTURE else now


def clean_text(value: str) -> str:
    """Text from an agent as stored: U+0000 → U+FFFD, lone surrogates replaced."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")


def cap_utf8(value: str, limit: int) -> tuple[str, bool]:
    """The first `limit` bytes of `value` cut back to a complete UTF-8 sequence; whether it was cut."""
    raw = value.encode("utf-8")
    if len(raw) <= limit:
        return value, False
    return raw[:limit].decode("utf-8", "ignore"), True


def _ack(frame_id: str | None, *, duplicate: bool = False) -> dict[str, Any] | None:
    if frame_id is None:
        return None
    data: dict[str, Any] = {"id": frame_id}
    if duplicate:
        data["duplicate"] = True
    return {"type": "ack", "data": data}


def _error(code: str, message: str, frame_id: str | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"code": code, "message": message}
    if frame_id is not None:
        data["refId"] = frame_id
    data.update(extra)
    return {"type": "error", "data": data}


async def on_agent_frame(rt: Runtime, conn: AgentConn, type_: str, data: dict[str, Any],
                         frame_id: str | None) -> dict[str, Any] | None:
    """Handle `command:ack`, `command:progress`, `command:result` (40 §4.5, §6.3).

    Acks and results are queued on the group-commit writer and this returns None at once, so the
    socket keeps reading while the write commits; their reply (`ack` or `error`) is written on the
    connection after the commit, by `_reply_after_commit`. Invalid frames and progress frames are
    answered through the return value. D connections never get replies.
    """
    fields = _Fields(data if isinstance(data, dict) else {})
    command_id = fields.raw("commandId", "command_id")
    if not isinstance(command_id, str) or not command_id or len(command_id) > 128:
        reply: dict[str, Any] | None = _error("INVALID_PAYLOAD", f"{type_} needs a commandId", frame_id,
                                              details=[{"field": "commandId", "message": "is required"}])
    elif not is_valid_path_id(command_id):  # never one of ours; keep it away from the database
        reply = _unknown(command_id[:64], frame_id)
    elif type_ == "command:ack":
        reply = _start_ack(rt, conn, command_id, fields, frame_id)
    elif type_ == "command:progress":
        reply = await _on_progress(rt, conn, command_id, fields, frame_id)
    elif type_ == "command:result":
        _start_result(rt, conn, command_id, fields, frame_id)
        reply = None
    else:
        reply = _error("UNKNOWN_TYPE", f"{type_} is not a command frame", frame_id)
    return None if conn.dialect == "draupnir" else reply


def _reply_after_commit(conn: AgentConn, frame_id: str | None,
                        pending: Awaitable[dict[str, Any] | None]) -> None:
    async def run() -> None:
        try:
            reply = await pending
        except Exception as exc:  # the frame was not stored: no ack, the agent re-sends it after hello
            log.warning("command_frame_not_stored", connection_id=conn.connection_id, error=type(exc).__name__)
            return
        if reply is None or conn.dialect == "draupnir":
            return
        with contextlib.suppress(ConnectionError):
            await conn.send_frame(reply["type"], reply["data"], reply_to=frame_id)

    task = asyncio.create_task(run(), name="command-reply")
    _background.add(task)
    task.add_done_callback(_background.discard)


async def settle(rt: Runtime | None = None) -> None:
    """Wait until every queued agent reply has been committed and answered (tests, shutdown)."""
    for _ in range(1000):
        pending = [t for t in _background if t.get_name() == "command-reply"]
        if not pending:
            return
        await asyncio.gather(*pending, return_exceptions=True)


def _unknown(command_id: str, frame_id: str | None) -> dict[str, Any]:
    return _error("UNKNOWN_COMMAND", f"No command {command_id} for this instance", frame_id)


@dataclass
class ReplyIntent:
    """A parsed `command:ack` / `command:result`, applied by `apply_replies` in a shared transaction."""

    command_id: str
    instance_id: str
    kind: str  # "ack" | "result"
    to: str
    values: dict[str, Any]
    now: datetime
    stdout: str = ""
    stderr: str = ""
    started_at: datetime | None = None


def _transitions_allowed(kind: str) -> tuple[str, ...]:
    return (SENT,) if kind == "ack" else (QUEUED, SENT, RUNNING)


async def apply_replies(s: AsyncSession, intents: list[ReplyIntent]) -> list[str]:
    """Apply agent replies set-wise: one locking read of the rows, transitions decided in arrival order
    against it, one executemany compare-and-set update per column set (repository.update_from). Returns per intent
    "stored", "duplicate" (no transition applies any more) or "unknown" (no such command of that
    instance)."""
    rows = await repo.rows_for_reply(s, list({i.command_id for i in intents}))
    current = {cid: {"status": r.status, "started_at": r.started_at, "exit_code": r.exit_code,
                     "completed_at": r.completed_at, "instance_id": r.instance_id,
                     "limit": r.output_limit_bytes} for cid, r in rows.items()}
    original = {cid: r.status for cid, r in rows.items()}
    changes: dict[str, dict[str, Any]] = {}
    outcomes: list[str] = []
    for it in intents:
        row = current.get(it.command_id)
        if row is None or row["instance_id"] != it.instance_id:
            outcomes.append("unknown")
            continue
        if row["status"] not in _transitions_allowed(it.kind):
            outcomes.append("duplicate")
            continue
        values = dict(it.values)
        if it.kind == "result":
            out, cut_out = cap_utf8(it.stdout, row["limit"])
            err, cut_err = cap_utf8(it.stderr, row["limit"])
            values.update({
                "stdout": out, "stderr": err,
                "stdout_bytes": values["stdout_bytes"] if values["stdout_bytes"] is not None else len(out.encode()),
                "stderr_bytes": values["stderr_bytes"] if values["stderr_bytes"] is not None else len(err.encode()),
                "stdout_truncated": values["stdout_truncated"] or cut_out,
                "stderr_truncated": values["stderr_truncated"] or cut_err,
            })
            if row["started_at"] is None and it.started_at is not None:
                values["started_at"] = it.started_at
        values["status"] = it.to
        if it.to in TERMINAL_STATUSES:
            values.setdefault("completed_at", it.now)
            values["env_values"] = None
            values["stdin"] = None
        changes.setdefault(it.command_id, {}).update(values)
        row["status"] = it.to
        for key in ("started_at", "exit_code", "completed_at"):
            if key in values:
                row[key] = values[key]
        state.publish_message(s, state.status_message(it.command_id, it.instance_id, it.to, row["exit_code"],
                                                      row["started_at"], row["completed_at"]))
        outcomes.append("stored")
    await repo.update_from(s, {cid: (original[cid], values) for cid, values in changes.items()})
    return outcomes


def _start_ack(rt: Runtime, conn: AgentConn, command_id: str, f: _Fields,
               frame_id: str | None) -> dict[str, Any] | None:
    accepted = f.bool_("accepted", "accepted")
    if accepted is None:
        return _error("INVALID_PAYLOAD", "command:ack needs accepted (true or false)", frame_id,
                      details=f.problems or [{"field": "accepted", "message": "is required"}])
    now = utcnow()
    values: dict[str, Any]
    if accepted:
        to, values = RUNNING, {"started_at": f.time_("startedAt", "started_at", now) or now,
                               "pid": f.int_("pid", "pid", lo=0)}
    else:
        code = f.str_("code", "code", max_len=32) or ""
        message = f.str_("message", "message", max_len=4096) or f"The agent refused the command ({code})"
        if code == "EXPIRED":
            to, error_code = TIMED_OUT, "EXPIRED"
        else:
            to, error_code = FAILED, code if code in REFUSAL_CODES else "AGENT_ERROR"
        values = {"error_code": error_code, "error": message, "exit_code": None}
    intent = ReplyIntent(command_id, conn.instance_id, "ack", to, values, now)
    _reply_after_commit(conn, frame_id, _finish(rt, intent, f, frame_id))
    return None


async def _finish(rt: Runtime, intent: ReplyIntent, f: _Fields, frame_id: str | None) -> dict[str, Any] | None:
    writer = rt.services.get("command_reply_writer")
    if writer is None:
        async with rt.db.write() as s:
            outcome = (await apply_replies(s, [intent]))[0]
    else:
        outcome = await writer.run(intent)
    if outcome == "unknown":
        return _unknown(intent.command_id, frame_id)
    if intent.kind == "result":
        _progress_window.pop(intent.command_id, None)
    if outcome == "duplicate":
        return _ack(frame_id, duplicate=True)
    if f.problems:
        return _error("INVALID_PAYLOAD", f"Some fields of command:{intent.kind} were invalid and stored as null",
                      frame_id, details=f.problems, partial=True)
    return _ack(frame_id)


async def _on_progress(rt: Runtime, conn: AgentConn, command_id: str, f: _Fields,
                       frame_id: str | None) -> dict[str, Any] | None:
    stream = f.raw("stream", "stream")
    text = f.raw("data", "data")
    seq = f.int_("seq", "seq", lo=0)
    if stream not in ("stdout", "stderr") or not isinstance(text, str):
        return _error("INVALID_PAYLOAD", "command:progress needs stream (stdout|stderr) and data (text)", frame_id,
                      details=[{"field": "stream" if stream not in ("stdout", "stderr") else "data",
                                "message": "is invalid"}])
    async with rt.db.read() as s:
        current = await repo.status_of(s, command_id, conn.instance_id)
    if current is None:
        return _unknown(command_id, frame_id)
    if current in TERMINAL_STATUSES or not _progress_allowed(command_id):
        return _ack(frame_id)
    chunk, _ = cap_utf8(clean_text(text), PROGRESS_MAX_BYTES)
    msg = {"commandId": command_id, "instanceId": conn.instance_id, "stream": stream, "seq": seq, "data": chunk}
    await rt.bus.publish(f"command.{command_id}", msg)
    await rt.bus.publish(f"instance.{conn.instance_id}.commands", msg)
    return _ack(frame_id)


def _progress_allowed(command_id: str) -> bool:
    second = int(time.monotonic())
    window, count = _progress_window.get(command_id, (second, 0))
    if window != second:
        window, count = second, 0
    if count >= PROGRESS_PER_SECOND:
        return False
    if len(_progress_window) > 10_000:
        for key in [k for k, (w, _) in _progress_window.items() if w < second - 60]:
            del _progress_window[key]
    _progress_window[command_id] = (window, count + 1)
    return True


def _start_result(rt: Runtime, conn: AgentConn, command_id: str, f: _Fields,
                  frame_id: str | None) -> None:
    now = utcnow()
    exit_code = f.int_("exitCode", "exit_code")
    signal = f.str_("signal", "signal", max_len=32)
    stdout = f.str_("stdout", "stdout") or ""
    stderr = f.str_("stderr", "stderr") or ""
    stdout_bytes = f.int_("stdoutBytes", "stdout_bytes", lo=0)
    stderr_bytes = f.int_("stderrBytes", "stderr_bytes", lo=0)
    duration = f.int_("durationMs", "duration_ms", lo=0)
    if duration is not None and duration > 2**31 - 1:
        duration = None
    timed_out = f.bool_("timedOut", "timed_out") or False
    cancelled = f.bool_("cancelled", "cancelled") or False
    error = f.str_("error", "error", max_len=4096)
    if exit_code is not None and not -(2**31) <= exit_code < 2**31:
        exit_code = None

    message: str | None
    if timed_out:
        to, code, message = TIMED_OUT, "TIMEOUT", error or "The command ran longer than its timeout and was stopped"
    elif cancelled:
        to, code, message = state.CANCELLED, "CANCELLED", error or "The command was cancelled"
    elif error:
        to, code, message = FAILED, "AGENT_ERROR", error
    elif exit_code == 0:
        to, code, message = state.SUCCEEDED, None, None
    else:
        to, code = FAILED, "EXIT_CODE"
        if exit_code is not None:
            message = f"The command exited with status {exit_code}"
        elif signal:
            message = f"The command was ended by signal {signal}"
        else:
            message = "The agent reported no exit status"
    values: dict[str, Any] = {
        "exit_code": exit_code, "signal": signal, "stdout_bytes": stdout_bytes, "stderr_bytes": stderr_bytes,
        "stdout_truncated": f.bool_("stdoutTruncated", "stdout_truncated") or False,
        "stderr_truncated": f.bool_("stderrTruncated", "stderr_truncated") or False,
        "duration_ms": duration, "error_code": code, "error": message, "completed_at": now,
    }
    intent = ReplyIntent(command_id, conn.instance_id, "result", to, values, now, stdout=stdout, stderr=stderr,
                         started_at=f.time_("startedAt", "started_at", now))
    _reply_after_commit(conn, frame_id, _finish(rt, intent, f, frame_id))
