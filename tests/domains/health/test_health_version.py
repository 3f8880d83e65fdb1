"""`/health` and `/api/v1/version` (10-core §1, §2)."""

from __future__ import annotations

import stat

import pytest

from sindri_console.app import create_app


async def test_health_ok_and_head(console):
    r = await console.client.get("/health")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] in ("ok", "degraded")
    assert body["checks"]["database"]["status"] == "ok"
    assert isinstance(body["checks"]["database"]["latencyMs"], float)
    assert body["checks"]["database"]["dialect"] == console.rt.db.dialect.name
    if console.rt.settings.REDIS_URL:
        assert body["checks"]["redis"]["status"] in ("ok", "slow")
    else:
        assert body["checks"]["redis"] == {"status": "disabled", "latencyMs": None}
    assert isinstance(body["uptime"], float) and isinstance(body["totalLatencyMs"], float)
    r = await console.client.head("/health")
    assert r.status_code == 200 and r.content == b""


async def test_health_degraded_when_redis_is_down(make_settings):
    import httpx

    settings = make_settings(REDIS_URL="redis://127.0.0.1:1/0")
    app = create_app(settings)
    rt = app.state.runtime
    # the bus is not started (its reader would retry forever against the closed port); only the probe is needed
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/health")
    await rt.db.dispose()
    body = r.json()
    assert r.status_code == 200 and body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "error"
    assert body["checks"]["redis"]["error"] in ("unreachable", "timeout")


async def test_health_down_without_database(make_settings):
    import httpx

    settings = make_settings(DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none", HEALTH_DB_TIMEOUT_MS=1500)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/health")
    body = r.json()
    assert r.status_code == 503 and body["status"] == "down"
    assert body["checks"]["database"]["status"] == "error"
    assert "127.0.0.1" not in r.text and "asyncpg" not in r.text


@pytest.fixture
def fake_cli(tmp_path):
    log = tmp_path / "calls.log"
    script = tmp_path / "sindri"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        'if [ "$1" = "version" ]; then\n'
        '  echo \'{"version":"3.4.1","commit":"abc1234","build_date":"2026-10-01",'
        '"target":"x86_64-unknown-linux-gnu"}\'\n'
        "fi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


@pytest.fixture
def settings_overrides(request, fake_cli):
    if request.node.get_closest_marker("fake_cli"):
        return {"SINDRI_BIN_PATH": str(fake_cli[0])}
    return {}


@pytest.mark.fake_cli
async def test_version_with_cli(console, fake_cli):
    _, v = await console.user("VIEWER")
    for _ in range(10):
        r = await console.client.get("/api/v1/version", headers=console.auth(v))
        assert r.status_code == 200
    body = r.json()
    assert body["apiVersion"] == "v1" and body["cliAvailable"] is True
    assert body["sindriCli"] == "3.4.1" and body["cliCommit"] == "abc1234"
    assert body["cliTarget"] == "x86_64-unknown-linux-gnu"
    assert body["minInstanceVersion"] == "3.4.0" and body["minInstanceVersionSource"] == "CLI"
    assert body["cliResolvedAt"].endswith("Z")
    calls = fake_cli[1].read_text().splitlines()
    assert sum(1 for c in calls if c.startswith("version")) == 1


async def test_version_without_cli(console):
    _, v = await console.user("VIEWER")
    r = await console.client.get("/api/v1/version", headers=console.auth(v))
    body = r.json()
    assert body["cliAvailable"] is False and body["sindriCli"] is None and body["minInstanceVersion"] is None
    assert (await console.client.get("/api/v1/version")).status_code == 401
    assert (await console.client.get("/api/v1/version", headers=console.auth(console.bootstrap_key))
            ).status_code == 403


async def test_min_version_from_env(console):
    console.rt.settings.SINDRI_MIN_INSTANCE_VERSION = "3.2.0"
    _, v = await console.user("VIEWER")
    body = (await console.client.get("/api/v1/version", headers=console.auth(v))).json()
    assert body["minInstanceVersion"] == "3.2.0" and body["minInstanceVersionSource"] == "ENV"


