"""Wire shapes of commands: the Command object (20-ops §6.5), the dispatch frame (40 §6.2), and the
sealing of env values and stdin at rest (AES-256-GCM, bound to the row id)."""

from __future__ import annotations

import json
from typing import Any

from sindri_console.kit.clock import to_iso
from sindri_console.kit.crypto import decrypt, encrypt
from sindri_console.models.commands import CommandExecution

HISTORY_OUTPUT_CHARS = 8192
MASK = "****"


def _output(value: str | None, clip: bool) -> tuple[str | None, bool]:
    if value is None or not clip or len(value) <= HISTORY_OUTPUT_CHARS:
        return value, False
    return value[:HISTORY_OUTPUT_CHARS], True


def command_to_wire(row: CommandExecution, instance_name: str | None, *, history: bool = False) -> dict[str, Any]:
    """The Command object; `history` clips stdout/stderr to 8192 characters and omits the script."""
    stdout, cut_out = _output(row.stdout, history)
    stderr, cut_err = _output(row.stderr, history)
    is_script = row.mode == "SCRIPT"
    body: dict[str, Any] = {
        "id": row.id,
        "instanceId": row.instance_id,
        "instanceName": instance_name,
        "userId": row.user_id,
        "origin": row.origin,
        "batchId": row.batch_id,
        "taskRunId": row.task_run_id,
        "remediationId": row.remediation_id,
        "mode": row.mode,
        "command": None if is_script else row.command,
        "args": list(row.args or []),
        "interpreter": row.interpreter if is_script else None,
        "scriptSha256": row.script_sha256 if is_script else None,
        "scriptBytes": len(row.script.encode("utf-8")) if is_script and row.script is not None else None,
        "hasScript": is_script and row.script is not None,
        "envKeys": list(row.env_keys or []),
        "env": {k: MASK for k in (row.env_keys or [])},
        "workingDir": row.working_dir,
        "hasStdin": row.stdin is not None,
        "timeoutMs": row.timeout_ms,
        "outputLimitBytes": row.output_limit_bytes,
        "status": row.status,
        "errorCode": row.error_code,
        "error": row.error,
        "exitCode": row.exit_code,
        "signal": row.signal,
        "pid": row.pid,
        "stdout": stdout,
        "stderr": stderr,
        "stdoutBytes": row.stdout_bytes,
        "stderrBytes": row.stderr_bytes,
        "stdoutTruncated": bool(row.stdout_truncated),
        "stderrTruncated": bool(row.stderr_truncated),
        "durationMs": row.duration_ms,
        "deliveryAttempts": row.delivery_attempts or 0,
        "createdAt": to_iso(row.created_at),
        "sentAt": to_iso(row.sent_at),
        "startedAt": to_iso(row.started_at),
        "completedAt": to_iso(row.completed_at),
        "expiresAt": to_iso(row.expires_at),
    }
    if history:
        body["outputClipped"] = cut_out or cut_err
    elif is_script:
        body["script"] = row.script
    return body


# ---- sealed inputs ----------------------------------------------------------------------------


def seal_env(key: str | None, command_id: str, env: dict[str, str]) -> str | None:
    if not env:
        return None
    values = [env[k] for k in env]
    return encrypt(json.dumps(values).encode("utf-8"), key, associated_data=f"env:{command_id}".encode())


def seal_stdin(key: str | None, command_id: str, stdin: str | None) -> str | None:
    if stdin is None:
        return None
    return encrypt(stdin.encode("utf-8"), key, associated_data=f"stdin:{command_id}".encode())


def open_env(key: str | None, row: CommandExecution) -> dict[str, str]:
    keys = list(row.env_keys or [])
    if not keys:
        return {}
    if row.env_values is None:
        raise ValueError("the env values of this command are no longer stored")
    values = json.loads(decrypt(row.env_values, key, associated_data=f"env:{row.id}".encode()))
    return dict(zip(keys, values, strict=True))


def open_stdin(key: str | None, row: CommandExecution) -> str | None:
    if row.stdin is None:
        return None
    return decrypt(row.stdin, key, associated_data=f"stdin:{row.id}".encode()).decode("utf-8")


def dispatch_data(row: CommandExecution, env: dict[str, str], stdin: str | None) -> dict[str, Any]:
    """`command:dispatch` data (40 §6.2) for a row, with its opened env values and stdin."""
    data: dict[str, Any] = {"commandId": row.id}
    if row.mode == "SCRIPT":
        data["kind"] = "script"
        data["script"] = {"interpreter": row.interpreter, "content": row.script}
    else:
        data["kind"] = "exec"
        data["shell"] = row.mode == "SHELL"
        data["command"] = row.command
        data["args"] = [] if row.mode == "SHELL" else list(row.args or [])
    data["env"] = env
    data["workingDir"] = row.working_dir
    data["stdin"] = stdin
    data["timeoutMs"] = row.timeout_ms
    data["outputLimitBytes"] = row.output_limit_bytes
    data["expiresAt"] = to_iso(row.expires_at)
    return data

