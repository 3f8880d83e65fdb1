"""Commands: acceptance (gate, rows, audit), bounded waiting, reads (20-ops §6, 40 §6.1).

Acceptance is one transaction per request: every accepted row `QUEUED` plus one audit entry. After
the commit each row whose agent is connected is handed to the pipeline for delivery; rows of offline
agents wait for the agent's next `hello` (or expire in the sweeper).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.domains.commands import pipeline
from sindri_console.domains.commands import repository as repo
from sindri_console.domains.commands.state import QUEUED, SENT, TERMINAL_STATUSES, publish_status
from sindri_console.domains.commands.waiters import CommandWaiters
from sindri_console.domains.commands.wire import command_to_wire, dispatch_data, seal_env, seal_stdin
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import utcnow
from sindri_console.kit.crypto import MISSING_KEY_MESSAGE
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import is_valid_path_id, new_id
from sindri_console.kit.rbac import Role
from sindri_console.kit.scope import require_role_on_instance
from sindri_console.models.agent import AgentState
from sindri_console.models.commands import CommandExecution
from sindri_console.models.instance import Instance
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.commands")

REMOVED_OR_LEAVING = ("DESTROYED", "DEREGISTERED", "DESTROYING")
WAIT_EXTRA_MS = 5000
REREAD_SECONDS = 0.5


@dataclass
class CommandSpec:
    """What to run; the same for every target of one request."""

    origin: str
    mode: str  # SHELL | EXEC | SCRIPT
    command: str | None = None
    args: list[str] = field(default_factory=list)
    interpreter: str | None = None
    script: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    stdin: str | None = None
    timeout_ms: int = 30_000
    queue_ttl_sec: int | None = None
    wait: bool = True
    task_run_id: str | None = None
    remediation_id: str | None = None

    @property
    def capability(self) -> str:
        return "scripts" if self.mode == "SCRIPT" else "commands"

    @property
    def script_sha256(self) -> str | None:
        return hashlib.sha256(self.script.encode("utf-8")).hexdigest() if self.script is not None else None


class TargetRefused(ApiError):
    """A target that fails the checks of 20-ops §6.6 / 40 §6.1; `code` is the bulk item code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


@dataclass
class Target:
    instance: Instance
    connected: bool


def _refused_by_agent(instance: Instance, agent: AgentState | None, capability: str) -> TargetRefused | None:
    """The capability gate of 40 §6.1, answered before any row exists."""
    if agent is None or not agent.capabilities:
        return TargetRefused(503, "NO_AGENT", f"No agent has connected for instance '{instance.name}'; commands "
                                              "need the sindri-console agent")
    if "commands" not in agent.capabilities or capability not in agent.capabilities:
        what = "scripts" if capability == "scripts" else "commands"
        if agent.dialect == "draupnir":
            why = f"draupnir {agent.agent_version or ''}".rstrip() + " has no command execution"
        elif agent.dialect == "mimir":
            why = "a mimir-style agent has no command execution"
        else:
            why = f"its capabilities do not include '{capability}'"
        return TargetRefused(409, "UNSUPPORTED", f"The agent of instance '{instance.name}' does not support "
                                                 f"{what} ({why}); run `sindri-console agent` on the instance")
    return None


async def check_targets(session: AsyncSession, principal: Principal, ids: list[str], *, needed: Role,
                        capability: str) -> dict[str, Target | TargetRefused]:
    """Each id → Target, or the refusal: NOT_FOUND 404, FORBIDDEN 403, INSTANCE_STATE 409, NO_AGENT 503,
    UNSUPPORTED 409 (in this order)."""
    instances = await repo.visible_instances_by_id(session, principal, [i for i in ids if is_valid_path_id(i)])
    agents = await repo.agent_states(session, list(instances))
    out: dict[str, Target | TargetRefused] = {}
    for iid in ids:
        inst = instances.get(iid)
        if inst is None:
            out[iid] = TargetRefused(404, "NOT_FOUND", "Instance not found")
            continue
        try:
            await require_role_on_instance(session, principal, inst, needed)
        except ApiError as exc:
            out[iid] = TargetRefused(403, "FORBIDDEN", exc.message)
            continue
        if inst.status in REMOVED_OR_LEAVING:
            out[iid] = TargetRefused(409, "INSTANCE_STATE", f"Instance '{inst.name}' is {inst.status}")
            continue
        agent = agents.get(iid)
        refused = _refused_by_agent(inst, agent, capability)
        out[iid] = refused or Target(inst, bool(agent and agent.connected))
    return out


def _require_vault_key(rt: Runtime, spec: CommandSpec) -> None:
    if (spec.env or spec.stdin is not None) and not rt.settings.SECRET_VAULT_KEY:
        raise ApiError(503, "Env values and stdin are stored encrypted; " + MISSING_KEY_MESSAGE)


