"""Backups and destroy (10-core §5.5, §6.7; §20 checks 86–94)."""

from __future__ import annotations

import shlex
from typing import Any

import yaml
from sqlalchemy import select
from tests.domains.lifecycle.helpers import events_of, get_instance, lifecycle, set_status, wait_job
from tests.fakes.fake_sindri import FakeSindri

from sindri_console.models.audit import AuditLog
from sindri_console.models.identity import ApiKey


async def _backups(console: Any, key: str, iid: str) -> list[dict[str, Any]]:
    r = await console.client.get(f"/api/v1/instances/{iid}/backups", headers=console.auth(key))
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def test_backup_runs_connect_and_records_size_and_location(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(stdout=["Creating backup…", "done"], last_line="12345")
    inst = await console.register(admin, "bk-1")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/backup", json={}, headers=console.auth(operator))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["instance"]["status"] == "RUNNING"  # a backup does not own the status
    assert body["instance"]["activeJobId"] == body["job"]["id"]
    assert body["backup"]["status"] in ("PENDING", "RUNNING")
    assert body["backup"]["label"].startswith("backup-bk-1-")
    assert body["backup"]["profile"] == "STANDARD" and body["backup"]["compressionLevel"] == 6
    assert body["backup"]["purpose"] == "MANUAL" and body["backup"]["jobId"] == body["job"]["id"]

    job = await wait_job(console, operator, inst["id"], body["job"]["id"])
    assert job["status"] == "SUCCEEDED", job
    [backup] = await _backups(console, operator, inst["id"])
    assert backup["status"] == "SUCCEEDED" and backup["sizeBytes"] == 12345
    assert backup["location"] == f"~/.sindri/backups/{backup['label']}.tar.gz"
    assert backup["completedAt"] is not None
    assert (await get_instance(console, operator, inst["id"]))["activeJobId"] is None

    [run] = fake.runs()
    assert run.argv[:2] == ["connect", "--config"]
    assert run.argv[3] == "--command" and len(run.argv) == 5
    assert run.argv[4] == (f"sindri backup --output ~/.sindri/backups/{backup['label']}.tar.gz --profile standard "
                           f"--compression 6 --yes && stat -c %s ~/.sindri/backups/{backup['label']}.tar.gz")
    events = [(e.type, (e.metadata_ or {}).get("phase")) for e in await events_of(console, inst["id"])]
    assert ("BACKUP", "REQUESTED") in events and ("BACKUP", "SUCCEEDED") in events
    async with console.rt.db.read() as s:
        [audit] = (await s.scalars(select(AuditLog).where(AuditLog.action == "BACKUP"))).all()
    assert audit.metadata_["label"] == backup["label"] and audit.metadata_["jobId"] == job["id"]


async def test_backup_options_validation_and_label_uniqueness(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(last_line="not-a-number")
    inst = await console.register(admin, "bk-2")
    iid = inst["id"]
    for bad in ({"label": "bad label"}, {"label": "-dash-first"}, {"label": "x" * 129}, {"compressionLevel": 10},
                {"compressionLevel": 0}, {"compressionLevel": "6"}, {"profile": "EVERYTHING"}, []):
        r = await console.client.post(f"/api/v1/instances/{iid}/backup", json=bad, headers=console.auth(operator))
        assert r.status_code == 422, (bad, r.text)
    r = await console.client.post(f"/api/v1/instances/{iid}/backup?wait=10",
                                  json={"label": "nightly.1", "profile": "user-data", "compressionLevel": 9},
                                  headers=console.auth(operator))
    assert r.status_code == 200, r.text
    backup = r.json()["backup"]
    assert backup["status"] == "SUCCEEDED" and backup["sizeBytes"] is None  # the last line was not a number
    assert backup["profile"] == "USER_DATA" and backup["compressionLevel"] == 9
    assert "--profile user-data --compression 9" in fake.runs()[0].argv[4]
    r = await console.client.post(f"/api/v1/instances/{iid}/backup", json={"label": "nightly.1"},
                                  headers=console.auth(operator))
    assert r.status_code == 409
    assert "nightly.1" in r.json()["message"]

    await set_status(console, iid, "SUSPENDED")
    r = await console.client.post(f"/api/v1/instances/{iid}/backup", headers=console.auth(operator))
    assert r.status_code == 409
    assert "SUSPENDED" in r.json()["message"]


async def test_a_failed_backup_frees_its_label(console: Any, admin: str, operator: str, fake: FakeSindri) -> None:
    fake.control(exit=2, stderr=["disk full"])
    inst = await console.register(admin, "bk-3")
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/backup?wait=10", json={"label": "again"},
                                  headers=console.auth(operator))
    assert r.status_code == 200
    assert r.json()["job"]["status"] == "FAILED" and r.json()["job"]["step"] is None
    assert r.json()["backup"]["status"] == "FAILED" and "disk full" in r.json()["backup"]["error"]
    assert r.json()["instance"]["status"] == "RUNNING"
    fake.control()
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/backup?wait=10", json={"label": "again"},
                                  headers=console.auth(operator))
    assert r.status_code == 200 and r.json()["backup"]["status"] == "SUCCEEDED"


