"""Deployments (20-ops §7): request rules in order, creation, the job with the fake CLI, reads, secrets."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.fakes.fake_sindri import FakeSindri

from sindri_console.domains.deployments import runner as runner_module
from sindri_console.domains.deployments.runner import INTERRUPTED, runner_of
from sindri_console.models.audit import AuditLog
from sindri_console.models.deployments import Deployment
from sindri_console.models.identity import ApiKey
from sindri_console.models.instance import Instance, InstanceEvent
from sindri_console.models.logs import LogEntry
from sindri_console.models.secrets import VaultSecret


def yaml_doc(name: str = "dev-box", provider: str = "docker", extra: str = "") -> str:
    return (f'version: "3.0"\nname: {name}\ndeployment:\n  provider: {provider}\n'
            f"  volumes:\n    workspace:\n      size: 1536MB\n"
            f"extensions:\n  active: [git, python3@3.12]\n{extra}")


async def post(console: Any, key: str, body: dict[str, Any]) -> Any:
    return await console.client.post("/api/v1/deployments", json=body, headers=console.auth(key))


async def run_jobs(console: Any) -> None:
    runner = runner_of(console.rt)
    await console.rt.loops.run_once("deployments")
    await runner.drain()


async def deployment_row(console: Any, deployment_id: str) -> Deployment:
    async with console.rt.db.read() as s:
        row = await s.get(Deployment, deployment_id)
    assert row is not None
    return row


async def wait_for_cli(console: Any) -> None:
    from sindri_console.domains.version.service import cli_of

    await cli_of(console.rt).resolve()


class Spy:
    """Wraps the runner's key minting and CLI call: records the raw key and the child's environment, and
    makes the fake print the key (so masking can be checked)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fake: FakeSindri, **control: Any) -> None:
        self.keys: list[str] = []
        self.envs: list[dict[str, str]] = []
        real_mint, real_run = runner_module.mint_agent_key, runner_module.run_cli

        async def mint(*args: Any, **kwargs: Any) -> Any:
            key, raw = await real_mint(*args, **kwargs)
            self.keys.append(raw)
            stdout = [*control.pop("stdout", []), f"connecting with {raw}"]
            fake.control(stdout=stdout, **control)
            return key, raw

        async def run(*args: Any, **kwargs: Any) -> Any:
            self.envs.append(dict(kwargs["env"]))
            return await real_run(*args, **kwargs)

        monkeypatch.setattr(runner_module, "mint_agent_key", mint)
        monkeypatch.setattr(runner_module, "run_cli", run)


# ---- the happy path and the job ------------------------------------------------------------------------


