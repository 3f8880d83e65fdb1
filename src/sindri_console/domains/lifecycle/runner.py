"""The lifecycle job runner (10-core §6.4, §16.2): claims QUEUED jobs, runs the Sindri CLI, applies §6.2.

Every replica runs one. It claims at most `LIFECYCLE_MAX_CONCURRENCY` jobs at a time, right after a request
on this replica committed one (`kick`) and on the 2 s poll loop. A RUNNING job holds a 30 s lease renewed
every 10 s; a job whose lease expired was interrupted (its replica stopped) and the recovery loop fails it
and applies the failure row of §6.2. Nothing is retried automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.instances.removal import on_instance_removed
from sindri_console.domains.instances.state import (
    heartbeat_deadline,
    loss_threshold_seconds,
    transition,
    write_event,
)
from sindri_console.domains.lifecycle import repository as repo
from sindri_console.kit.cli_runner import (
    TAIL_BYTES,
    CliRunResult,
    SindriCli,
    backup_argv,
    build_cli_env,
    destroy_argv,
    resume_argv,
    run_cli,
    suspend_argv,
)
from sindri_console.kit.clock import utcnow
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Instance
from sindri_console.models.jobs import Backup, InstanceJob
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.lifecycle")

LEASE_RENEW_SECONDS = 10.0
POLL_SECONDS = 2.0
RECOVERY_SECONDS = 30.0
INTERRUPTED_ERROR = "Interrupted: the server running this job stopped"
CONFIG_NAME = "sindri.yaml"
ERROR_MAX_CHARS = 500

# §6.2: the transitional status an action owns and the rows its end applies.
TRANSITIONAL_OF = {"SUSPEND": "SUSPENDING", "RESUME": "RESUMING", "DESTROY": "DESTROYING"}
SUCCESS_STATUS_OF = {"SUSPEND": "SUSPENDED", "RESUME": "RUNNING", "DESTROY": "DESTROYED"}
_DONE_WORD = {"SUSPEND": "Suspended", "RESUME": "Resumed", "DESTROY": "Destroyed", "BACKUP": "Backup finished"}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass
class Outcome:
    """How a job ended: its final status and, for a failure, which step failed and why."""

    status: str  # SUCCEEDED | FAILED | TIMED_OUT
    exit_code: int | None = None
    error: str | None = None
    output: str | None = None
    failed_step: str | None = None  # BACKUP | TEARDOWN for DESTROY jobs
    backup_error: str | None = None
    backup_size: int | None = None


def workdir_of(data_dir: Path, instance_id: str) -> Path:
    return (data_dir / "instances" / instance_id).absolute()


def minimal_config(inst: Instance) -> str:
    """The minimal sindri.yaml of §6.4 for an instance without a successful deployment."""
    provider = inst.provider or ""
    doc: dict[str, Any] = {"version": "3.0", "name": inst.name, "deployment": {"provider": provider}}
    if inst.region:
        doc["providers"] = {provider: {"region": inst.region}}
    doc["extensions"] = {"active": list(inst.extensions or [])}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_config(workdir: Path, text: str) -> Path:
    """`<workdir>/sindri.yaml`, mode 0600, in a 0700 directory; never follows a planted symlink."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    path = workdir / CONFIG_NAME
    with contextlib.suppress(FileNotFoundError):
        if path.is_symlink():
            path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    return path


def last_stdout_line(result: CliRunResult) -> str | None:
    for line in reversed(result.stdout_tail.splitlines()):
        if line.strip():
            return line.strip()
    return None


def parse_size(result: CliRunResult) -> int | None:
    """`sizeBytes` of §6.7: the last non-empty output line when it is a decimal integer."""
    line = last_stdout_line(result)
    if line is not None and line.isascii() and line.isdigit() and len(line) <= 19:
        return int(line)
    return None


def sanitise(text: str, workdir: Path) -> str:
    """One line, no server path, bounded: what a job's `error` may say."""
    text = text.replace(str(workdir), ".")
    text = _CONTROL_CHARS.sub(" ", text).strip()
    return text[:ERROR_MAX_CHARS]