async def test_destroy_tears_down_and_revokes_agent_keys(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    inst = await console.register(admin, "ds-1", issueAgentKey=True)
    agent_key = inst["agentKey"]
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}?destroy=true", headers=console.auth(operator))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["job"]["action"] == "DESTROY" and body["instance"]["status"] == "DESTROYING"
    assert body["backup"] is None
    job = await wait_job(console, operator, inst["id"], body["job"]["id"])
    assert job["status"] == "SUCCEEDED" and job["step"] == "TEARDOWN"
    after = await get_instance(console, operator, inst["id"])
    assert after["status"] == "DESTROYED" and after["removedAt"] is not None
    assert fake.runs()[0].argv[:3] == ["destroy", "--force", "--config"]
    async with console.rt.db.read() as s:
        keys = (await s.scalars(select(ApiKey).where(ApiKey.instance_id == inst["id"]))).all()
        [audit] = (await s.scalars(select(AuditLog).where(AuditLog.action == "DESTROY"))).all()
    assert keys and all(k.revoked_at is not None for k in keys)
    assert audit.metadata_["jobId"] == job["id"]
    r = await console.client.post("/api/v1/instances", json={"name": "ds-1", "provider": "fly"},
                                  headers=console.auth(agent_key))
    assert r.status_code == 401
    assert (await lifecycle(console, operator, inst["id"]))["availableActions"] == []
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}?destroy=true", headers=console.auth(operator))
    assert r.status_code == 409


async def test_destroy_with_backup_runs_the_backup_first(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(commands={"connect": {"last_line": "4096"}})
    inst = await console.register(admin, "ds-2")
    r = await console.client.delete(
        f"/api/v1/instances/{inst['id']}?destroy=true&backup=true&backupProfile=full&wait=10",
        headers=console.auth(operator))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["instance"]["status"] == "DESTROYED" and body["job"]["status"] == "SUCCEEDED"
    assert body["job"]["params"]["backup"] is True and body["job"]["params"]["backupProfile"] == "FULL"
    assert fake.commands() == ["connect", "destroy"]
    assert fake.runs()[0].ended <= fake.runs()[1].started
    backup = body["backup"]
    assert backup["purpose"] == "PRE_DESTROY" and backup["status"] == "SUCCEEDED"
    assert backup["label"].startswith("pre-destroy-ds-2-") and backup["sizeBytes"] == 4096
    assert "--profile full" in fake.runs()[0].argv[4]


async def test_destroy_whose_backup_step_fails_tears_nothing_down(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(commands={"connect": {"exit": 1, "stderr": ["cannot reach instance"]}})
    inst = await console.register(admin, "ds-3")
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}?destroy=true&backup=true&wait=10",
                                    headers=console.auth(operator))
    body = r.json()
    assert body["job"]["status"] == "FAILED" and body["job"]["step"] == "BACKUP"
    assert "cannot reach instance" in body["job"]["error"]
    assert body["instance"]["status"] == "RUNNING"
    assert body["backup"]["status"] == "FAILED"
    assert fake.commands() == ["connect"]