async def test_deploy_succeeds_end_to_end(console: Any, fake: FakeSindri, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://server-secret-db/url")
    monkeypatch.setenv("SINDRI_CONSOLE_API_KEY", "server-bootstrap-key-must-not-leak")
    monkeypatch.setenv("SECRET_VAULT_KEY", "server-vault-key-must-not-leak")
    spy = Spy(monkeypatch, fake, stderr=["warning: slow network"])
    uid, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc(), "region": "local", "vm_size": "big"})
    assert r.status_code == 202, r.text
    d = r.json()
    assert r.headers["location"] == f"/api/v1/deployments/{d['id']}"
    assert d["status"] == "PENDING" and d["name"] == "dev-box" and d["provider"] == "docker"
    assert d["region"] == "local" and d["initiatedBy"] == uid and d["logs"] == "" and d["logsBytes"] == 0
    assert any("vm_size is ignored" in w for w in d["warnings"])
    assert len(d["configHash"]) == 64 and d["durationMs"] is None
    assert d["declared"]["extensions"] == [{"name": "git", "version": None}, {"name": "python3", "version": "3.12"}]

    async with console.rt.db.read() as s:
        inst = await s.get(Instance, d["instanceId"])
        assert inst.status == "DEPLOYING" and inst.disk_gb == 2 and inst.extensions == ["git", "python3"]
        assert inst.created_by == uid
        audit = await s.scalar(select(AuditLog).where(AuditLog.action == "DEPLOY"))
        assert audit.resource == "deployment" and audit.resource_id == d["id"]
        assert audit.metadata_["name"] == "dev-box" and audit.metadata_["secretNames"] == []

    await wait_for_cli(console)
    await run_jobs(console)
    done = (await console.client.get(f"/api/v1/deployments/{d['id']}", headers=console.auth(key))).json()
    assert done["status"] == "SUCCEEDED", done
    assert done["exitCode"] == 0 and done["error"] is None and done["durationMs"] is not None
    assert done["startedAt"] and done["completedAt"]

    # the CLI: exact argv, working directory, config file 0600 with the console variables as env secrets
    runs = fake.runs()
    assert [r.argv for r in runs] == [["deploy", "--config", "sindri.yaml"]]
    run = runs[0]
    assert run.cwd.endswith(f"deployments/{d['id']}")
    assert run.config["exists"] and run.config["mode"] == "0o600"
    for name in ("SINDRI_CONSOLE_URL", "SINDRI_CONSOLE_API_KEY", "SINDRI_INSTANCE_ID", "SINDRI_INSTANCE_NAME",
                 "SINDRI_PROVIDER", "SINDRI_REGION"):
        assert f"name: {name}" in run.config["text"]
    assert spy.keys[0] not in run.config["text"]
    assert not await asyncio.to_thread(os.path.exists, run.cwd)  # the working directory is removed

    # the environment: allow-list plus console variables; the server's own secrets never reach the child
    env = spy.envs[0]
    assert env["SINDRI_CONSOLE_API_KEY"] == spy.keys[0]
    assert env["SINDRI_INSTANCE_ID"] == d["instanceId"] and env["SINDRI_INSTANCE_NAME"] == "dev-box"
    assert env["SINDRI_PROVIDER"] == "docker" and env["SINDRI_REGION"] == "local"
    assert env["SINDRI_CONSOLE_URL"] == "https://console.example.test"
    assert "DATABASE_URL" not in env and "SECRET_VAULT_KEY" not in env
    assert "server-bootstrap-key-must-not-leak" not in env.values()
    assert "DATABASE_URL" not in run.env_keys and "SECRET_VAULT_KEY" not in run.env_keys

    # output: captured with the minted key masked, SYSTEM lines around it
    logs = done["logs"]
    assert spy.keys[0] not in logs and "connecting with ****" in logs
    assert f"Deployment {d['id']} started (provider docker, region local)" in logs
    assert "Running: sindri deploy --config sindri.yaml" in logs
    assert "sindri exited with code 0 after" in logs and logs.rstrip().endswith("Deployment succeeded")
    assert done["logsBytes"] == len(logs.encode())
    tail = (await console.client.get(f"/api/v1/deployments/{d['id']}?logOffset=10",
                                     headers=console.auth(key))).json()
    assert tail["logs"] == logs.encode()[10:].decode()
    past = (await console.client.get(f"/api/v1/deployments/{d['id']}?logOffset={done['logsBytes']}",
                                     headers=console.auth(key))).json()
    assert past["logs"] == ""

    async with console.rt.db.read() as s:
        inst = await s.get(Instance, d["instanceId"])
        assert inst.status == "RUNNING"
        rows = list(await s.scalars(select(LogEntry).where(LogEntry.deployment_id == d["id"])
                                    .order_by(LogEntry.seq)))
        events = list(await s.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == inst.id)
                                      .order_by(InstanceEvent.ts_ms, InstanceEvent.id)))
        keys = list(await s.scalars(select(ApiKey).where(ApiKey.instance_id == inst.id)))
    assert {(r.source, r.level) for r in rows} >= {("BUILD", "INFO"), ("BUILD", "WARN"), ("SYSTEM", "INFO")}
    assert all(spy.keys[0] not in r.message for r in rows)
    assert [r.message for r in rows if r.source == "BUILD"] == ["connecting with ****", "warning: slow network"]
    assert [(e.type, (e.metadata_ or {}).get("phase")) for e in events] == [("DEPLOY", "REQUESTED"),
                                                                             ("DEPLOY", "SUCCEEDED")]
    assert len(keys) == 1 and keys[0].kind == "AGENT" and keys[0].revoked_at is None
    # the minted key identifies this instance's agent, and nothing else
    reg = await console.client.post("/api/v1/instances", json={"name": "dev-box", "provider": "docker"},
                                    headers=console.auth(spy.keys[0]))
    assert reg.status_code in (200, 201), reg.text
    assert reg.json()["id"] == d["instanceId"]


async def test_failed_deployment_records_stderr_and_moves_instance_to_error(
        console: Any, fake: FakeSindri) -> None:
    fake.control(stdout=["building"], stderr=["step 1 ok", "Error: quota exceeded in region"], exit=3)
    _, key = await console.user("OPERATOR")
    r = await post(console, key, {"yamlConfig": yaml_doc("fails")})
    assert r.status_code == 202, r.text
    await wait_for_cli(console)
    await run_jobs(console)
    d = (await console.client.get(r.headers["location"], headers=console.auth(key))).json()
    assert d["status"] == "FAILED" and d["exitCode"] == 3
    assert d["error"] == "sindri deploy exited with code 3: Error: quota exceeded in region"
    assert "Deployment failed: sindri deploy exited with code 3" in d["logs"]
    async with console.rt.db.read() as s:
        inst = await s.get(Instance, d["instanceId"])
        events = list(await s.scalars(select(InstanceEvent.type).where(InstanceEvent.instance_id == inst.id)))
    assert inst.status == "ERROR"
    assert "ERROR" in events


async def test_timeout_kills_the_cli_and_fails(console: Any, fake: FakeSindri) -> None:
    console.rt.settings.DEPLOY_TIMEOUT_SECONDS = 1
    fake.control(stdout=["waiting"], sleep=30)
    _, key = await console.user("OPERATOR")
    r = await post(console, key, {"yamlConfig": yaml_doc("slow")})
    await wait_for_cli(console)
    await run_jobs(console)
    row = await deployment_row(console, r.json()["id"])
    assert row.status == "FAILED"
    assert row.error == "sindri deploy did not finish within 1 s and was stopped"