def failure_sentence(command: str, result: CliRunResult, timeout: int, workdir: Path) -> str:
    if result.start_error:
        return sanitise(result.start_error, workdir)
    if result.timed_out:
        return f"sindri {command} did not finish within {timeout} s and was stopped"
    code = result.exit_code
    if code is not None and code < 0:
        head = f"sindri {command} was killed by signal {-code}"
    else:
        head = f"sindri {command} exited with code {code}"
    detail = result.last_stderr_line
    return sanitise(f"{head}: {detail}" if detail else head, workdir)


def keep_tail(text: str) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    return text if len(raw) <= TAIL_BYTES else raw[-TAIL_BYTES:].decode("utf-8", "ignore")


async def _push_heartbeat_deadline(session: AsyncSession, instance_id: str, loss_seconds: float,
                                   now: datetime) -> None:
    """Row 20 measures from entering RUNNING: give a monitored agent a full threshold from now."""
    state = await session.get(AgentState, instance_id)
    if state is None or state.last_seen_at is None:
        return
    threshold = loss_threshold_seconds(loss_seconds, state.heartbeat_interval_seconds)
    state.heartbeat_deadline_at = heartbeat_deadline(state.last_seen_at, now, threshold)
    # A fresh RUNNING period: the loss loop watches it again (it skips rows already marked lost).
    state.heartbeat_lost = False
    state.heartbeat_lost_at = None
    state.updated_at = now


async def apply_job_end(rt: Runtime, session: AsyncSession, job: InstanceJob, outcome: Outcome,
                        now: datetime) -> None:
    """Backup row, instance status (§6.2 rows 7/8, 10/11, 13/14/15), events and active-job release.

    Runs in the transaction that moved the job out of RUNNING, so the job row and everything it implies
    commit together.
    """
    ok = outcome.status == "SUCCEEDED"
    action = job.action
    backup = await repo.backup_of_job(session, job.id)
    if backup is not None and backup.status in ("PENDING", "RUNNING"):
        if outcome.failed_step in (None, "BACKUP") and not ok:
            backup.status = "FAILED"
            backup.error = outcome.backup_error or outcome.error
            backup.completed_at = now
        elif outcome.failed_step == "TEARDOWN" or ok:
            backup.status = "SUCCEEDED"
            backup.location = f"~/.sindri/backups/{backup.label}.tar.gz"
            backup.size_bytes = outcome.backup_size
            backup.completed_at = now
    meta: dict[str, Any] = {"jobId": job.id, "action": action}
    verb = action.lower()
    if action in TRANSITIONAL_OF:
        source = TRANSITIONAL_OF[action]
        if ok:
            target = SUCCESS_STATUS_OF[action]
            extra = {"removed_at": now} if target == "DESTROYED" else {}
            changed = await transition(
                session, job.instance_id, allowed_from=(source,), to=target, reason=_DONE_WORD[action],
                bus_reason=verb, event_type=action, event_message=f"{_DONE_WORD[action]} (job {job.id})",
                event_metadata={"phase": "SUCCEEDED", **meta}, job_id=job.id, values=extra, now=now,
            )
            if changed is not None and target == "DESTROYED":
                await on_instance_removed(session, job.instance_id, "DESTROYED", now)
        else:
            # Rows 8, 11, 14: back to the status before; row 15: a teardown that failed leaves ERROR.
            target = "ERROR" if action == "DESTROY" and outcome.failed_step == "TEARDOWN" else job.previous_status
            label = {"FAILED": "failed", "TIMED_OUT": "timed out"}[outcome.status]
            if outcome.error == INTERRUPTED_ERROR:
                label = "was interrupted"
            reason = f"{action.capitalize()} {label}: {outcome.error}" if outcome.error else f"{action} {label}"
            await transition(
                session, job.instance_id, allowed_from=(source,), to=target, reason=reason, bus_reason=verb,
                event_type="ERROR", event_message=reason[:512],
                event_metadata={**meta, "error": outcome.error, "jobStatus": outcome.status,
                                **({"step": outcome.failed_step} if outcome.failed_step else {})},
                job_id=job.id, now=now,
            )
        if (SUCCESS_STATUS_OF[action] if ok else job.previous_status) == "RUNNING":
            current = await session.scalar(select(Instance.status).where(Instance.id == job.instance_id))
            if current == "RUNNING":
                await _push_heartbeat_deadline(session, job.instance_id, rt.settings.AGENT_HEARTBEAT_LOSS_SECONDS,
                                               now)
    else:  # BACKUP: the status is untouched (§6.1)
        ts = int(now.timestamp() * 1000)
        if ok:
            write_event(session, job.instance_id, "BACKUP", f"Backup '{backup.label if backup else ''}' finished",
                        {"phase": "SUCCEEDED", **meta, "label": backup.label if backup else None,
                         "sizeBytes": outcome.backup_size}, job_id=job.id, ts_ms=ts)
        else:
            write_event(session, job.instance_id, "ERROR", f"Backup failed: {outcome.error}"[:512],
                        {**meta, "error": outcome.error, "jobStatus": outcome.status}, job_id=job.id, ts_ms=ts)
    await repo.clear_active_job(session, job.instance_id, job.id)
    publish_after_commit(session, f"instance.{job.instance_id}.jobs",
                         {"instanceId": job.instance_id, "jobId": job.id, "action": action,
                          "status": outcome.status})