async def test_destroy_whose_teardown_fails_leaves_error(
    console: Any, admin: str, operator: str, fake: FakeSindri
) -> None:
    fake.control(commands={"destroy": {"exit": 3}})
    inst = await console.register(admin, "ds-4")
    await set_status(console, inst["id"], "SUSPENDED")
    r = await console.client.delete(f"/api/v1/instances/{inst['id']}?destroy=true&wait=10",
                                    headers=console.auth(operator))
    body = r.json()
    assert body["job"]["status"] == "FAILED" and body["job"]["exitCode"] == 3 and body["job"]["step"] == "TEARDOWN"
    assert body["instance"]["status"] == "ERROR"
    assert (await lifecycle(console, operator, inst["id"]))["availableActions"] == ["resume", "destroy", "deregister"]


async def test_destroy_options_are_validated(console: Any, admin: str, operator: str) -> None:
    inst = await console.register(admin, "ds-5")
    iid = inst["id"]
    cases = [
        ("backup=true", "backup"),
        ("destroy=true&backupLabel=x", "backupLabel"),
        ("destroy=true&backup=true&backupLabel=bad%20label", "backupLabel"),
        ("destroy=true&backup=true&backupProfile=huge", "backupProfile"),
        ("destroy=true&wait=61", "wait"),
        ("destroy=maybe", "destroy"),
        ("destroy=true&backup=perhaps", "backup"),
    ]
    for query, field in cases:
        r = await console.client.delete(f"/api/v1/instances/{iid}?{query}", headers=console.auth(operator))
        assert r.status_code == 422, (query, r.text)
        assert r.json()["details"][0]["field"] == field, (query, r.json())
    # The same names are accepted in a JSON body.
    r = await console.client.request("DELETE", f"/api/v1/instances/{iid}", headers=console.auth(operator),
                                     json={"destroy": True, "backupVolume": True, "backupLabel": "last-one",
                                           "wait": 10})
    assert r.status_code == 200, r.text
    assert r.json()["backup"]["label"] == "last-one" and r.json()["instance"]["status"] == "DESTROYED"
    _, dev = await console.user("DEVELOPER")
    other = await console.register(admin, "ds-6")
    r = await console.client.delete(f"/api/v1/instances/{other['id']}?destroy=true", headers=console.auth(dev))
    assert r.status_code == 403


async def test_shell_metacharacters_stay_data(
    console: Any, admin: str, operator: str, fake: FakeSindri, tmp_path: Any
) -> None:
    marker = tmp_path / "pwned"
    nasty = f"$(touch {marker}); `touch {marker}` && touch {marker}"[:64]
    inst = await console.register(admin, "inj-1", region=nasty, tags={"x": f"'; touch {marker}; '"})
    for label in (f"$(touch {marker})", "a;touch", "a b", "a`b`", "a&&b", "a|b", "a\nb", "../../etc"):
        r = await console.client.post(f"/api/v1/instances/{inst['id']}/backup", json={"label": label},
                                      headers=console.auth(operator))
        assert r.status_code == 422, label
        r = await console.client.delete(f"/api/v1/instances/{inst['id']}",
                                        params={"destroy": "true", "backup": "true", "backupLabel": label},
                                        headers=console.auth(operator))
        assert r.status_code == 422, label
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/suspend?wait=10", headers=console.auth(operator))
    assert r.status_code == 200
    [run] = fake.runs()
    assert run.argv == ["stop", "--config", run.argv[2]] and run.argv[2].endswith("/sindri.yaml")
    assert yaml.safe_load(run.config["text"])["providers"]["fly"]["region"] == nasty
    assert not marker.exists()
    # The only shell string the console builds (the backup command) is made of validated pieces only.
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/resume?wait=10", headers=console.auth(operator))
    r = await console.client.post(f"/api/v1/instances/{inst['id']}/backup?wait=10", json={"label": "ok-1.2_3"},
                                  headers=console.auth(operator))
    assert r.status_code == 200
    command = fake.runs()[-1].argv[4]
    assert shlex.split(command)[:4] == ["sindri", "backup", "--output", "~/.sindri/backups/ok-1.2_3.tar.gz"]
    assert not marker.exists()