async def test_log_cap_truncates_stored_output(console: Any, fake: FakeSindri) -> None:
    console.rt.settings.DEPLOY_LOG_MAX_BYTES = 65_536
    fake.control(stdout=[f"line {i:05d} " + "x" * 90 for i in range(1000)])
    _, key = await console.user("OPERATOR")
    r = await post(console, key, {"yamlConfig": yaml_doc("chatty")})
    await wait_for_cli(console)
    await run_jobs(console)
    d = (await console.client.get(r.headers["location"], headers=console.auth(key))).json()
    assert d["status"] == "SUCCEEDED"
    assert d["logsTruncated"] is True and d["logsBytes"] <= 65_536, (d["logsBytes"], d["logs"][-300:])
    assert d["logs"].endswith("… output truncated\n")
    async with console.rt.db.read() as s:
        build_rows = list(await s.scalars(select(LogEntry.message).where(
            LogEntry.deployment_id == d["id"], LogEntry.source == "BUILD")))
    assert len(build_rows) == 1000  # log rows are not cut by the text cap


async def test_concurrency_cap_per_replica(console: Any, fake: FakeSindri) -> None:
    console.rt.settings.DEPLOY_MAX_CONCURRENCY = 2
    fake.control(sleep=0.5)
    _, key = await console.user("OPERATOR")
    for i in range(3):
        assert (await post(console, key, {"yamlConfig": yaml_doc(f"box-{i}")})).status_code == 202
    await wait_for_cli(console)
    runner = runner_of(console.rt)
    assert (await runner.tick())["started"] == 2
    assert await runner.tick() == {}
    await runner.drain()
    assert (await runner.tick())["started"] == 1
    await runner.drain()
    assert fake.max_overlap() == 2 and len(fake.runs()) == 3


async def test_expired_lease_marks_deployment_interrupted(console: Any) -> None:
    from sindri_console.kit.clock import utcnow

    _, key = await console.user("OPERATOR")
    r = await post(console, key, {"yamlConfig": yaml_doc("orphan")})
    d = r.json()
    async with console.rt.db.write() as s:
        row = await s.get(Deployment, d["id"])
        row.status, row.claimed_by, row.started_at = "IN_PROGRESS", "dead-replica", utcnow()
        row.lease_expires_at = utcnow()
    from sindri_console.kit.clock import clock

    clock.advance(1)
    assert (await runner_of(console.rt).tick()) == {"started": 0, "interrupted": 1}
    row = await deployment_row(console, d["id"])
    assert row.status == "FAILED" and row.error == INTERRUPTED and row.completed_at is not None
    async with console.rt.db.read() as s:
        assert (await s.get(Instance, d["instanceId"])).status == "ERROR"


async def test_a_live_lease_is_not_swept(console: Any) -> None:
    from datetime import timedelta

    from sindri_console.kit.clock import utcnow

    _, key = await console.user("OPERATOR")
    d = (await post(console, key, {"yamlConfig": yaml_doc("held")})).json()
    async with console.rt.db.write() as s:
        row = await s.get(Deployment, d["id"])
        row.status, row.claimed_by = "IN_PROGRESS", "other-replica"
        row.lease_expires_at = utcnow() + timedelta(seconds=60)
    assert await runner_of(console.rt).sweep_expired() == 0
    assert (await deployment_row(console, d["id"])).status == "IN_PROGRESS"


# ---- request rules -------------------------------------------------------------------------------------


async def test_schema_errors_carry_yaml_paths(console: Any) -> None:
    _, key = await console.user("VIEWER")
    bad = ('version: "4.x"\nname: Bad_Name\ndeployment:\n  provider: mars\n'
           "extensions:\n  active: [git, Bad Ext]\n")
    r = await post(console, key, {"yamlConfig": bad})
    assert r.status_code == 422
    fields = {d["field"] for d in r.json()["details"]}
    assert {"yamlConfig.version", "yamlConfig.name", "yamlConfig.deployment.provider",
            "yamlConfig.extensions.active[1]"} <= fields
    r = await post(console, key, {"yamlConfig": "a: [1,\n"})
    assert r.status_code == 422
    detail = r.json()["details"][0]
    assert detail["field"] == "yamlConfig" and "line" in detail["message"]
    r = await post(console, key, {"yamlConfig": yaml_doc().replace("active: [git, python3@3.12]", "- git")})
    assert r.status_code == 422


async def test_body_rules(console: Any) -> None:
    _, key = await console.user("VIEWER")
    cases = [
        ({}, "yamlConfig"),
        ({"templateId": "python-ml"}, "name"),
        ({"yamlConfig": yaml_doc(), "name": "other"}, "name"),
        ({"yamlConfig": yaml_doc(), "provider": "fly"}, "provider"),
        ({"yamlConfig": yaml_doc(), "region": ""}, "region"),
        ({"yamlConfig": yaml_doc(), "secrets": {"lower": "x"}}, "secrets.lower"),
        ({"yamlConfig": yaml_doc(), "secrets": {"OK_NAME": ""}}, "secrets.OK_NAME"),
        ({"yamlConfig": yaml_doc(), "secrets": ["x"]}, "secrets"),
        ({"yamlConfig": yaml_doc(), "teamId": "no-such-team"}, "teamId"),
        ({"yamlConfig": yaml_doc(), "dockerHost": "tcp://evil:2375"}, "dockerHost"),
        ({"yamlConfig": 12}, "yamlConfig"),
        ({"templateId": "no-such-template", "name": "x"}, "templateId"),
        ({"yamlConfig": "x" * 70_000}, "yamlConfig"),
    ]
    for body, field in cases:
        r = await post(console, key, body)
        assert r.status_code == 422, (body, r.text)
        assert field in {d["field"] for d in r.json()["details"]}, (field, r.json())
    r = await console.client.post("/api/v1/deployments", content=b"{bad", headers=console.auth(key))
    assert r.status_code == 400
    r = await post(console, key, {"templateId": "nope", "name": "x"})
    assert r.json()["message"] == "Template 'nope' not found"


