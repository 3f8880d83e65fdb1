"""The per-replica registry of agent sockets (`rt.services["agents"]`) and the router of
`agent.<instanceId>.control` bus messages to the socket this replica holds (40 §3.5, §12).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

import structlog

from sindri_console.domains.agents.contracts import AgentConn
from sindri_console.domains.agents.writer import IngestWriter
from sindri_console.kit.auth import AuthFailure
from sindri_console.kit.ids import new_id

if TYPE_CHECKING:
    from sindri_console.bus.base import Subscription
    from sindri_console.domains.agents.socket import AgentSocket
    from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.agents.hub")

RECHECK_SECONDS = 60.0
RESOLVE_BATCH = 500


class AgentHub:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.writer = IngestWriter(rt)
        self._local: dict[str, AgentSocket] = {}
        self._all: set[AgentSocket] = set()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._report_waiters: dict[tuple[str, str], asyncio.Event] = {}
        self.closing = False
        self._none_open = asyncio.Event()
        self._none_open.set()
        self._resolving: list[tuple[str, asyncio.Future[str | None]]] = []
        self._resolver: asyncio.Task[None] | None = None

    # ---- registry -------------------------------------------------------------------------------

    def local(self, instance_id: str) -> AgentConn | None:
        """The identified socket of `instance_id` on this replica, if any."""
        # only identified sockets are registered, so instance_id is set: an AgentConn
        return cast("AgentConn | None", self._local.get(instance_id))

    def connections(self) -> list[AgentSocket]:
        return list(self._local.values())

    def track(self, conn: AgentSocket) -> None:
        self._all.add(conn)
        self._none_open.clear()

    def untrack(self, conn: AgentSocket) -> None:
        self._all.discard(conn)
        if not self._all:
            self._none_open.set()

    async def attach(self, conn: AgentSocket) -> None:
        assert conn.instance_id is not None
        old = self._local.get(conn.instance_id)
        self._local[conn.instance_id] = conn
        if old is not None and old is not conn:
            await old.close_with(4409, "Replaced by a newer connection")

    def detach(self, conn: AgentSocket) -> None:
        if conn.instance_id is not None and self._local.get(conn.instance_id) is conn:
            del self._local[conn.instance_id]

    # ---- identity resolution (§2.4) -----------------------------------------------------------

    async def resolve(self, value: str) -> str | None:
        """The live instance an identity presented by a socket names, or None. Concurrent calls
        share one read: a connect storm costs a few queries, not one pooled connection per socket."""
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._resolving.append((value, fut))
        if self._resolver is None or self._resolver.done():
            self._resolver = asyncio.create_task(self._resolve_pending(), name="agent-resolve")
        return await fut

    async def _resolve_pending(self) -> None:
        from sindri_console.domains.instances.repository import resolve_identities

        while self._resolving:
            batch, self._resolving = self._resolving[:RESOLVE_BATCH], self._resolving[RESOLVE_BATCH:]
            try:
                async with self.rt.db.read() as s:
                    found = await resolve_identities(s, [value for value, _ in batch])
            except asyncio.CancelledError:
                # shutdown: nobody is left to answer the waiting sockets
                for _, fut in batch + self._resolving:
                    fut.cancel()
                raise
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for value, fut in batch:
                if not fut.done():
                    fut.set_result(found.get(value))

    # ---- report requests (§5.3) ---------------------------------------------------------------

    async def request_report(self, instance_id: str, kind: str, within: float) -> bool:
        """Ask the instance's agent (on any replica) for a report; True when it arrived in time,
        False on timeout. The caller checked that the agent is connected and capable."""
        request_id = new_id()
        event = asyncio.Event()
        self._report_waiters[(instance_id, request_id)] = event
        try:
            await self.rt.bus.publish(f"agent.{instance_id}.control",
                                      {"op": "report", "requestId": request_id, "kinds": [kind]})
            try:
                await asyncio.wait_for(event.wait(), within)
                return True
            except TimeoutError:
                return False
        finally:
            self._report_waiters.pop((instance_id, request_id), None)

    def report_arrived(self, instance_id: str, request_id: str, kind: str) -> None:
        """Called after a report with `requestId` committed on this replica; other replicas hear the bus."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self.rt.bus.publish(
                f"agent.{instance_id}.control", {"op": "report_done", "requestId": request_id, "kind": kind}))

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.writer.start()
        self._sub = await self.rt.bus.subscribe("agent.*.control", maxsize=100_000)
        self._tasks.append(asyncio.create_task(self._route_control(), name="agent-control"))
        self._tasks.append(asyncio.create_task(self._recheck_loop(), name="agent-recheck"))

    async def stop(self) -> None:
        """Server shutdown: every agent socket is closed with 1001, the writer flushes."""
        self.closing = True
        conns = list(self._all)
        await asyncio.gather(*(c.close_with(1001, "Server shutting down") for c in conns), return_exceptions=True)
        # let the handlers record their close
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._none_open.wait()
        if self._resolver is not None:
            self._tasks.append(self._resolver)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._sub is not None:
            await self._sub.close()
        await self.writer.stop()

    async def _route_control(self) -> None:
        assert self._sub is not None
        while True:
            topic, msg = await self._sub.get()
            try:
                await self._on_control(topic, msg)
            except Exception:
                log.exception("agent_control_failed", topic=topic)

    async def _on_control(self, topic: str, msg: dict[str, Any]) -> None:
        parts = topic.split(".")
        if len(parts) != 3:
            return
        instance_id = parts[1]
        op = msg.get("op")
        if op == "report_done":
            ev = self._report_waiters.get((instance_id, str(msg.get("requestId"))))
            if ev is not None:
                ev.set()
            return
        conn = self._local.get(instance_id)
        if conn is None:
            return
        if op == "replace":
            if msg.get("keepConnectionId") != conn.connection_id:
                await conn.close_with(4409, "Replaced by a newer connection")
        elif op == "close":
            code = c if isinstance(c := msg.get("code"), int) else 4410
            await conn.close_with(code, str(msg.get("reason") or "Instance removed"))
        elif op == "report":
            kinds = [k for k in msg.get("kinds") or [] if k in conn.capabilities]
            if conn.is_console and kinds:
                with contextlib.suppress(ConnectionError):
                    await conn.send_frame("report:request", {"requestId": msg.get("requestId"), "kinds": kinds})
        elif op in ("deliver", "cancel"):
            from sindri_console.domains.agents.socket import _commands_pipeline

            pipeline = _commands_pipeline()
            if pipeline is not None and hasattr(pipeline, "on_control") and conn.is_console:
                await pipeline.on_control(self.rt, conn, msg)

    async def _recheck_loop(self) -> None:
        """Every 60 s: revoked or expired agent keys are closed with 4401; connection counters are flushed."""
        from sindri_console.domains.agents import service

        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            conns = self.connections()
            for c in conns:
                key_id = c.principal.api_key_id
                if key_id is None:
                    continue
                try:
                    await self.rt.auth.authenticate_key_id(key_id, c.remote)
                except AuthFailure:
                    await c.close_with(4401, "Credential revoked")
                except Exception as exc:
                    log.warning("agent_recheck_failed", error=type(exc).__name__)
            try:
                await service.flush_counters(self.rt, conns)
            except Exception as exc:
                log.warning("agent_counter_flush_failed", error=type(exc).__name__)
