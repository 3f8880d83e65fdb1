"""Commands end to end: the real `sindri-console agent` process against a real `sindri-console serve`."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.server import fresh_database, start_server
from tests.e2e.test_real_agent import AGENT_KEY, find_instance, start_agent, wait_for

VAULT_KEY = "8f3b2a1c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"
SERVER_ENV = {"SINDRI_CONSOLE_API_KEY": AGENT_KEY, "SECRET_VAULT_KEY": VAULT_KEY}


def _run(url: str, key: str, body: dict[str, Any], path: str = "/api/v1/commands") -> httpx.Response:
    return httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_commands_with_the_real_agent(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as db:
        server = start_server(tmp_path, db, extra_env=SERVER_ENV)
        admin = server.admin_key
        assert admin
        names = ["cmd-a", "cmd-b", "cmd-c"]
        agents = {n: start_agent(server.url, tmp_path, n) for n in names}
        try:
            ids = {}
            for n in names:
                inst = wait_for(lambda n=n: (i := find_instance(server, admin, n)) and i["agent"]
                                and i["agent"]["connected"] and i, 30, f"{n} connected")
                ids[n] = inst["id"]
            a = ids["cmd-a"]

            def run(body: dict[str, Any]) -> dict[str, Any]:
                r = _run(server.url, admin, {"instanceId": a, **body})
                assert r.status_code == 201, r.text
                return r.json()  # type: ignore[no-any-return]

            ok = run({"command": "echo hi"})
            assert (ok["status"], ok["exitCode"], ok["stdout"], ok["errorCode"]) == ("SUCCEEDED", 0, "hi\n", None)
            assert ok["pid"] and ok["startedAt"] and ok["completedAt"] and ok["durationMs"] is not None

            failed = run({"command": "echo oops >&2; exit 3"})
            assert (failed["status"], failed["exitCode"], failed["errorCode"]) == ("FAILED", 3, "EXIT_CODE")
            assert failed["stderr"] == "oops\n"

            slow = run({"argv": ["sleep", "30"], "timeoutMs": 1000})
            assert (slow["status"], slow["errorCode"], slow["exitCode"]) == ("TIMED_OUT", "TIMEOUT", None)
            assert slow["signal"]

            big = run({"command": "head -c 2000000 /dev/zero | tr '\\0' a"})
            assert big["status"] == "SUCCEEDED" and big["stdoutTruncated"] is True
            assert len(big["stdout"]) == 1_048_576 and big["stdoutBytes"] == 2_000_000

            env = run({"argv": ["sh", "-c", "echo \"$GREETING\""], "env": {"GREETING": "hello world"}})
            assert env["stdout"] == "hello world\n" and env["env"] == {"GREETING": "****"}
            stdin = run({"argv": ["cat"], "stdin": "piped input"})
            assert stdin["stdout"] == "piped input"

            wd = run({"argv": ["pwd"], "workingDir": str(tmp_path)})
            assert wd["stdout"].strip() == str(tmp_path)
            bad_wd = run({"argv": ["pwd"], "workingDir": "/no/such/dir"})
            assert (bad_wd["status"], bad_wd["errorCode"]) == ("FAILED", "BAD_WORKDIR")

            literal = run({"argv": ["echo", "$(id); rm -rf / && echo pwned"]})
            assert literal["stdout"] == "$(id); rm -rf / && echo pwned\n"

            leaked = run({"argv": ["env"]})
            assert AGENT_KEY not in leaked["stdout"] and "SINDRI_CONSOLE" not in leaked["stdout"]
            assert "SINDRI_AGENT" not in leaked["stdout"]

            script = "set -e\necho \"from script $0\" | cut -c1-17\nexit 0\n"
            r = _run(server.url, admin, {"instanceId": a, "script": script}, "/api/v1/commands/script")
            assert r.status_code == 207, r.text
            item = r.json()["results"][0]
            assert item["execution"]["status"] == "SUCCEEDED", item
            assert item["execution"]["stdout"] == "from script /tmp/\n"

            # bulk over three agents with one offline
            agents["cmd-c"].send_signal(signal.SIGTERM)
            assert agents["cmd-c"].wait(20) == 0
            wait_for(lambda: not find_instance(server, admin, "cmd-c")["agent"]["connected"], 10, "cmd-c offline")
            r = _run(server.url, admin, {"instanceIds": [ids[n] for n in names], "command": "hostname >/dev/null; echo $((6*7))"},
                     "/api/v1/commands/bulk")
            assert r.status_code == 207, r.text
            doc = r.json()
            assert doc["summary"]["accepted"] == 3 and doc["summary"]["succeeded"] == 2 and doc["summary"]["pending"] == 1
            by = {x["instanceId"]: x["execution"] for x in doc["results"]}
            assert by[ids["cmd-a"]]["stdout"] == "42\n" and by[ids["cmd-b"]]["stdout"] == "42\n"
            queued = by[ids["cmd-c"]]
            assert queued["status"] == "QUEUED"
            # the offline agent comes back and runs the queued command
            agents["cmd-c"] = start_agent(server.url, tmp_path, "cmd-c")
            done = wait_for(lambda: (d := httpx.get(f"{server.url}/api/v1/commands/{queued['id']}",
                                                    headers={"Authorization": f"Bearer {admin}"}, timeout=5).json())
                            ["status"] == "SUCCEEDED" and d, 30, "queued command delivered after reconnect")
            assert done["stdout"] == "42\n" and done["deliveryAttempts"] == 1
        finally:
            for p in agents.values():
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
            server.stop()