async def test_yaml_config_aliases(console: Any) -> None:
    _, key = await console.user("VIEWER")
    for alias, name in (("yaml_config", "alias-a"), ("yamlContent", "alias-b")):
        r = await post(console, key, {alias: yaml_doc(name)})
        assert r.status_code == 202, r.text


async def test_reserved_names_from_yaml_and_body(console: Any) -> None:
    _, key = await console.user("VIEWER")
    extra = ("secrets:\n  - name: DATABASE_URL\n    source: env\n"
             "providers:\n  docker:\n    environment:\n      LD_PRELOAD: /x.so\n")
    r = await post(console, key, {"yamlConfig": yaml_doc(extra=extra),
                                  "secrets": {"SINDRI_CONSOLE_API_KEY": "abcdefgh", "AWS_SECRET": "abcdefgh"}})
    assert r.status_code == 422
    fields = {d["field"] for d in r.json()["details"]}
    assert fields == {"yamlConfig.secrets[0].name", "yamlConfig.providers.docker.environment.LD_PRELOAD",
                      "secrets.SINDRI_CONSOLE_API_KEY", "secrets.AWS_SECRET"}


async def test_hardening_rules(console: Any) -> None:
    _, key = await console.user("VIEWER")
    cases = {
        "secrets:\n  - name: TOKEN\n    source: file\n": "yamlConfig.secrets[0].source",
        "secrets:\n  - name: TOKEN\n    source: vault\n": "yamlConfig.secrets[0].source",
        "secrets:\n  - name: TOKEN\n    source: env\n    fromFile: /etc/shadow\n": "yamlConfig.secrets[0].fromFile",
        "providers:\n  docker:\n    privileged: true\n": "yamlConfig.providers.docker.privileged",
        "providers:\n  docker:\n    network: host\n": "yamlConfig.providers.docker.network",
        "providers:\n  docker:\n    dind:\n      mode: socket\n": "yamlConfig.providers.docker.dind.mode",
        "providers:\n  docker:\n    runtime: nvidia-unsafe\n": "yamlConfig.providers.docker.runtime",
        "providers:\n  devpod:\n    docker:\n      dockerHost: tcp://x:2375\n":
            "yamlConfig.providers.devpod.docker.dockerHost",
    }
    for extra, field in cases.items():
        r = await post(console, key, {"yamlConfig": yaml_doc(extra=extra)})
        assert r.status_code == 422, (extra, r.text)
        assert field in {d["field"] for d in r.json()["details"]}, (field, r.json())


async def test_privileged_docker_allowed_by_setting_and_listed_docker_host(console: Any) -> None:
    console.rt.settings.DEPLOY_ALLOW_PRIVILEGED_DOCKER = True
    console.rt.settings.DEPLOY_DOCKER_HOSTS = ["tcp://builder:2376"]
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc(extra="providers:\n  docker:\n    privileged: true\n"),
                                  "dockerHost": "tcp://builder:2376"})
    assert r.status_code == 202, r.text
    assert r.json()["dockerHost"] == "tcp://builder:2376"


async def test_required_secret_missing_and_optional_left_out(console: Any) -> None:
    _, key = await console.user("VIEWER")
    extra = ("secrets:\n  - name: API_TOKEN\n    source: env\n    required: true\n"
             "  - name: OPTIONAL_ONE\n    source: env\n")
    r = await post(console, key, {"yamlConfig": yaml_doc(extra=extra)})
    assert r.status_code == 422
    assert r.json()["message"] == "Required secret(s) not available: API_TOKEN"
    r = await post(console, key, {"yamlConfig": yaml_doc(extra=extra), "secrets": {"API_TOKEN": "tok-123456"}})
    assert r.status_code == 202, r.text
    d = r.json()
    assert d["secretNames"] == ["API_TOKEN"]
    assert any("OPTIONAL_ONE" in w for w in d["warnings"])


async def test_live_name_conflict_and_concurrent_posts(console: Any) -> None:
    _, key = await console.user("VIEWER")
    results = await asyncio.gather(*(post(console, key, {"yamlConfig": yaml_doc("twin")}) for _ in range(2)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202, 409], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409)
    assert loser.json()["message"] == "An instance named 'twin' already exists (status DEPLOYING)"
    await console.register(key, "taken", provider="fly")  # a registered (RUNNING) instance holds its name
    r = await post(console, key, {"yamlConfig": yaml_doc("taken")})
    assert r.status_code == 409
    assert r.json()["message"] == "An instance named 'taken' already exists (status RUNNING)"
    async with console.rt.db.read() as s:
        count = len(list(await s.scalars(select(Deployment.id))))
    assert count == 1


