"""The deployment job runner (20-ops §7.7).

Every replica runs one runner: each tick (every 2 s, or when `ops.wake.deploy` arrives) it marks jobs
whose lease expired as interrupted, then claims the oldest PENDING deployments while it has fewer than
`DEPLOY_MAX_CONCURRENCY` jobs. A claimed job holds a 60 s lease renewed every 10 s; the tick itself
never waits for a job, so the loop's own timeout never cuts a deployment short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.deployments import repository as repo
from sindri_console.domains.deployments import vault
from sindri_console.domains.deployments.service import CLI_MISSING_FOR_DEPLOY
from sindri_console.domains.deployments.sindri_yaml import ParsedYaml, parse_sindri_yaml, resolved_yaml
from sindri_console.domains.identity.keys import mint_agent_key
from sindri_console.domains.instances.state import transition
from sindri_console.domains.logs.service import LogLine, insert_entries
from sindri_console.kit.cli_runner import PROVIDER_CREDENTIAL_NAMES, build_cli_env, deploy_argv, run_cli
from sindri_console.kit.clock import utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.models.deployments import Deployment
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.deployments")

LOOP_NAME = "deployments"
TICK_SECONDS = 2.0
LEASE_SECONDS = 60.0
RENEW_SECONDS = 10.0
FLUSH_SECONDS = 0.25
MAX_LOG_ROWS = 20_000
TRUNCATED_MARK = "… output truncated\n"
INTERRUPTED = ("Interrupted: the server running this deployment stopped; the provider may hold partial "
               "resources")
CONFIG_NAME = "sindri.yaml"
STOP_WAIT_SECONDS = 30.0
MAX_ERROR_CHARS = 2048


@dataclass
class Outcome:
    succeeded: bool
    exit_code: int | None
    error: str | None


class LogSink:
    """Collects a job's lines and writes them every 250 ms: appended to `deployments.logs` (capped at
    DEPLOY_LOG_MAX_BYTES with a final truncation line) and stored as log rows (source BUILD for CLI
    output, SYSTEM for the server's own lines; CLI rows stop after 20 000 with one WARN row)."""

    def __init__(self, rt: Runtime, deployment: Deployment) -> None:
        self.rt = rt
        self.deployment_id = deployment.id
        self.instance_id = deployment.instance_id
        self.cap = rt.settings.DEPLOY_LOG_MAX_BYTES
        self.stored_bytes = int(deployment.logs_bytes or 0)
        self.truncated = bool(deployment.logs_truncated)
        self.cli_rows = 0
        self.dropped_rows = 0
        self._text: list[str] = []
        self._text_bytes = 0
        self._rows: list[LogLine] = []
        self._mark_pending = False
        self._lock = asyncio.Lock()

    def _append_text(self, line: str) -> None:
        if self.truncated:
            return
        piece = line + "\n"
        size = len(piece.encode("utf-8", "surrogatepass"))
        room = self.cap - len(TRUNCATED_MARK.encode()) - self.stored_bytes - self._text_bytes
        if size > room:
            self.truncated = True
            self._mark_pending = True
            return
        self._text.append(piece)
        self._text_bytes += size

    def cli_line(self, stream: str, line: str) -> None:
        line = line.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        self._append_text(line)
        if self.cli_rows >= MAX_LOG_ROWS:
            self.dropped_rows += 1
            return
        self.cli_rows += 1
        self._rows.append(LogLine(instance_id=self.instance_id, message=line,
                                  level="WARN" if stream == "stderr" else "INFO", source="BUILD",
                                  deployment_id=self.deployment_id))

    def system_line(self, message: str, level: str = "INFO") -> None:
        self._append_text(message)
        self._rows.append(LogLine(instance_id=self.instance_id, message=message, level=level, source="SYSTEM",
                                  deployment_id=self.deployment_id))

    def finish_rows(self) -> None:
        if self.dropped_rows:
            self._rows.append(LogLine(
                instance_id=self.instance_id, level="WARN", source="SYSTEM", deployment_id=self.deployment_id,
                message=f"{self.dropped_rows} more output lines were not stored as log entries "
                        f"(limit {MAX_LOG_ROWS} per deployment)"))
            self.dropped_rows = 0

    async def flush(self) -> None:
        async with self._lock:
            if not (self._text or self._rows or self._mark_pending):
                return
            text = "".join(self._text)
            size = self._text_bytes
            if self._mark_pending:
                text += TRUNCATED_MARK
                size += len(TRUNCATED_MARK.encode())
            rows, mark = self._rows, self._mark_pending
            self._text, self._text_bytes, self._rows, self._mark_pending = [], 0, [], False
            # counted before the write: lines arriving meanwhile must see this batch's size against the cap
            self.stored_bytes += size
            try:
                async with self.rt.db.write() as s:
                    await repo.append_logs(s, self.deployment_id, text, size, mark)
                    await insert_entries(s, rows)
            except Exception as exc:  # a lost batch of output must not end the deployment
                self.stored_bytes -= size
                log.warning("deployment_log_flush_failed", deployment=self.deployment_id,
                            error=type(exc).__name__)

    async def run_flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            # shielded: stopping the flusher must not drop the batch it already took
            await asyncio.shield(self.flush())


class DeploymentRunner:
    """One per process (service `rt.services["deployments"]`)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self._claim_lock = asyncio.Lock()

    # ---- loop tick ------------------------------------------------------------------------------------

    async def tick(self) -> dict[str, int]:
        """Sweep expired leases, then claim up to the free concurrency; returns counts."""
        interrupted = await self.sweep_expired()
        started = 0
        async with self._claim_lock:
            while len(self.jobs) < self.rt.settings.DEPLOY_MAX_CONCURRENCY:
                # an idle tick only reads: no write lock every 2 s on SQLite
                async with self.rt.db.read() as s:
                    if not await repo.has_pending(s):
                        break
                async with self.rt.db.write() as s:
                    deployment = await repo.claim_next(s, self.rt.db.dialect, self.rt.replica_id, utcnow(),
                                                       LEASE_SECONDS)
                    if deployment is not None:
                        publish_after_commit(s, f"deployment.{deployment.id}", {
                            "deploymentId": deployment.id, "instanceId": deployment.instance_id,
                            "status": "IN_PROGRESS"})
                if deployment is None:
                    break
                task = asyncio.create_task(self._job(deployment), name=f"deployment-{deployment.id}")
                self.jobs[deployment.id] = task
                task.add_done_callback(self._forget(deployment.id))
                started += 1
        return {"started": started, "interrupted": interrupted} if (started or interrupted) else {}

    def _forget(self, deployment_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self.jobs.pop(deployment_id, None)

        return done

    async def sweep_expired(self) -> int:
        """IN_PROGRESS deployments whose lease ran out (their replica died) end FAILED; instance → ERROR."""
        now = utcnow()
        async with self.rt.db.read() as s:
            ids = await repo.expired_leases(s, now)
        count = 0
        for deployment_id in ids:
            if await self._end(deployment_id, Outcome(False, None, INTERRUPTED), claimed_by=None,
                               extra_where_expired=True):
                count += 1
                async with self.rt.db.read() as s:
                    deployment = await s.get(Deployment, deployment_id)
                if deployment is not None:
                    sink = LogSink(self.rt, deployment)
                    sink.system_line(f"Deployment failed: {INTERRUPTED}", "ERROR")
                    await sink.flush()
        return count

    async def drain(self) -> None:
        """Wait for every running job of this replica (tests, shutdown)."""
        while self.jobs:
            await asyncio.gather(*list(self.jobs.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Shutdown: stop the CLI processes; each job records the interruption before it exits."""
        for task in list(self.jobs.values()):
            task.cancel()
        # bounded: a database that no longer answers must not hold the shutdown; the lease covers it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), STOP_WAIT_SECONDS)

    # ---- one job --------------------------------------------------------------------------------------

    async def _job(self, deployment: Deployment) -> None:
        sink = LogSink(self.rt, deployment)
        workdir = self.rt.settings.data_dir / "deployments" / deployment.id
        lease_lost = asyncio.Event()
        work = asyncio.create_task(self._execute(deployment, sink, workdir))
        renewer = asyncio.create_task(self._renew(deployment.id, work, lease_lost))
        flusher = asyncio.create_task(sink.run_flusher())
        outcome: Outcome | None
        try:
            outcome = await work
        except asyncio.CancelledError:
            if not lease_lost.is_set():
                # the server is stopping: record it now instead of waiting for the lease to expire
                outcome = Outcome(False, None, INTERRUPTED)
                sink.system_line(f"Deployment failed: {INTERRUPTED}", "ERROR")
                await asyncio.shield(self._close(deployment, sink, outcome, renewer, flusher, workdir))
                raise
            outcome = None
        except Exception as exc:
            log.exception("deployment_job_crashed", deployment=deployment.id)
            outcome = Outcome(False, None, f"The deployment stopped on an internal error ({type(exc).__name__})")
            sink.system_line(f"Deployment failed: {outcome.error}", "ERROR")
        await self._close(deployment, sink, outcome, renewer, flusher, workdir)

    async def _close(self, deployment: Deployment, sink: LogSink, outcome: Outcome | None,
                     renewer: asyncio.Task[None], flusher: asyncio.Task[None], workdir: Path) -> None:
        for task in (renewer, flusher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        sink.finish_rows()
        await sink.flush()
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
        if outcome is not None:
            await self._end(deployment.id, outcome, claimed_by=self.rt.replica_id)

    async def _renew(self, deployment_id: str, work: asyncio.Task[Outcome], lease_lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                async with self.rt.db.write() as s:
                    held = await repo.renew_lease(s, deployment_id, self.rt.replica_id,
                                                  utcnow() + timedelta(seconds=LEASE_SECONDS))
            except Exception as exc:  # a missed renewal is retried; the lease has 50 s of slack
                log.warning("deployment_lease_renew_failed", deployment=deployment_id, error=type(exc).__name__)
                continue
            if not held:
                # another replica declared this job interrupted: stop the CLI, record nothing more
                lease_lost.set()
                work.cancel()
                return

    async def _execute(self, d: Deployment, sink: LogSink, workdir: Path) -> Outcome:
        settings = self.rt.settings
        region_text = d.region or "none"
        sink.system_line(f"Deployment {d.id} started (provider {d.provider}, region {region_text})")
        try:
            async with self.rt.db.write() as s:
                await repo.revoke_deployment_agent_keys(s, d.instance_id, utcnow())
                _, agent_key = await mint_agent_key(s, instance_id=d.instance_id,
                                                    name=f"{repo.AGENT_KEY_NAME_PREFIX}{d.id}"[:100],
                                                    expires_at=None, created_by=d.initiated_by or None)
                secret_values = await vault.resolve_values(s, settings, d.instance_id, d.secret_names or [])
                credentials = await vault.global_values(s, settings, PROVIDER_CREDENTIAL_NAMES)
        except (vault.VaultUnreadable, ApiError) as exc:
            return self._failed(sink, None, str(exc) if isinstance(exc, vault.VaultUnreadable) else exc.message)

        from sindri_console.domains.version.service import cli_of

        bin_path = cli_of(self.rt).locate()
        if bin_path is None:
            return self._failed(sink, None, CLI_MISSING_FOR_DEPLOY)

        console_vars = {
            "SINDRI_CONSOLE_API_KEY": agent_key,
            "SINDRI_INSTANCE_ID": d.instance_id,
            "SINDRI_INSTANCE_NAME": d.name,
            "SINDRI_PROVIDER": d.provider,
        }
        if settings.SINDRI_CONSOLE_PUBLIC_URL:
            console_vars["SINDRI_CONSOLE_URL"] = settings.SINDRI_CONSOLE_PUBLIC_URL
        if d.region:
            console_vars["SINDRI_REGION"] = d.region
        parsed = parse_sindri_yaml(d.yaml_content)
        if not isinstance(parsed, ParsedYaml):
            return self._failed(sink, None, "The stored sindri.yaml no longer parses")
        declared = [e.get("name") for e in (parsed.document.get("secrets") or []) if isinstance(e, dict)]
        unresolved = [n for n in declared if isinstance(n, str) and n not in secret_values]
        text = resolved_yaml(parsed, name=d.name, provider=d.provider,
                             add_secret_names=[*secret_values, *console_vars], drop_secret_names=unresolved)
        write_config(workdir, text)

        extra = {**secret_values, **console_vars}
        if d.docker_host:
            extra["DOCKER_HOST"] = d.docker_host
        env = build_cli_env(extra, vault_lookup=credentials.get)
        sink.system_line(f"Running: sindri deploy --config {CONFIG_NAME}")
        started = time.monotonic()

        async def on_line(stream: str, line: str) -> None:
            sink.cli_line(stream, line)

        result = await run_cli(
            bin_path, deploy_argv(CONFIG_NAME), cwd=workdir, env=env,
            timeout_seconds=settings.DEPLOY_TIMEOUT_SECONDS,
            secrets_to_redact=[agent_key, *secret_values.values()], on_line=on_line, mask="****",
        )
        elapsed = round(time.monotonic() - started, 1)
        if result.start_error is not None:
            return self._failed(sink, None, result.start_error)
        sink.system_line(f"sindri exited with code {result.exit_code} after {elapsed}s")
        if result.timed_out:
            return self._failed(sink, result.exit_code, f"sindri deploy did not finish within "
                                                        f"{settings.DEPLOY_TIMEOUT_SECONDS} s and was stopped")
        if result.exit_code != 0:
            reason = f"sindri deploy exited with code {result.exit_code}"
            if result.last_stderr_line:
                reason += f": {result.last_stderr_line[:500]}"
            return self._failed(sink, result.exit_code, reason)
        sink.system_line("Deployment succeeded")
        return Outcome(True, 0, None)

    @staticmethod
    def _failed(sink: LogSink, exit_code: int | None, reason: str) -> Outcome:
        reason = reason.replace("\x00", "\ufffd")[:MAX_ERROR_CHARS]
        sink.system_line(f"Deployment failed: {reason}", "ERROR")
        return Outcome(False, exit_code, reason)

    async def _end(self, deployment_id: str, outcome: Outcome, *, claimed_by: str | None,
                   extra_where_expired: bool = False) -> bool:
        """Finish an IN_PROGRESS deployment and move its instance (rows 4 / 5) in one transaction."""
        now = utcnow()
        status = "SUCCEEDED" if outcome.succeeded else "FAILED"
        async with self.rt.db.write() as s:
            deployment = await s.get(Deployment, deployment_id)
            if deployment is None or deployment.status != "IN_PROGRESS":
                return False
            ended = await repo.finish(s, deployment_id, from_status="IN_PROGRESS", claimed_by=claimed_by,
                                      values={"status": status, "completed_at": now, "exit_code": outcome.exit_code,
                                              "error": outcome.error, "lease_expires_at": None},
                                      lease_expired_before=now if extra_where_expired else None)
            if not ended:
                return False
            meta: dict[str, Any] = {"deploymentId": deployment_id}
            if outcome.succeeded:
                await transition(s, deployment.instance_id, allowed_from=("DEPLOYING",), to="RUNNING",
                                 reason="Deployment succeeded", bus_reason="deploy", event_type="DEPLOY",
                                 event_message=f"Deployment {deployment_id} succeeded",
                                 event_metadata={**meta, "phase": "SUCCEEDED"}, now=now)
            else:
                await transition(s, deployment.instance_id, allowed_from=("DEPLOYING",), to="ERROR",
                                 reason=f"Deployment failed: {outcome.error}"[:512], bus_reason="deploy",
                                 event_type="ERROR", event_message=f"Deployment {deployment_id} failed",
                                 event_metadata={**meta, "phase": "FAILED", "error": outcome.error}, now=now)
            payload: dict[str, Any] = {"deploymentId": deployment_id, "instanceId": deployment.instance_id,
                                       "status": status}
            if outcome.exit_code is not None:
                payload["exitCode"] = outcome.exit_code
            if outcome.error is not None:
                payload["error"] = outcome.error
            publish_after_commit(s, f"deployment.{deployment_id}", payload)
        if extra_where_expired:
            log.warning("deployment_interrupted", deployment=deployment_id)
        return True


def write_config(workdir: Path, text: str) -> None:
    """`<workdir>/sindri.yaml`, directory 0700 and file 0600 (it names the secrets the CLI receives)."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(workdir, 0o700)
    config = workdir / CONFIG_NAME
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(config, 0o600)


def runner_of(rt: Runtime) -> DeploymentRunner:
    runner = rt.services.get("deployments")
    if runner is None:
        runner = DeploymentRunner(rt)
        rt.services["deployments"] = runner
    return runner  # type: ignore[no-any-return]
