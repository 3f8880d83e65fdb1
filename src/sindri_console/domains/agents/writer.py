"""The per-replica ingest writer: heartbeat, metrics and contact frames of every connection are
collected for a few tens of milliseconds and committed together (never one transaction per frame).
A C frame with `id` is acknowledged only after the batch that holds it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.agents import repository as repo
from sindri_console.domains.agents.ingest import HeartbeatValues, heartbeat_push, metrics_push
from sindri_console.domains.agents.service import (
    Contact,
    close_many,
    heartbeat_values,
    identify_many,
    record_contact,
)
from sindri_console.domains.metrics.ingest import MetricSample, store_samples
from sindri_console.kit.clock import ms_to_iso, to_iso, utcnow

if TYPE_CHECKING:
    from sindri_console.domains.agents.socket import AgentSocket
    from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.agents.writer")

BATCH_WINDOW_SECONDS = 0.05
MAX_BATCH = 1000
QUEUE_LIMIT = 20_000
SLOW_BATCH_SECONDS = 0.5


@dataclass
class Job:
    conn: AgentSocket
    kind: str  # "identify" | "heartbeat" | "metrics" | "contact" | "close"
    received: datetime
    heartbeat: HeartbeatValues | None = None
    sample: MetricSample | None = None
    frame_id: str | None = None
    done: asyncio.Future[Any] | None = None  # "ok" | "duplicate" | Identified; an exception when the batch failed
    extra: dict[str, Any] = field(default_factory=dict)


class IngestWriter:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.frames = 0
        self.phases: dict[str, float] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="agent-ingest-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self.drain()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None

    async def drain(self) -> None:
        """Wait (at most 10 s) until every queued job has been committed or failed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.queue.join()

    async def submit(self, job: Job, *, wait: bool) -> Any:
        """Queue a job; with `wait`, return once its batch committed (raises when it failed)."""
        if wait:
            job.done = asyncio.get_running_loop().create_future()
        job.conn.pending_jobs += 1
        job.conn.idle.clear()
        await self.queue.put(job)  # a full queue slows the sockets down (TCP back-pressure), never drops
        if job.done is not None:
            return await job.done
        return None

    async def _run(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            try:
                await asyncio.sleep(BATCH_WINDOW_SECONDS)
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self.queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                await self._commit_safely(batch)
            finally:
                for _ in batch:
                    self.queue.task_done()

    async def _commit_safely(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        try:
            results = await self._commit(batch)
            elapsed = time.perf_counter() - started
            if elapsed > SLOW_BATCH_SECONDS:
                log.warning("ingest_batch_slow", frames=len(batch), seconds=round(elapsed, 3),
                            queued=self.queue.qsize(), phases=self.phases)
        except Exception as exc:
            if len(batch) == 1:
                log.warning("ingest_failed", instance_id=batch[0].conn.instance_id, kind=batch[0].kind,
                            error=type(exc).__name__, detail=str(exc)[:200])
                self._finish(batch, exc=exc)
                return
            # one bad frame (an instance deleted meanwhile, …) must not lose the others: retry one by one
            for job in batch:
                await self._commit_safely([job])
            return
        self._finish(batch, results=results)

    def _finish(self, batch: list[Job], *, results: dict[int, Any] | None = None,
                exc: Exception | None = None) -> None:
        for i, job in enumerate(batch):
            job.conn.pending_jobs -= 1
            if job.conn.pending_jobs <= 0:
                job.conn.idle.set()
            if job.done is not None and not job.done.done():
                if exc is not None:
                    job.done.set_exception(exc)
                else:
                    job.done.set_result((results or {}).get(i, "ok"))
        self.batches += 1
        self.frames += len(batch)

    async def _commit(self, batch: list[Job]) -> dict[int, Any]:
        rt = self.rt
        results: dict[int, Any] = {}
        mark = time.perf_counter()
        phases: dict[str, float] = {}

        def lap(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            phases[name] = round(now - mark, 3)
            mark = now

        self.phases = phases
        async with rt.db.write() as s:
            idents = [(i, j) for i, j in enumerate(batch) if j.kind == "identify"]
            if idents:
                done = await identify_many(s, rt, [(j.conn, j.extra["instance_id"]) for _, j in idents])
                for (i, _), ident in zip(idents, done, strict=True):
                    results[i] = ident
                await s.flush()
            keyed = [(j.conn.instance_id, j.frame_id) for j in batch if j.frame_id]
            seen = await repo.existing_receipts(s, keyed)  # type: ignore[arg-type]
            fresh_keys: list[tuple[str, str]] = []
            contacts: dict[str, Contact] = {}
            samples: list[MetricSample] = []
            heartbeats: list[dict[str, Any]] = []
            for i, job in enumerate(batch):
                iid = job.conn.instance_id
                if job.kind in ("identify", "close") or iid is None:
                    continue
                if job.frame_id:
                    key = (iid, job.frame_id)
                    if key in seen:
                        results[i] = "duplicate"
                        continue
                    seen.add(key)
                    fresh_keys.append(key)
                c = contacts.get(iid)
                if c is None or c.at <= job.received:
                    prev_hb = c.heartbeat if c else None
                    prev_rx = c.heartbeat_received if c else None
                    c = Contact(job.conn, job.received, prev_hb, prev_rx)
                    contacts[iid] = c
                if job.kind == "heartbeat" and job.heartbeat is not None:
                    hb = job.heartbeat
                    heartbeats.append(heartbeat_values(iid, hb, job.received))
                    c.heartbeat, c.heartbeat_received = hb, job.received
                    publish_after_commit(s, f"instance.{iid}.heartbeat",
                                         heartbeat_push(iid, hb, to_iso(job.received) or "", to_iso(hb.timestamp) or ""))
                elif job.kind == "metrics" and job.sample is not None:
                    samples.append(job.sample)
            lap("prepare")
            if samples:
                stored = await store_samples(s, rt.db.dialect, samples,
                                             raw_retention_days=rt.settings.METRICS_RAW_RETENTION_DAYS)
                for smp in stored:
                    publish_after_commit(s, f"instance.{smp.instance_id}.metrics",
                                         metrics_push(smp, ms_to_iso(smp.ts_ms) or ""))
            lap("metrics")
            await repo.insert_heartbeats(s, heartbeats)
            lap("heartbeats")
            if contacts:
                await record_contact(s, rt, contacts)
            lap("contact")
            await repo.insert_receipts(s, rt.db.dialect, fresh_keys, utcnow())
            # closes last: frames that arrived before a close are applied before it
            closings = [j.extra["closing"] for j in batch if j.kind == "close"]
            if closings:
                await close_many(s, rt, closings)
            lap("close")
        lap("commit")
        return results