async def test_template_deployment(console: Any, fake: FakeSindri) -> None:
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"templateId": "python-ml", "name": "ml-box", "provider": "docker-compose"})
    assert r.status_code == 202, r.text
    d = r.json()
    assert d["templateId"] == "tmpl_python_ml" and d["name"] == "ml-box" and d["provider"] == "docker"
    assert "name: ml-box" in d["yamlContent"] and "provider: docker" in d["yamlContent"]
    async with console.rt.db.read() as s:
        inst = await s.get(Instance, d["instanceId"])
    assert inst.disk_gb == 50 and inst.extensions == ["python3", "pytorch", "jupyter", "claude-code", "git"]
    # the YAML wins when both are given; the template is only recorded
    r = await post(console, key, {"templateId": "tmpl_rust_systems", "yamlConfig": yaml_doc("own-yaml")})
    assert r.status_code == 202 and r.json()["templateId"] == "tmpl_rust_systems"
    # an invalid template cannot be deployed
    _, operator = await console.user("OPERATOR")
    legacy = "name: Legacy\ndeployment:\n  provider: fly\nextensions: [git]\n"
    t = await console.client.post("/api/v1/templates", headers=console.auth(operator), json={
        "name": "L", "slug": "legacy", "category": "x", "description": "d", "yamlContent": legacy})
    assert t.status_code == 201
    r = await post(console, key, {"templateId": "legacy", "name": "from-legacy"})
    assert r.status_code == 422
    assert r.json()["message"] == "Template 'legacy' is not a valid sindri.yaml"
    # deleting the template keeps its deployments (templateId becomes null)
    _, admin = await console.user("ADMIN")
    assert (await console.client.delete("/api/v1/templates/tmpl_python_ml",
                                        headers=console.auth(admin))).status_code == 200
    assert (await deployment_row(console, d["id"])).template_id is None


async def test_no_cli_answers_503_and_creates_nothing(console: Any, tmp_path: Path) -> None:
    console.rt.services["cli"].__init__(str(tmp_path / "missing-sindri"))
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc("no-cli")})
    assert r.status_code == 503
    assert r.json()["message"] == "Deployments need the Sindri CLI: install it or set SINDRI_BIN_PATH"
    async with console.rt.db.read() as s:
        assert list(await s.scalars(select(Instance.id))) == []


async def test_scope_of_get(console: Any) -> None:
    from sindri_console.kit.clock import utcnow
    from sindri_console.models.identity import Team, TeamMember

    owner_id, owner = await console.user("VIEWER")
    other_id, other = await console.user("VIEWER")
    async with console.rt.db.write() as s:
        s.add_all([Team(id="team-a", name="a", created_at=utcnow(), updated_at=utcnow()),
                   Team(id="team-b", name="b", created_at=utcnow(), updated_at=utcnow())])
        await s.flush()
        s.add_all([TeamMember(team_id="team-a", user_id=owner_id, added_at=utcnow()),
                   TeamMember(team_id="team-b", user_id=other_id, added_at=utcnow())])
    r = await post(console, owner, {"yamlConfig": yaml_doc("team-box"), "teamId": "team-a"})
    assert r.status_code == 202, r.text
    assert r.json()["teamId"] == "team-a"
    assert (await console.client.get(r.headers["location"], headers=console.auth(owner))).status_code == 200
    hidden = await console.client.get(r.headers["location"], headers=console.auth(other))
    assert hidden.status_code == 404 and hidden.json()["message"] == "Deployment not found"
    r2 = await post(console, other, {"yamlConfig": yaml_doc("x-box"), "teamId": "team-a"})
    assert r2.status_code == 422 and r2.json()["details"][0]["field"] == "teamId"
    bad = await console.client.get("/api/v1/deployments/bad%20id", headers=console.auth(owner))
    assert bad.status_code == 400
    neg = await console.client.get(f"{r.headers['location']}?logOffset=-1", headers=console.auth(owner))
    assert neg.status_code == 422


# ---- secrets -------------------------------------------------------------------------------------------


async def test_body_secrets_are_encrypted_resolved_and_masked(
        console: Any, fake: FakeSindri, monkeypatch: pytest.MonkeyPatch) -> None:
    value = "s3cr3t-value-7f9a"
    spy = Spy(monkeypatch, fake, stdout=[f"token={value}"])
    _, key = await console.user("VIEWER")
    extra = "secrets:\n  - name: API_TOKEN\n    source: env\n    required: true\n"
    r = await post(console, key, {"yamlConfig": yaml_doc(extra=extra),
                                  "secrets": {"API_TOKEN": value, "EXTRA_ONLY": "extra-value-123"}})
    assert r.status_code == 202, r.text
    assert value not in r.text and "extra-value-123" not in r.text
    d = r.json()
    assert d["secretNames"] == ["API_TOKEN", "EXTRA_ONLY"]
    async with console.rt.db.read() as s:
        rows = list(await s.scalars(select(VaultSecret).order_by(VaultSecret.name)))
        audit = await s.scalar(select(AuditLog).where(AuditLog.action == "DEPLOY"))
    assert [(v.name, v.instance_id, v.scope, v.type) for v in rows] == [
        ("API_TOKEN", d["instanceId"], ["deployment"], "ENV_VAR"),
        ("EXTRA_ONLY", d["instanceId"], ["deployment"], "ENV_VAR")]
    assert all(value.encode() not in v.ciphertext for v in rows)
    assert value not in str(audit.metadata_)

    await wait_for_cli(console)
    await run_jobs(console)
    done = (await console.client.get(r.headers["location"], headers=console.auth(key))).json()
    assert done["status"] == "SUCCEEDED", done
    env = spy.envs[0]
    assert env["API_TOKEN"] == value and env["EXTRA_ONLY"] == "extra-value-123"
    assert "token=****" in done["logs"] and value not in done["logs"]
    config = fake.runs()[0].config["text"]
    assert "name: EXTRA_ONLY" in config and value not in config


