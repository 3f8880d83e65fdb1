"""Suspend, resume and the job runner against the fake CLI (10-core §6.4–§6.6; §20 checks 76–82)."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from tests.domains.lifecycle.helpers import events_of, get_instance, lifecycle, wait_job
from tests.fakes.fake_sindri import FakeSindri

from sindri_console.kit.clock import utcnow
from sindri_console.kit.ids import new_id
from sindri_console.models.audit import AuditLog
from sindri_console.models.deployments import Deployment


async def test_suspend_needs_operator_and_runs_stop_with_a_written_config(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    inst = await console.register(admin, "web-1", provider="fly", region="sea", extensions=["python", "node"])
    _, dev = await console.user("DEVELOPER")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(dev))
    assert r.status_code == 403

    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", json={"reason": "night"},
                                  headers=console.auth(operator))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["instance"]["status"] == "SUSPENDING"
    assert body["instance"]["activeJobId"] == body["job"]["id"]
    assert body["job"]["action"] == "SUSPEND"
    assert body["job"]["status"] in ("QUEUED", "RUNNING")
    assert body["job"]["previousStatus"] == "RUNNING"
    assert body["job"]["params"] == {"reason": "night"}
    assert body["backup"] is None

    job = await wait_job(console, operator, inst["id"], body["job"]["id"])
    assert job["status"] == "SUCCEEDED", job
    assert job["exitCode"] == 0 and job["error"] is None and job["finishedAt"] is not None
    after = await get_instance(console, operator, inst["id"])
    assert after["status"] == "SUSPENDED" and after["activeJobId"] is None

    [run] = fake.runs()
    workdir = Path(console.rt.settings.data_dir) / "instances" / inst["id"]
    assert run.argv == ["stop", "--config", str(workdir.absolute() / "sindri.yaml")]
    assert run.cwd == str(workdir.absolute())
    assert run.config is not None and run.config["exists"] and run.config["mode"] == "0o600"
    assert stat.S_IMODE(os.stat(workdir).st_mode) == 0o700
    config = yaml.safe_load(run.config["text"])
    assert config == {"version": "3.0", "name": "web-1", "deployment": {"provider": "fly"},
                      "providers": {"fly": {"region": "sea"}}, "extensions": {"active": ["python", "node"]}}
    # The console's own secrets never reach the CLI.
    assert "DATABASE_URL" not in run.env_keys and "SINDRI_CONSOLE_API_KEY" not in run.env_keys

    types = [(e.type, (e.metadata_ or {}).get("phase")) for e in await events_of(console, inst["id"])]
    assert ("SUSPEND", "REQUESTED") in types and ("SUSPEND", "SUCCEEDED") in types
    async with console.rt.db.read() as s:
        audits = (await s.scalars(select(AuditLog).where(AuditLog.action == "SUSPEND"))).all()
    assert len(audits) == 1
    assert audits[0].resource == "instance" and audits[0].resource_id == inst["id"]
    assert audits[0].metadata_["jobId"] == body["job"]["id"] and audits[0].metadata_["reason"] == "night"


async def test_resume_with_wait_answers_200_with_the_finished_job(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    inst = await console.register(admin, "web-2")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend?wait=10", headers=console.auth(operator))
    assert r.status_code == 200, r.text
    assert r.json()["instance"]["status"] == "SUSPENDED"
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/resume?wait=10", headers=console.auth(operator))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["job"]["status"] == "SUCCEEDED" and body["job"]["action"] == "RESUME"
    assert body["instance"]["status"] == "RUNNING"
    assert [run.argv[:2] for run in fake.runs()] == [["stop", "--config"], ["start", "--config"]]


async def test_refused_transitions_name_the_status(console: Any, admin: str, operator: str) -> None:
    inst = await console.register(admin, "web-3")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/resume", headers=console.auth(operator))
    assert r.status_code == 409
    assert r.json()["message"] == "Instance 'web-3' cannot be resumed: current status is RUNNING"
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend?wait=10", headers=console.auth(operator))
    assert r.status_code == 200
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(operator))
    assert r.status_code == 409
    assert r.json() == {"error": "Conflict", "statusCode": 409,
                        "message": "Instance 'web-3' cannot be suspended: current status is SUSPENDED"}


async def test_failure_keeps_stderr_and_restores_the_status(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(exit=1, stdout=["stopping machine"], stderr=["Error: provider refused the request"])
    inst = await console.register(admin, "web-4")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(operator))
    job = await wait_job(console, operator, inst["id"], r.json()["job"]["id"])
    assert job["status"] == "FAILED"
    assert job["exitCode"] == 1
    assert job["error"] == "sindri stop exited with code 1: Error: provider refused the request"
    assert "Error: provider refused the request" in job["output"] and "stopping machine" in job["output"]
    after = await get_instance(console, operator, inst["id"])
    assert after["status"] == "RUNNING" and after["activeJobId"] is None
    errors = [e for e in await events_of(console, inst["id"]) if e.type == "ERROR"]
    assert len(errors) == 1
    assert errors[0].metadata_["jobId"] == job["id"] and errors[0].metadata_["error"] == job["error"]
    assert errors[0].metadata_["fromStatus"] == "SUSPENDING" and errors[0].metadata_["toStatus"] == "RUNNING"


async def test_timeout_ends_timed_out_and_kills_the_process(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    console.rt.settings.SINDRI_CLI_TIMEOUT_SECONDS = 1
    fake.control(sleep=30)
    inst = await console.register(admin, "web-5")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", headers=console.auth(operator))
    job = await wait_job(console, operator, inst["id"], r.json()["job"]["id"], within=20)
    assert job["status"] == "TIMED_OUT"
    assert job["error"] == "sindri stop did not finish within 1 s and was stopped"
    assert (await get_instance(console, operator, inst["id"]))["status"] == "RUNNING"
    [run] = fake.runs()
    assert run.ended is not None and run.ended - run.started < 10  # SIGTERM ended it, not the 30 s sleep


async def test_an_operation_in_progress_blocks_every_action(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    console.rt.settings.SINDRI_CLI_TIMEOUT_SECONDS = 30
    fake.control(sleep=6)
    inst = await console.register(admin, "web-6")
    iid = inst["id"]
    r = await console.client.post(f"/api/v1/instances/{iid}/suspend", headers=console.auth(operator))
    job_id = r.json()["job"]["id"]
    for method, path in (("POST", "suspend"), ("POST", "resume"), ("POST", "backup")):
        r = await console.client.request(method, f"/api/v1/instances/{iid}/{path}", headers=console.auth(operator))
        assert r.status_code == 409, (path, r.text)
        assert job_id in r.json()["message"] or "SUSPENDING" in r.json()["message"]
    r = await console.client.delete(f"/api/v1/instances/{iid}", headers=console.auth(operator))
    assert r.status_code == 409
    r = await console.client.delete(f"/api/v1/instances/{iid}?destroy=true", headers=console.auth(operator))
    assert r.status_code == 409
    view = await lifecycle(console, operator, iid)
    assert view["availableActions"] == []
    assert view["activeJob"]["id"] == job_id
    assert view["status"] == "SUSPENDING"
    assert view["managedProvider"] is True and view["driverAvailable"] is True and view["agentConnected"] is False
    assert (await wait_job(console, operator, iid, job_id))["status"] == "SUCCEEDED"


async def test_wait_is_validated(console: Any, admin: str, operator: str) -> None:
    inst = await console.register(admin, "web-7")
    for bad in ("61", "-1", "x", "1.5"):
        r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend?wait={bad}",
                                      headers=console.auth(operator))
        assert r.status_code == 422, bad
        assert r.json()["details"][0]["field"] == "wait"
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", json={"reason": "x" * 257},
                                  headers=console.auth(operator))
    assert r.status_code == 422
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend", content=b"{not json",
                                  headers=console.auth(operator))
    assert r.status_code == 400
    assert (await get_instance(console, operator, inst["id"]))["status"] == "RUNNING"


async def test_unknown_and_malformed_ids(console: Any, operator: str) -> None:
    r = await console.client.post("/api/v1/instances/nope/suspend", headers=console.auth(operator))
    assert r.status_code == 404
    r = await console.client.post("/api/v1/instances/bad%20id/suspend", headers=console.auth(operator))
    assert r.status_code == 400
    r = await console.client.delete("/api/v1/instances/nope?destroy=true", headers=console.auth(operator))
    assert r.status_code == 404


async def test_the_latest_successful_deployment_yaml_is_the_config(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    inst = await console.register(admin, "deployed-1", provider="docker", region=None)
    admin_id = (await console.client.get("/api/v1/me", headers=console.auth(admin))).json()["id"]
    older = 'version: "3.0"\nname: deployed-1\ndeployment:\n  provider: docker\n# older\n'
    latest = 'version: "3.0"\nname: deployed-1\ndeployment:\n  provider: docker\nextensions:\n  active: [git]\n'
    failed = 'version: "3.0"\nname: deployed-1\n# failed attempt\n'
    now = utcnow()
    async with console.rt.db.write() as s:
        for text, status, age in ((older, "SUCCEEDED", 300), (latest, "SUCCEEDED", 200), (failed, "FAILED", 100)):
            when = now - timedelta(seconds=age)
            s.add(Deployment(id=new_id(), name="deployed-1", instance_id=inst["id"], provider="docker",
                             status=status, yaml_content=text, config_hash="0" * 64, declared={},
                             initiated_by=admin_id, created_at=when, completed_at=when))
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend?wait=10", headers=console.auth(operator))
    assert r.json()["job"]["status"] == "SUCCEEDED"
    [run] = fake.runs()
    assert run.config is not None and run.config["text"] == latest