def _new_row(rt: Runtime, principal: Principal | None, spec: CommandSpec, instance_id: str, command_id: str,
             batch_id: str | None, now: Any) -> CommandExecution:
    key = rt.settings.SECRET_VAULT_KEY
    ttl = spec.queue_ttl_sec if spec.queue_ttl_sec is not None else rt.settings.COMMAND_QUEUE_TTL_SECONDS
    return CommandExecution(
        id=command_id, instance_id=instance_id, user_id=principal.user_id if principal else None,
        origin=spec.origin, batch_id=batch_id, task_run_id=spec.task_run_id, remediation_id=spec.remediation_id,
        mode=spec.mode, command=spec.command, args=list(spec.args), interpreter=spec.interpreter,
        script=spec.script, script_sha256=spec.script_sha256, env_keys=list(spec.env),
        env_values=seal_env(key, command_id, spec.env), stdin=seal_stdin(key, command_id, spec.stdin),
        working_dir=spec.working_dir, timeout_ms=spec.timeout_ms,
        output_limit_bytes=rt.settings.COMMAND_OUTPUT_LIMIT_BYTES, status=QUEUED, delivery_attempts=0,
        stdout_truncated=False, stderr_truncated=False, created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )


def _program(spec: CommandSpec) -> dict[str, Any]:
    return {"command": spec.command} if spec.mode == "SHELL" else {"program": spec.command}


def wait_seconds(rt: Runtime, spec: CommandSpec) -> float:
    """min(timeoutMs + 5000, 1000 × COMMAND_MAX_WAIT_SECONDS) milliseconds, in seconds (20-ops §6.4)."""
    return min(spec.timeout_ms + WAIT_EXTRA_MS, 1000 * rt.settings.COMMAND_MAX_WAIT_SECONDS) / 1000


async def wait_terminal(rt: Runtime, ids: list[str], seconds: float, watch: Any) -> None:
    """Until every id is terminal or `seconds` pass; woken by `command.<id>`, re-reading every 500 ms."""
    deadline = time.monotonic() + seconds
    pending = set(ids)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        watch.changed.clear()
        pending -= watch.terminal
        if not pending:
            return
        try:
            await asyncio.wait_for(watch.changed.wait(), min(REREAD_SECONDS, remaining))
            pending -= watch.terminal
        except TimeoutError:
            async with rt.db.read() as s:
                current = await repo.statuses(s, list(pending))
            pending = {cid for cid in pending if current.get(cid) not in TERMINAL_STATUSES}


class Deliveries:
    """Delivery of freshly accepted rows.

    A row whose agent socket this replica holds is inserted already SENT on that connection (QUEUED
    and the move to SENT happen in the one accepting transaction, so the SENT state is committed
    before the frame is written, 40 §6.3); its frame is written after the commit from the plaintext
    still in memory. Rows of agents connected elsewhere are handed to the replica holding the socket
    through the bus; rows of offline agents wait in QUEUED for the agent's next hello.
    """

    def __init__(self, rt: Runtime, spec: CommandSpec) -> None:
        self.rt = rt
        self.spec = spec
        self.frames: list[tuple[Any, dict[str, Any]]] = []
        self.sent_rows: list[CommandExecution] = []
        self.remote: list[tuple[str, str]] = []

    def add(self, s: AsyncSession, row: CommandExecution, connected: bool) -> None:
        conn = pipeline.local_console_conn(self.rt, row.instance_id)
        if conn is not None:
            now = row.created_at
            row.status = SENT
            row.sent_at = now
            row.sent_connection_id = conn.connection_id
            row.delivery_attempts = 1
            row.result_deadline_at = now + timedelta(
                milliseconds=row.timeout_ms, seconds=self.rt.settings.COMMAND_RESULT_GRACE_SECONDS)
            self.frames.append((conn, dispatch_data(row, dict(self.spec.env), self.spec.stdin)))
            self.sent_rows.append(row)
        elif connected:
            self.remote.append((row.instance_id, row.id))
        s.add(row)

    def published(self, s: AsyncSession) -> None:
        for row in self.sent_rows:
            publish_status(s, row)

    async def after_commit(self) -> None:
        async def one(instance_id: str, command_id: str) -> None:
            try:
                await pipeline.request_delivery(self.rt, instance_id, command_id)
            except Exception as exc:  # the sweeper re-drives QUEUED rows of connected agents
                log.warning("command_delivery_request_failed", command_id=command_id, error=type(exc).__name__)

        await asyncio.gather(*(pipeline.write_dispatch(conn, frame) for conn, frame in self.frames),
                             *(one(iid, cid) for iid, cid in self.remote))


def _waiters(rt: Runtime) -> CommandWaiters:
    waiters: CommandWaiters = rt.services["command_waiters"]
    return waiters