async def test_secrets_need_the_vault_key(console: Any) -> None:
    console.rt.settings.SECRET_VAULT_KEY = None
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc("no-vault"), "secrets": {"API_TOKEN": "abcdefgh"}})
    assert r.status_code == 503
    assert "SECRET_VAULT_KEY" in r.json()["message"]
    async with console.rt.db.read() as s:
        assert list(await s.scalars(select(Instance.id))) == []
    # without secrets nothing needs the key
    assert (await post(console, key, {"yamlConfig": yaml_doc("no-vault")})).status_code == 202


async def test_shell_metacharacters_in_values_are_plain_text(
        console: Any, fake: FakeSindri, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    spy = Spy(monkeypatch, fake)
    payload = f"$(touch {marker}); `touch {marker}` && touch {marker} | x"
    extra = (f"providers:\n  docker:\n    region: '$(id); reboot'\n    image_args: {payload!r}\n"
             "secrets:\n  - name: INJECT\n    source: env\n")
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc("inject", extra=extra),
                                  "secrets": {"INJECT": payload}})
    assert r.status_code == 202, r.text
    await wait_for_cli(console)
    await run_jobs(console)
    assert (await deployment_row(console, r.json()["id"])).status == "SUCCEEDED"
    assert not await asyncio.to_thread(marker.exists)
    run = fake.runs()[0]
    assert run.argv == ["deploy", "--config", "sindri.yaml"]
    assert f"touch {marker}" in run.config["text"]  # written as data, never executed
    assert spy.envs[0]["INJECT"] == payload


async def test_destroying_the_instance_deletes_its_vault_secrets(console: Any) -> None:
    from sindri_console.domains.instances.removal import on_instance_removed
    from sindri_console.kit.clock import utcnow

    _, key = await console.user("VIEWER")
    d = (await post(console, key, {"yamlConfig": yaml_doc("short-lived"),
                                   "secrets": {"API_TOKEN": "abcdefgh"}})).json()
    async with console.rt.db.write() as s:
        await on_instance_removed(s, d["instanceId"], "DEREGISTERED", utcnow())
    async with console.rt.db.read() as s:
        assert len(list(await s.scalars(select(VaultSecret.id)))) == 1
    async with console.rt.db.write() as s:
        await on_instance_removed(s, d["instanceId"], "DESTROYED", utcnow())
    async with console.rt.db.read() as s:
        assert list(await s.scalars(select(VaultSecret.id))) == []


def test_env_of_this_process_has_no_bearing() -> None:
    # guard for the assertions above: the test process itself must not run with a real vault key
    assert os.environ.get("SECRET_VAULT_KEY") in (None, "")


# ---- job details ---------------------------------------------------------------------------------------


async def test_status_changes_are_published(console: Any, fake: FakeSindri) -> None:
    sub = await console.rt.bus.subscribe("deployment.*", "ops.wake.deploy", "instance.*.logs")
    try:
        _, key = await console.user("VIEWER")
        d = (await post(console, key, {"yamlConfig": yaml_doc("published")})).json()
        await wait_for_cli(console)
        await run_jobs(console)
        await asyncio.sleep(0.2)  # the Redis bus delivers asynchronously
        seen: list[tuple[str, dict[str, Any]]] = []
        while not sub.queue.empty():
            seen.append(sub.queue.get_nowait())
    finally:
        await sub.close()
    topics = [t for t, _ in seen]
    assert "ops.wake.deploy" in topics
    statuses = [p["status"] for t, p in seen if t == f"deployment.{d['id']}"]
    assert statuses == ["IN_PROGRESS", "SUCCEEDED"]
    final = next(p for t, p in seen if t == f"deployment.{d['id']}" and p["status"] == "SUCCEEDED")
    assert final == {"deploymentId": d["id"], "instanceId": d["instanceId"], "status": "SUCCEEDED", "exitCode": 0}
    log_batches = [p for t, p in seen if t == f"instance.{d['instanceId']}.logs"]
    messages = [e["message"] for batch in log_batches for e in batch["entries"]]
    assert "Deployment succeeded" in messages
    assert all(e["deploymentId"] == d["id"] for batch in log_batches for e in batch["entries"])


