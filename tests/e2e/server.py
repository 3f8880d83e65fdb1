"""Start a real `sindri-console serve` on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    admin_key: str | None
    env: dict[str, str]
    log_path: Path

    def stop(self, sig_timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(sig_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """A new empty database on the backend under test (SQLite file, or a new PostgreSQL database)."""
    base = os.environ.get("TEST_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        yield f"sqlite+aiosqlite:///{tmp_path / f'e2e-{uuid.uuid4().hex[:8]}.db'}"
        return
    root = base.rpartition("/")[0]
    name = f"sc_e2e_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        eng = create_async_engine(f"{root}/test", isolation_level="AUTOCOMMIT")
        async with eng.connect() as c:
            await c.execute(text(sql))
        await eng.dispose()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{root}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def start_server(tmp_path: Path, database_url: str, *, port: int | None = None, extra_env: dict[str, str] | None = None,
                 expect_admin_key: bool = True, timeout: float = 30) -> Server:
    """Run `sindri-console serve`; returns once /health answers. Reads the first-start ADMIN key from stdout."""
    port = port or free_port()
    data_dir = tmp_path / f"data-{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "warn",
    }
    env.pop("REDIS_URL", None)
    if os.environ.get("TEST_REDIS_URL"):
        env["REDIS_URL"] = os.environ["TEST_REDIS_URL"]
    env.update(extra_env or {})
    log_path = tmp_path / f"server-{port}.log"
    log = open(log_path, "w")  # noqa: SIM115 - owned by the process for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "sindri_console.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    admin_key = None
    if expect_admin_key:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        admin_key = line or None
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code in (200, 503):
                return Server(url, proc, admin_key, env, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