async def create_single(rt: Runtime, principal: Principal, instance_id: str,
                        spec: CommandSpec) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/commands: (201 when terminal within the wait, else 202, the Command object)."""
    _require_vault_key(rt, spec)
    async with rt.db.read() as s:
        checked = (await check_targets(s, principal, [instance_id], needed=Role.DEVELOPER,
                                       capability=spec.capability))[instance_id]
    if isinstance(checked, TargetRefused):
        raise ApiError(checked.status, checked.message)
    command_id = new_id()
    deliveries = Deliveries(rt, spec)
    with _waiters(rt).watch([command_id]) as watch:
        now = utcnow()
        async with rt.db.write() as s:
            deliveries.add(s, _new_row(rt, principal, spec, instance_id, command_id, None, now), checked.connected)
            deliveries.published(s)
            await write_audit(s, principal, "EXECUTE", "command", command_id, {
                "instanceId": instance_id, "mode": spec.mode, **_program(spec), "argCount": len(spec.args),
                "envKeys": list(spec.env), "workingDir": spec.working_dir, "timeoutMs": spec.timeout_ms,
            }, team_id=checked.instance.team_id)
        await asyncio.shield(deliveries.after_commit())  # the frame goes out even if the client leaves
        if spec.wait and checked.connected:
            await wait_terminal(rt, [command_id], wait_seconds(rt, spec), watch)
    async with rt.db.read() as s:
        row, name = (await repo.rows_with_names(s, [command_id]))[command_id]
    return (201 if row.status in TERMINAL_STATUSES else 202), command_to_wire(row, name)


async def create_batch(rt: Runtime, principal: Principal, instance_ids: list[str], spec: CommandSpec,
                       *, needed: Role) -> dict[str, Any]:
    """POST /commands/bulk and /commands/script: the 207 body; refused targets never stop the others."""
    _require_vault_key(rt, spec)
    async with rt.db.read() as s:
        checked = await check_targets(s, principal, instance_ids, needed=needed, capability=spec.capability)
    batch_id = new_id()
    accepted: dict[str, str] = {}  # instance id -> command id
    connected_ids: list[str] = []
    connected: set[str] = set()
    for iid in instance_ids:
        target = checked[iid]
        if isinstance(target, Target):
            accepted[iid] = new_id()
            if target.connected:
                connected_ids.append(accepted[iid])
                connected.add(accepted[iid])
    deliveries = Deliveries(rt, spec)
    with _waiters(rt).watch(connected_ids) as watch:
        if accepted:
            now = utcnow()
            async with rt.db.write() as s:
                for iid, cid in accepted.items():
                    deliveries.add(s, _new_row(rt, principal, spec, iid, cid, batch_id, now), cid in connected)
                deliveries.published(s)
                if spec.mode == "SCRIPT":
                    meta: dict[str, Any] = {"batchId": batch_id, "instanceIds": list(accepted),
                                            "interpreter": spec.interpreter,
                                            # prefixed: the audit writer redacts bare 64-hex values as keys
                                            "scriptSha256": f"sha256:{spec.script_sha256}",
                                            "scriptBytes": len(spec.script.encode("utf-8")) if spec.script else 0,
                                            "envKeys": list(spec.env)}
                else:
                    meta = {"batchId": batch_id, "instanceIds": list(accepted), "mode": spec.mode,
                            **_program(spec), "envKeys": list(spec.env)}
                await write_audit(s, principal, "EXECUTE", "command", batch_id, meta)
            # a client that goes away must not leave a committed SENT row without its frame (20-ops §6.4)
            await asyncio.shield(deliveries.after_commit())
            if spec.wait and connected_ids:
                await wait_terminal(rt, connected_ids, wait_seconds(rt, spec), watch)
    async with rt.db.read() as s:
        rows = await repo.rows_with_names(s, list(accepted.values()))
    return batch_body(batch_id, instance_ids, checked, accepted, rows)


def batch_body(batch_id: str, instance_ids: list[str], checked: dict[str, Target | TargetRefused],
               accepted: dict[str, str], rows: dict[str, tuple[CommandExecution, str]]) -> dict[str, Any]:
    counts = {"SUCCEEDED": 0, "FAILED": 0, "TIMED_OUT": 0, "CANCELLED": 0}
    pending = 0
    results = []
    for iid in instance_ids:
        target = checked[iid]
        if isinstance(target, TargetRefused):
            results.append({"instanceId": iid, "accepted": False, "execution": None,
                            "error": {"code": target.code, "statusCode": target.status, "message": target.message}})
            continue
        row, name = rows[accepted[iid]]
        if row.status in counts:
            counts[row.status] += 1
        else:
            pending += 1
        results.append({"instanceId": iid, "accepted": True, "execution": command_to_wire(row, name),
                        "error": None})
    summary = {"total": len(instance_ids), "accepted": len(accepted), "rejected": len(instance_ids) - len(accepted),
               "succeeded": counts["SUCCEEDED"], "failed": counts["FAILED"], "timedOut": counts["TIMED_OUT"],
               "cancelled": counts["CANCELLED"], "pending": pending}
    return {"batchId": batch_id, "summary": summary, "results": results}


async def get_command(rt: Runtime, principal: Principal, command_id: str) -> dict[str, Any]:
    async with rt.db.read() as s:
        found = await repo.get_visible(s, principal, command_id)
    if found is None:
        raise ApiError(404, "Command execution not found")
    return command_to_wire(found[0], found[1])