async def test_log_rows_stop_at_the_row_limit_with_one_warning(console: Any, fake: FakeSindri,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "MAX_LOG_ROWS", 5)
    fake.control(stdout=[f"out {i}" for i in range(12)])
    _, key = await console.user("VIEWER")
    d = (await post(console, key, {"yamlConfig": yaml_doc("many-rows")})).json()
    await wait_for_cli(console)
    await run_jobs(console)
    async with console.rt.db.read() as s:
        rows = list(await s.scalars(select(LogEntry).where(LogEntry.deployment_id == d["id"])
                                    .order_by(LogEntry.seq)))
    build = [r.message for r in rows if r.source == "BUILD"]
    assert build == [f"out {i}" for i in range(5)]
    warning = [r for r in rows if r.source == "SYSTEM" and r.level == "WARN"]
    assert len(warning) == 1 and warning[0].message.startswith("7 more output lines were not stored")
    row = await deployment_row(console, d["id"])
    assert all(f"out {i}" in row.logs for i in range(12))  # the captured text keeps every line


async def test_lease_is_renewed_while_the_cli_runs(console: Any, fake: FakeSindri,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RENEW_SECONDS", 0.1)
    fake.control(sleep=0.8)
    _, key = await console.user("VIEWER")
    d = (await post(console, key, {"yamlConfig": yaml_doc("renewed")})).json()
    await wait_for_cli(console)
    runner = runner_of(console.rt)
    await runner.tick()
    await asyncio.sleep(0.2)
    first = (await deployment_row(console, d["id"])).lease_expires_at
    await asyncio.sleep(0.4)
    second = (await deployment_row(console, d["id"])).lease_expires_at
    assert first is not None and second is not None and second > first
    await runner.drain()
    row = await deployment_row(console, d["id"])
    assert row.status == "SUCCEEDED" and row.lease_expires_at is None


async def test_a_lost_lease_stops_the_cli_and_writes_nothing_more(console: Any, fake: FakeSindri,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RENEW_SECONDS", 0.1)
    fake.control(sleep=30)
    _, key = await console.user("VIEWER")
    d = (await post(console, key, {"yamlConfig": yaml_doc("stolen")})).json()
    await wait_for_cli(console)
    runner = runner_of(console.rt)
    await runner.tick()
    await asyncio.to_thread(fake.wait_for_runs, 1)
    # another replica's sweeper declared the job interrupted
    async with console.rt.db.write() as s:
        row = await s.get(Deployment, d["id"])
        row.status, row.error, row.claimed_by = "FAILED", INTERRUPTED, "other-replica"
    await asyncio.wait_for(runner.drain(), 15)
    row = await deployment_row(console, d["id"])
    assert row.status == "FAILED" and row.error == INTERRUPTED and row.claimed_by == "other-replica"
    run = fake.runs()[0]
    assert run.exit is None  # killed, it never reached its own end
    for _ in range(100):  # SIGKILL was sent; the child is reaped asynchronously
        try:
            os.kill(run.pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the CLI process is still alive")


async def test_sweep_writes_the_interruption_into_the_logs(console: Any) -> None:
    from sindri_console.kit.clock import clock, utcnow

    _, key = await console.user("VIEWER")
    d = (await post(console, key, {"yamlConfig": yaml_doc("swept")})).json()
    async with console.rt.db.write() as s:
        row = await s.get(Deployment, d["id"])
        row.status, row.claimed_by, row.lease_expires_at = "IN_PROGRESS", "gone", utcnow()
    clock.advance(1)
    assert await runner_of(console.rt).sweep_expired() == 1
    got = (await console.client.get(f"/api/v1/deployments/{d['id']}", headers=console.auth(key))).json()
    assert got["logs"] == f"Deployment failed: {INTERRUPTED}\n"


async def test_text_that_cannot_be_stored_is_refused_with_422(console: Any) -> None:
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc("nul-box"), "region": "a\u0000b"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "region"
    raw = ('{"yamlConfig": ' + json.dumps(yaml_doc("sur-box")) +
           ', "secrets": {"API_TOKEN": "x\\udc00yyyyyy"}}').encode()
    r = await console.client.post("/api/v1/deployments", content=raw,
                                  headers={**console.auth(key), "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "secrets.API_TOKEN"


async def test_nul_bytes_in_cli_output_are_stored_as_replacement_characters(console: Any, fake: FakeSindri) -> None:
    fake.control(stdout=["before\u0000after"], stderr=["fatal\u0000error"], exit=2)
    _, key = await console.user("VIEWER")
    d = (await post(console, key, {"yamlConfig": yaml_doc("nul-output")})).json()
    await wait_for_cli(console)
    await run_jobs(console)
    row = await deployment_row(console, d["id"])
    assert row.status == "FAILED"
    assert "before\ufffdafter" in row.logs
    assert row.error == "sindri deploy exited with code 2: fatal\ufffderror"


async def test_instance_fields_from_the_yaml(console: Any) -> None:
    _, key = await console.user("VIEWER")
    text = ('version: "3.0"\nname: sized\ndistro: Fedora\ndeployment:\n  provider: devpod\n'
            "  volumes:\n    workspace:\n      size: 100GB\n"
            "extensions:\n  profile: minimal\n  additional: [rust@1.80]\n"
            "providers:\n  devpod:\n    type: aws\n    region: us-west-2\n    aws:\n      instanceType: t3.large\n")
    r = await post(console, key, {"yamlConfig": text})
    assert r.status_code == 202, r.text
    d = r.json()
    assert d["region"] == "us-west-2" and d["provider"] == "devpod"
    assert d["declared"]["profile"] == "minimal" and d["declared"]["distro"] == "fedora"
    async with console.rt.db.read() as s:
        inst = await s.get(Instance, d["instanceId"])
    assert (inst.region, inst.size_id, inst.disk_gb, inst.distro) == ("us-west-2", "t3.large", 100, "fedora")
    assert inst.extensions == ["rust"]
    # the body's region wins over the YAML's
    r = await post(console, key, {"yamlConfig": text.replace("name: sized", "name: sized-two"), "region": "eu-1"})
    assert r.json()["region"] == "eu-1"


def test_log_offset_inside_a_character_starts_at_the_next_one() -> None:
    from sindri_console.domains.deployments.service import _logs_from

    text = "aé€b\n"  # 1 + 2 + 3 + 1 + 1 bytes
    assert _logs_from(text, 0) == text
    assert _logs_from(text, 1) == "é€b\n"
    assert _logs_from(text, 2) == "€b\n"  # inside é
    assert _logs_from(text, 4) == "b\n"  # inside €
    assert _logs_from(text, 8) == "" and _logs_from(text, 10**12) == ""


async def test_global_vault_secrets_resolve_only_with_the_deployment_scope(
        console: Any, fake: FakeSindri, monkeypatch: pytest.MonkeyPatch) -> None:
    from sindri_console.domains.deployments import vault
    from sindri_console.kit.clock import utcnow
    from sindri_console.kit.crypto import parse_key
    from sindri_console.kit.ids import new_id

    kek = parse_key(console.rt.settings.SECRET_VAULT_KEY)
    now = utcnow()

    async def add(name: str, value: str, scope: list[str], instance_id: str | None = None) -> None:
        secret_id = new_id()
        async with console.rt.db.write() as s:
            s.add(VaultSecret(id=secret_id, name=name, instance_id=instance_id, scope_key=instance_id or "",
                              type="ENV_VAR", scope=scope, version=1, created_at=now, updated_at=now,
                              **vault.seal(secret_id, 1, value, kek)))

    _, key = await console.user("VIEWER")
    other = await console.register(key, "other-instance", provider="fly")
    await add("SHARED_TOKEN", "global-value-1234", ["deployment"])
    await add("OTHER_SCOPE", "not-for-deploys-1", ["ci"])
    await add("PRIVATE_TOKEN", "someone-elses-123", ["deployment"], other["id"])
    spy = Spy(monkeypatch, fake)

    def doc(name: str, secret: str) -> str:
        return yaml_doc(name, extra=f"secrets:\n  - name: {secret}\n    source: env\n    required: true\n")

    for secret in ("OTHER_SCOPE", "PRIVATE_TOKEN"):
        r = await post(console, key, {"yamlConfig": doc("never", secret)})
        assert r.status_code == 422 and r.json()["message"] == f"Required secret(s) not available: {secret}"
    r = await post(console, key, {"yamlConfig": doc("shared", "SHARED_TOKEN")})
    assert r.status_code == 202, r.text
    await wait_for_cli(console)
    await run_jobs(console)
    assert (await deployment_row(console, r.json()["id"])).status == "SUCCEEDED"
    assert spy.envs[0]["SHARED_TOKEN"] == "global-value-1234"
    assert "PRIVATE_TOKEN" not in spy.envs[0] and "OTHER_SCOPE" not in spy.envs[0]


async def test_provider_credentials_fall_back_to_the_global_vault(
        console: Any, fake: FakeSindri, monkeypatch: pytest.MonkeyPatch) -> None:
    from sindri_console.domains.deployments import vault
    from sindri_console.kit.clock import utcnow
    from sindri_console.kit.crypto import parse_key
    from sindri_console.kit.ids import new_id

    monkeypatch.delenv("FLY_API_TOKEN", raising=False)
    kek = parse_key(console.rt.settings.SECRET_VAULT_KEY)
    secret_id, now = new_id(), utcnow()
    async with console.rt.db.write() as s:
        s.add(VaultSecret(id=secret_id, name="FLY_API_TOKEN", instance_id=None, scope_key="", type="API_KEY",
                          scope=[], version=1, created_at=now, updated_at=now,
                          **vault.seal(secret_id, 1, "fly-token-from-vault", kek)))
    spy = Spy(monkeypatch, fake, stdout=["using fly-token-from-vault"])
    _, key = await console.user("VIEWER")
    r = await post(console, key, {"yamlConfig": yaml_doc("fly-box", provider="fly")})
    assert r.status_code == 202, r.text
    await wait_for_cli(console)
    await run_jobs(console)
    row = await deployment_row(console, r.json()["id"])
    assert row.status == "SUCCEEDED"
    assert spy.envs[0]["FLY_API_TOKEN"] == "fly-token-from-vault"
    assert "fly-token-from-vault" not in row.logs  # provider credentials are masked too
