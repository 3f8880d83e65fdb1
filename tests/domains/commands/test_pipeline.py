"""The delivery pipeline with a fake agent connection (40 §6.2–§6.5)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from sindri_console.domains.commands import pipeline
from sindri_console.domains.commands.hooks import sweep
from sindri_console.kit.clock import clock
from sindri_console.models.commands import CommandExecution

from .conftest import agent_frame, connect_fake, disconnect_fake, set_agent


async def _setup(console: Any, admin: str, name: str = "box-1") -> tuple[str, Any]:
    inst = await console.register(admin, name)
    conn = await connect_fake(console, inst["id"])
    return inst["id"], conn


async def _post(console: Any, key: str, body: dict[str, Any]) -> Any:
    return await console.client.post("/api/v1/commands", json=body, headers=console.auth(key))


async def _row(console: Any, command_id: str) -> CommandExecution:
    async with console.rt.db.read() as s:
        row = await s.get(CommandExecution, command_id)
    assert row is not None
    return row


async def test_dispatch_frame_and_sent_state(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    r = await _post(console, admin, {"instanceId": iid, "command": "echo", "args": ["hi"], "wait": False})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/v1/commands/{r.json()['id']}"
    [frame] = conn.frames("command:dispatch")
    assert frame["commandId"] == r.json()["id"]
    assert frame["kind"] == "exec" and frame["shell"] is False
    assert frame["command"] == "echo" and frame["args"] == ["hi"]
    assert frame["timeoutMs"] == 30000 and frame["outputLimitBytes"] == 1_048_576
    assert frame["expiresAt"].endswith("Z")
    detail = (await console.client.get(f"/api/v1/commands/{frame['commandId']}", headers=console.auth(admin))).json()
    assert detail["status"] == "SENT" and detail["deliveryAttempts"] == 1 and detail["sentAt"]


async def test_shell_and_argv_frames(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    await _post(console, admin, {"instanceId": iid, "command": "echo $HOME | wc -c", "wait": False})
    await _post(console, admin, {"instanceId": iid, "argv": ["/bin/ls", "-l", "/tmp"], "wait": False})
    shell, argv = conn.frames("command:dispatch")
    assert shell["shell"] is True and shell["command"] == "echo $HOME | wc -c" and shell["args"] == []
    assert argv["shell"] is False and argv["command"] == "/bin/ls" and argv["args"] == ["-l", "/tmp"]


async def test_ack_and_results_drive_the_state_machine(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    ids = []
    for _ in range(5):
        r = await _post(console, admin, {"instanceId": iid, "command": "true", "wait": False})
        ids.append(r.json()["id"])
    ok, fail, slow, stopped, refused = ids
    reply = await agent_frame(console.rt, conn, "command:ack",
                                          {"commandId": ok, "accepted": True, "pid": 42}, "f1")
    assert reply == {"type": "ack", "data": {"id": "f1"}}
    row = await _row(console, ok)
    assert row.status == "RUNNING" and row.pid == 42 and row.started_at is not None
    reply = await agent_frame(console.rt, conn, "command:result",
                                          {"commandId": ok, "exitCode": 0, "stdout": "hi\n", "stderr": "",
                                           "durationMs": 5}, "f2")
    assert reply == {"type": "ack", "data": {"id": "f2"}}
    row = await _row(console, ok)
    assert (row.status, row.exit_code, row.stdout, row.error_code) == ("SUCCEEDED", 0, "hi\n", None)
    assert row.completed_at is not None and row.duration_ms == 5

    await agent_frame(console.rt, conn, "command:result",
                                  {"command_id": fail, "exit_code": 2, "stderr": "boom"}, None)
    row = await _row(console, fail)
    assert (row.status, row.exit_code, row.error_code, row.stderr) == ("FAILED", 2, "EXIT_CODE", "boom")
    await agent_frame(console.rt, conn, "command:result",
                                  {"commandId": slow, "exitCode": None, "signal": "SIGTERM", "timedOut": True}, None)
    row = await _row(console, slow)
    assert (row.status, row.error_code, row.exit_code, row.signal) == ("TIMED_OUT", "TIMEOUT", None, "SIGTERM")
    await agent_frame(console.rt, conn, "command:result",
                                  {"commandId": stopped, "exitCode": None, "cancelled": True}, None)
    assert (await _row(console, stopped)).status == "CANCELLED"
    await agent_frame(console.rt, conn, "command:ack",
                                  {"commandId": refused, "accepted": False, "code": "BAD_WORKDIR",
                                   "message": "Working directory '/nope' does not exist"}, None)
    row = await _row(console, refused)
    assert (row.status, row.error_code, row.error) == ("FAILED", "BAD_WORKDIR", "Working directory '/nope' does not exist")


async def test_refusals_map_to_codes(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    expected = {"EXPIRED": ("TIMED_OUT", "EXPIRED"), "BUSY": ("FAILED", "BUSY"), "DISABLED": ("FAILED", "DISABLED"),
                "SHUTTING_DOWN": ("FAILED", "AGENT_ERROR")}
    for code, (status, error_code) in expected.items():
        cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
        await agent_frame(console.rt, conn, "command:ack",
                                      {"commandId": cid, "accepted": False, "code": code, "message": "no"}, None)
        row = await _row(console, cid)
        assert (row.status, row.error_code) == (status, error_code), code


async def test_missing_exit_code_is_never_success(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    await agent_frame(console.rt, conn, "command:result", {"commandId": cid, "stdout": "?"}, None)
    row = await _row(console, cid)
    assert row.status == "FAILED" and row.exit_code is None and row.error_code == "EXIT_CODE"


async def test_duplicate_and_foreign_results(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    other_id, other_conn = await _setup(console, admin, "box-2")
    cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    await agent_frame(console.rt, conn, "command:result", {"commandId": cid, "exitCode": 0}, "a")
    again = await agent_frame(console.rt, conn, "command:result",
                                          {"commandId": cid, "exitCode": 7, "stdout": "changed"}, "b")
    assert again == {"type": "ack", "data": {"id": "b", "duplicate": True}}
    row = await _row(console, cid)
    assert row.status == "SUCCEEDED" and row.exit_code == 0 and row.stdout == ""
    # the agent of another instance cannot touch this command
    cid2 = (await _post(console, admin, {"instanceId": iid, "command": "y", "wait": False})).json()["id"]
    reply = await agent_frame(console.rt, other_conn, "command:result",
                                          {"commandId": cid2, "exitCode": 0}, "c")
    assert reply is not None and reply["type"] == "error" and reply["data"]["code"] == "UNKNOWN_COMMAND"
    assert reply["data"]["refId"] == "c"
    assert (await _row(console, cid2)).status == "SENT"
    reply = await agent_frame(console.rt, conn, "command:result", {"exitCode": 0}, "d")
    assert reply is not None and reply["data"]["code"] == "INVALID_PAYLOAD"
    for odd in ("a\x00b", "\ud800", "x y"):
        reply = await agent_frame(console.rt, conn, "command:result", {"commandId": odd, "exitCode": 0}, "e")
        assert reply is not None and reply["data"]["code"] == "UNKNOWN_COMMAND"
    assert other_id != iid


async def test_draupnir_connection_gets_no_replies_and_no_dispatch(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    d = type(conn)(iid, dialect="draupnir", capabilities=["heartbeat"])
    assert await pipeline.deliver(console.rt, d, cid) is False
    assert d.sent == []
    reply = await agent_frame(console.rt, d, "command:result",
                                          {"command_id": cid, "exit_code": 0, "stdout": "", "stderr": "",
                                           "duration_ms": 3}, None)
    assert reply is None
    assert (await _row(console, cid)).status == "SUCCEEDED"


async def test_output_is_capped_and_nul_replaced(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    huge = "é" * 600_000  # 1.2 MB of UTF-8, over the 1 MiB limit
    await agent_frame(console.rt, conn, "command:result",
                                  {"commandId": cid, "exitCode": 0, "stdout": huge, "stderr": "a\x00b",
                                   "stdoutBytes": 5_000_000}, None)
    row = await _row(console, cid)
    assert row.stdout is not None and len(row.stdout.encode()) <= 1_048_576
    assert row.stdout_truncated is True and row.stdout_bytes == 5_000_000
    assert row.stderr == "a\ufffdb" and row.stderr_truncated is False


async def test_env_and_stdin_sealed_then_cleared(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    body = {"instanceId": iid, "command": "env", "env": {"TOKEN": "s3cr3t-value"}, "stdin": "hello-stdin",
            "wait": False}
    r = await _post(console, admin, body)
    assert r.status_code == 202
    doc = r.json()
    assert doc["env"] == {"TOKEN": "****"} and doc["envKeys"] == ["TOKEN"] and doc["hasStdin"] is True
    assert "s3cr3t-value" not in r.text and "hello-stdin" not in r.text
    row = await _row(console, doc["id"])
    assert row.env_values and "s3cr3t" not in row.env_values and row.stdin and "hello" not in row.stdin
    [frame] = conn.frames("command:dispatch")
    assert frame["env"] == {"TOKEN": "s3cr3t-value"} and frame["stdin"] == "hello-stdin"
    await agent_frame(console.rt, conn, "command:result", {"commandId": doc["id"], "exitCode": 0}, None)
    row = await _row(console, doc["id"])
    assert row.env_values is None and row.stdin is None and row.env_keys == ["TOKEN"]
    audit = await console.client.get("/api/v1/audit", headers=console.auth(admin),
                                     params={"resource": "command"})
    assert audit.status_code == 200
    assert "s3cr3t-value" not in audit.text and "hello-stdin" not in audit.text and "TOKEN" in audit.text


async def test_hello_fails_lost_running_and_redelivers_in_order(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    ids = [(await _post(console, admin, {"instanceId": iid, "command": f"c{i}", "wait": False})).json()["id"]
           for i in range(4)]
    lost, kept, sent_only, _ = ids
    for cid in (lost, kept):
        await agent_frame(console.rt, conn, "command:ack", {"commandId": cid, "accepted": True}, None)
    disconnect_fake(console, iid)
    await set_agent(console, iid, connected=False)
    queued = (await _post(console, admin, {"instanceId": iid, "command": "later", "wait": False})).json()
    assert queued["status"] == "QUEUED"
    # a new connection: the agent still runs `kept` only
    new = await connect_fake(console, iid)
    await pipeline.on_hello(console.rt, new, [kept])
    assert (await _row(console, lost)).status == "FAILED"
    assert (await _row(console, lost)).error_code == "AGENT_RESTARTED"
    assert "restarted" in ((await _row(console, lost)).error or "")
    assert (await _row(console, kept)).status == "RUNNING"
    delivered = [f["commandId"] for f in new.frames("command:dispatch")]
    assert delivered == [sent_only, ids[3], queued["id"]]
    row = await _row(console, sent_only)
    assert row.status == "SENT" and row.delivery_attempts == 2 and row.sent_connection_id == new.connection_id
    # a later result for the kept command is accepted
    await agent_frame(console.rt, new, "command:result", {"commandId": kept, "exitCode": 0}, None)
    assert (await _row(console, kept)).status == "SUCCEEDED"
    # a second hello on the same connection does not send again
    await pipeline.on_hello(console.rt, new, [])
    assert len(new.frames("command:dispatch")) == 3


async def test_failed_write_leaves_sent_for_redelivery(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    conn.closed = True
    cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    assert (await _row(console, cid)).status == "SENT"
    new = await connect_fake(console, iid)
    await pipeline.on_hello(console.rt, new, [])
    assert [f["commandId"] for f in new.frames("command:dispatch")] == [cid]


async def test_control_ops(console: Any, admin: str) -> None:
    inst = await console.register(admin, "box-c")
    await set_agent(console, inst["id"], connected=True)
    # no local socket: the route publishes the deliver op for the replica that holds it
    sub = await console.rt.bus.subscribe(f"agent.{inst['id']}.control")
    cid = (await _post(console, admin, {"instanceId": inst["id"], "command": "x", "wait": False})).json()["id"]
    topic, msg = await asyncio.wait_for(sub.get(), 5)
    assert msg == {"op": "deliver", "commandId": cid}
    await sub.close()
    conn = type(await connect_fake(console, inst["id"]))(inst["id"])
    await pipeline.on_control(console.rt, conn, msg)
    assert [f["commandId"] for f in conn.frames("command:dispatch")] == [cid]
    await pipeline.on_control(console.rt, conn, {"op": "cancel", "commandId": cid, "reason": "stop"})
    assert conn.frames("command:cancel") == [{"commandId": cid, "reason": "stop"}]


async def test_progress_is_forwarded_not_stored(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    cid = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    sub = await console.rt.bus.subscribe(f"command.{cid}")
    await agent_frame(console.rt, conn, "command:progress",
                                  {"commandId": cid, "stream": "stdout", "seq": 1, "data": "partial"}, None)
    _, msg = await asyncio.wait_for(sub.get(), 5)
    assert msg == {"commandId": cid, "instanceId": iid, "stream": "stdout", "seq": 1, "data": "partial"}
    await sub.close()
    assert (await _row(console, cid)).stdout is None


async def test_sweeper_expires_times_out_and_redrives(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    offline = await console.register(admin, "box-off")
    await set_agent(console, offline["id"], connected=False)
    queued = (await _post(console, admin, {"instanceId": offline["id"], "command": "x", "queueTtlSec": 10,
                                           "wait": False})).json()
    running = (await _post(console, admin, {"instanceId": iid, "command": "sleep", "timeoutMs": 1000,
                                            "wait": False})).json()
    await agent_frame(console.rt, conn, "command:ack", {"commandId": running["id"], "accepted": True},
                                  None)
    assert await sweep(console.rt) == {"expired": 0, "noResult": 0, "redriven": 0}
    clock.advance(31 + 1)  # past sent_at + 1 s + 30 s grace, and past the 10 s queue TTL
    counts = await sweep(console.rt)
    assert counts["expired"] == 1 and counts["noResult"] == 1
    row = await _row(console, queued["id"])
    assert (row.status, row.error_code) == ("TIMED_OUT", "EXPIRED")
    row = await _row(console, running["id"])
    assert (row.status, row.error_code) == ("TIMED_OUT", "NO_RESULT")
    assert conn.frames("command:cancel")[0]["commandId"] == running["id"]
    # a QUEUED row whose agent is connected but never got the frame is re-driven after 5 s
    clock.reset()
    await set_agent(console, offline["id"], connected=True)
    later = (await _post(console, admin, {"instanceId": offline["id"], "command": "y", "wait": False})).json()
    assert later["status"] == "QUEUED"
    late_conn = await connect_fake(console, offline["id"])
    clock.advance(6)
    assert (await sweep(console.rt))["redriven"] == 1
    assert [f["commandId"] for f in late_conn.frames("command:dispatch")] == [later["id"]]


async def test_sweeper_via_loop_runner_holds_lease(console: Any, admin: str) -> None:
    assert any(s.name == "command-sweeper" and s.lease == "command-sweeper" for s in console.rt.loops.specs)
    assert await console.rt.loops.run_once("command-sweeper") == {"expired": 0, "noResult": 0, "redriven": 0}


async def test_instance_removal_cancels_active_commands(console: Any, admin: str) -> None:
    iid, conn = await _setup(console, admin)
    cids = [(await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
            for _ in range(2)]
    await agent_frame(console.rt, conn, "command:result", {"commandId": cids[0], "exitCode": 0}, None)
    r = await console.client.delete(f"/api/v1/instances/{iid}", headers=console.auth(admin))
    assert r.status_code == 200, r.text
    assert (await _row(console, cids[0])).status == "SUCCEEDED"
    row = await _row(console, cids[1])
    assert (row.status, row.error_code) == ("CANCELLED", "INSTANCE_REMOVED")
    async with console.rt.db.read() as s:
        active = (await s.scalars(select(CommandExecution.id).where(CommandExecution.status.in_(
            ("QUEUED", "SENT", "RUNNING"))))).all()
    assert active == []


async def test_retention_task_deletes_old_terminal_rows_only(console: Any, admin: str) -> None:
    from sindri_console.loops.retention import retention_tasks

    iid, conn = await _setup(console, admin)
    done = (await _post(console, admin, {"instanceId": iid, "command": "x", "wait": False})).json()["id"]
    active = (await _post(console, admin, {"instanceId": iid, "command": "y", "wait": False})).json()["id"]
    await agent_frame(console.rt, conn, "command:result", {"commandId": done, "exitCode": 0}, None)
    task = retention_tasks()["command_executions"]
    assert await task(console.rt, 100) == 0
    clock.advance(91 * 86_400)
    assert await task(console.rt, 100) == 1
    async with console.rt.db.read() as s:
        left = (await s.scalars(select(CommandExecution.id))).all()
    assert left == [active]