class JobRunner:
    """One per replica: claims jobs within the concurrency cap and runs each in its own task."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.owner = rt.replica_id
        self.cap = rt.settings.LIFECYCLE_MAX_CONCURRENCY
        self._running: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._claim_lock = asyncio.Lock()
        self._closed = False

    @property
    def running_job_ids(self) -> list[str]:
        return list(self._running)

    def _cli(self) -> SindriCli:
        from sindri_console.domains.version.service import cli_of

        return cli_of(self.rt)

    # ---- claiming ---------------------------------------------------------------------------------------

    def kick(self) -> None:
        """Claim now, in the background (called after a commit that queued jobs and when a slot frees)."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._claim_logged(), name="lifecycle-claim")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _claim_logged(self) -> None:
        try:
            await self.claim_and_start()
        except Exception as exc:  # the 2 s poll claims whatever this attempt could not
            log.warning("lifecycle_claim_failed", error=type(exc).__name__, detail=str(exc)[:200])

    async def claim_and_start(self) -> int:
        """Claim up to the free slots and start them; returns how many were started."""
        if self._closed:
            return 0
        async with self._claim_lock:
            free = self.cap - len(self._running)
            if free <= 0:
                return 0
            # A read first: the poll of every replica must not take the write lock when nothing is queued.
            async with self.rt.db.read() as s:
                if not await repo.any_queued(s):
                    return 0
            now = utcnow()
            async with self.rt.db.write() as s:
                jobs = await repo.claim_queued(s, self.rt.db.dialect, self.owner, free, now)
                for job in jobs:
                    if job.action == "DESTROY":
                        job.step = "BACKUP" if (job.params or {}).get("backup") else "TEARDOWN"
                    await s.execute(update(Backup).where(Backup.job_id == job.id, Backup.status == "PENDING")
                                    .values(status="RUNNING"))
                    publish_after_commit(s, f"instance.{job.instance_id}.jobs",
                                         {"instanceId": job.instance_id, "jobId": job.id, "action": job.action,
                                          "status": "RUNNING"})
            for job in jobs:
                task = asyncio.get_running_loop().create_task(self._run(job.id), name=f"lifecycle-job-{job.id}")
                self._running[job.id] = task
            return len(jobs)

    # ---- running ----------------------------------------------------------------------------------------

    async def _run(self, job_id: str) -> None:
        try:
            await self._execute(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("lifecycle_job_crashed", job_id=job_id, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await self._finish(job_id, Outcome("FAILED", error="The job failed inside the console; "
                                                   "see the server log"))
        finally:
            self._running.pop(job_id, None)
            self.kick()

    async def _renew(self, job_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            async with self.rt.db.write() as s:
                held = await repo.renew_lease(s, job_id, self.owner, utcnow())
            if not held:
                lost.set()
                return

    async def _execute(self, job_id: str) -> None:
        settings = self.rt.settings
        async with self.rt.db.read() as s:
            job = await s.get(InstanceJob, job_id)
            inst = await s.get(Instance, job.instance_id) if job is not None else None
            backup = await repo.backup_of_job(s, job_id)
            deployed_yaml = await repo.latest_deployment_yaml(s, job.instance_id) if job is not None else None
        if job is None or inst is None or job.status != "RUNNING" or job.lease_owner != self.owner:
            return
        workdir = workdir_of(settings.data_dir, inst.id)
        try:
            cfg = str(await asyncio.to_thread(write_config, workdir, deployed_yaml or minimal_config(inst)))
        except OSError as exc:
            log.error("lifecycle_workdir_failed", job_id=job_id, error=type(exc).__name__)
            await self._finish(job_id, Outcome("FAILED", error="The working directory of the instance could not "
                                               "be prepared (check DATA_DIR permissions)",
                                               failed_step="BACKUP" if backup is not None else None))
            return
        facts = self._cli().cached_facts()
        bin_path = facts.bin_path if facts is not None and facts.available else self._cli().locate()
        env = build_cli_env({"DOCKER_HOST": inst.docker_host} if inst.docker_host else {})
        timeout = settings.SINDRI_CLI_TIMEOUT_SECONDS

        lost = asyncio.Event()
        renewer = asyncio.get_running_loop().create_task(self._renew(job_id, lost))

        async def run(command: str, argv: list[str]) -> CliRunResult | None:
            """One CLI call; None when the lease was lost meanwhile (the job is no longer ours)."""
            call = asyncio.get_running_loop().create_task(
                run_cli(bin_path, argv, cwd=workdir, env=env, timeout_seconds=timeout))
            waiter = asyncio.get_running_loop().create_task(lost.wait())
            try:
                await asyncio.wait({call, waiter}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Halted: the CLI call is its own task and must be cancelled too (run_cli then kills it).
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                raise
            finally:
                waiter.cancel()
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                return None
            return call.result()

        def ended(result: CliRunResult, command: str) -> Outcome:
            status = "TIMED_OUT" if result.timed_out else "FAILED"
            return Outcome(status, exit_code=result.exit_code,
                           error=failure_sentence(command, result, timeout, workdir), output=result.output_tail)

        try:
            outcome: Outcome
            if job.action in ("SUSPEND", "RESUME"):
                command, argv = (("stop", suspend_argv(cfg)) if job.action == "SUSPEND"
                                 else ("start", resume_argv(cfg)))
                result = await run(command, argv)
                if result is None:
                    return
                outcome = (Outcome("SUCCEEDED", exit_code=result.exit_code, output=result.output_tail)
                           if result.succeeded else ended(result, command))
            elif job.action == "BACKUP":
                if backup is None:
                    outcome = Outcome("FAILED", error="The backup record of this job is missing")
                else:
                    result = await run("connect", backup_argv(cfg, backup.label, backup.profile,
                                                              backup.compression_level))
                    if result is None:
                        return
                    if result.succeeded:
                        outcome = Outcome("SUCCEEDED", exit_code=0, output=result.output_tail,
                                          backup_size=parse_size(result))
                    else:
                        outcome = ended(result, "connect")
                        outcome.failed_step = "BACKUP"
            else:  # DESTROY, optionally preceded by the backup step (§6.7)
                output = ""
                size: int | None = None
                if backup is not None:
                    result = await run("connect", backup_argv(cfg, backup.label, backup.profile,
                                                              backup.compression_level))
                    if result is None:
                        return
                    if not result.succeeded:
                        outcome = ended(result, "connect")
                        outcome.failed_step = "BACKUP"
                        await self._finish(job_id, outcome)
                        return
                    size = parse_size(result)
                    output = result.output_tail
                    async with self.rt.db.write() as s:
                        if not await repo.set_step(s, job_id, self.owner, "TEARDOWN"):
                            return
                        await s.execute(update(Backup).where(Backup.id == backup.id).values(
                            status="SUCCEEDED", location=f"~/.sindri/backups/{backup.label}.tar.gz",
                            size_bytes=size, completed_at=utcnow()))
                result = await run("destroy", destroy_argv(cfg))
                if result is None:
                    return
                combined = keep_tail(output + result.output_tail) if output else result.output_tail
                if result.succeeded:
                    outcome = Outcome("SUCCEEDED", exit_code=0, output=combined, backup_size=size)
                else:
                    outcome = ended(result, "destroy")
                    outcome.output = combined
                    outcome.failed_step = "TEARDOWN"
            await self._finish(job_id, outcome)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer

    async def _finish(self, job_id: str, outcome: Outcome) -> bool:
        now = utcnow()
        async with self.rt.db.write() as s:
            if not await repo.finish_job(s, job_id, expected_owner=self.owner, status=outcome.status, now=now,
                                         exit_code=outcome.exit_code, error=outcome.error,
                                         output=outcome.output):
                return False
            job = await s.get(InstanceJob, job_id, populate_existing=True)
            assert job is not None
            await apply_job_end(self.rt, s, job, outcome, now)
        log.info("lifecycle_job_finished", job_id=job_id, action=job.action, status=outcome.status)
        return True

    # ---- recovery --------------------------------------------------------------------------------------

    async def recover_interrupted(self) -> int:
        """Fail RUNNING jobs whose lease expired and apply their failure rows; returns how many."""
        now = utcnow()
        async with self.rt.db.read() as s:
            ids = await repo.expired_running_jobs(s, now)
        recovered = 0
        for job_id in ids:
            if await self._interrupt(job_id, owner=None, now=now):
                recovered += 1
                log.warning("lifecycle_job_interrupted", job_id=job_id)
        return recovered

    async def _interrupt(self, job_id: str, *, owner: str | None, now: datetime) -> bool:
        """RUNNING → FAILED "Interrupted: …" plus the failure row of §6.2, in one transaction.

        `owner` set: this replica gives up its own job (shutdown). `owner` None: only a job whose lease expired.
        """
        async with self.rt.db.write() as s:
            job = await s.get(InstanceJob, job_id)
            if job is None:
                return False
            step = job.step
            if not await repo.finish_job(s, job_id, expected_owner=owner, status="FAILED", now=now,
                                         exit_code=job.exit_code, error=INTERRUPTED_ERROR, output=None,
                                         lease_expired_before=None if owner is not None else now):
                return False
            await s.refresh(job)
            failed_step = step if job.action == "DESTROY" else ("BACKUP" if job.action == "BACKUP" else None)
            await apply_job_end(self.rt, s, job, Outcome("FAILED", error=INTERRUPTED_ERROR, failed_step=failed_step),
                                now)
        return True

    async def halt(self) -> list[str]:
        """Stop claiming and kill the running CLI processes, leaving the job rows as they are.

        This is what a crash leaves behind: the rows stay RUNNING until their leases expire and the recovery
        loop (of any replica) fails them. Returns the ids of the jobs that were running.
        """
        self._closed = True
        job_ids = list(self._running)
        tasks = [*self._running.values(), *self._background]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()
        return job_ids

    async def stop(self) -> None:
        """Graceful shutdown: halt, then record the interruption of this replica's jobs at once.

        The same failure the recovery loop would apply after the lease expired, without leaving the instances
        in their transitional status for another 30 s.
        """
        for job_id in await self.halt():
            try:
                await self._interrupt(job_id, owner=self.owner, now=utcnow())
            except Exception as exc:  # the recovery loop of the next replica does it instead
                log.warning("lifecycle_interrupt_failed", job_id=job_id, error=type(exc).__name__)
