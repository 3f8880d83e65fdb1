"""The CLI runner against a fake `sindri` executable generated per test (10-core §2, §6.4; 20-ops §7.7)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sindri_console.kit import cli_runner
from sindri_console.kit.cli_runner import (
    CLI_MISSING_MESSAGE,
    LINE_MAX_CHARS,
    OUTPUT_CAP_BYTES,
    TAIL_BYTES,
    CliFacts,
    Redactor,
    SemVer,
    SindriCli,
    backup_argv,
    build_cli_env,
    compare_semver,
    credential_values,
    deploy_argv,
    destroy_argv,
    first_semver_token,
    min_instance_version,
    parse_semver,
    parse_version_json,
    redact_secrets,
    resume_argv,
    run_cli,
    suspend_argv,
    version_status,
)

# The fake reads its behaviour from control.json next to it (the runner's env allow-list would drop
# control variables) and appends one JSON line per start and end to calls.log.
FAKE_SINDRI = r"""#!{python}
import json, os, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))


def control():
    path = os.path.join(HERE, "control.json")
    if not os.path.exists(path):
        return {{}}
    with open(path) as fh:
        return json.load(fh)


def record(event, **extra):
    entry = {{"event": event, "argv": sys.argv[1:], "pid": os.getpid(), "t": time.time(), **extra}}
    with open(os.path.join(HERE, "calls.log"), "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def finish(code):
    record("end")
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


c = control()
record("start", pgid=os.getpgid(0), sid=os.getsid(0), env_keys=sorted(os.environ))
if c.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
args = sys.argv[1:]

if args == ["version", "--json"]:
    time.sleep(c.get("version_sleep", 0))
    mode = c.get("version_json", "ok")
    if mode == "ok":
        print(json.dumps({{"version": c.get("version", "3.4.1"), "commit": "abc1234",
                          "build_date": "2026-10-01", "target": "x86_64-unknown-linux-gnu"}}))
        finish(0)
    if mode == "garbage":
        print("this is not json")
        finish(0)
    print("error: unknown command 'version'", file=sys.stderr)
    finish(2)

if args == ["--version"]:
    print(c.get("version_text", "sindri 3.4.1 (abc1234 2026-10-01)"))
    finish(c.get("version_exit", 0))

if args == ["env"]:
    # The values go to a file too: captured output is redacted, the file is what the child really saw.
    with open(os.path.join(HERE, "env.json"), "w") as fh:
        json.dump(dict(os.environ), fh)
    print(json.dumps(dict(os.environ)))
    finish(0)

if args == ["stdin"]:
    print(repr(sys.stdin.read()))
    finish(0)

for item in c.get("script", []):
    kind, value = item
    if kind == "out":
        sys.stdout.write(value); sys.stdout.flush()
    elif kind == "err":
        sys.stderr.write(value); sys.stderr.flush()
    elif kind == "outb":
        sys.stdout.buffer.write(bytes.fromhex(value)); sys.stdout.flush()
    elif kind == "file":
        with open(value, "rb") as fh:
            while True:
                block = fh.read(1 << 20)
                if not block:
                    break
                sys.stdout.buffer.write(block)
        sys.stdout.flush()
    elif kind == "sleep":
        time.sleep(value)

if c.get("spawn_child"):
    child = subprocess.Popen(["sleep", "30"])
    with open(os.path.join(HERE, "child.pid"), "w") as fh:
        fh.write(str(child.pid))
    print("child-started", file=sys.stderr, flush=True)

time.sleep(c.get("sleep", 0))
if "last_line" in c:
    print(c["last_line"])
finish(c.get("exit", 0))
"""


class FakeSindri:
    def __init__(self, directory: Path, name: str = "sindri") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.path = directory / name
        self.path.write_text(FAKE_SINDRI.format(python=sys.executable))
        self.path.chmod(0o755)

    def control(self, **values: object) -> None:
        (self.dir / "control.json").write_text(json.dumps(values))

    def calls(self, event: str = "start") -> list[dict]:
        log = self.dir / "calls.log"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [e for e in entries if e["event"] == event]

    def version_calls(self) -> int:
        return sum(1 for e in self.calls() if e["argv"] == ["version", "--json"])

    def child_pid(self) -> int:
        return int((self.dir / "child.pid").read_text())


class FakeClock:
    def __init__(self) -> None:
        self.value = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


@pytest.fixture
def fake(tmp_path: Path) -> FakeSindri:
    return FakeSindri(tmp_path / "bin")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for a reaper that is not ours."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


async def _wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        await asyncio.sleep(0.02)
    return _gone(pid)


def _kill_if_alive(pid: int) -> None:
    if not _gone(pid):
        os.kill(pid, signal.SIGKILL)


async def _run(fake: FakeSindri, argv: list[str] | None = None, **kwargs: object) -> cli_runner.CliRunResult:
    kwargs.setdefault("timeout_seconds", 10)
    kwargs.setdefault("env", build_cli_env({}))
    kwargs.setdefault("secrets_to_redact", [])
    return await run_cli(str(fake.path), argv or ["deploy", "--config", "sindri.yaml"], **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Resolution and caching
# ---------------------------------------------------------------------------------------------------------


async def test_resolve_parses_version_json_and_caches(fake: FakeSindri, clock: FakeClock) -> None:
    cli = SindriCli(str(fake.path), clock)
    assert cli.cached_facts() is None
    results = [await cli.resolve() for _ in range(10)]
    facts = results[0]
    assert facts == CliFacts(
        available=True,
        version="3.4.1",
        target="x86_64-unknown-linux-gnu",
        commit="abc1234",
        build_date="2026-10-01",
        resolved_at=clock.value,
        bin_path=str(fake.path),
    )
    assert all(r is facts for r in results)
    assert cli.cached_facts() is facts
    assert fake.version_calls() == 1


async def test_unchanged_binary_is_not_probed_again_after_recheck(fake: FakeSindri, clock: FakeClock) -> None:
    cli = SindriCli(str(fake.path), clock)
    await cli.resolve()
    for _ in range(3):
        clock.advance(61)
        assert (await cli.resolve()).available
    assert fake.version_calls() == 1


async def test_changed_mtime_triggers_re_resolution_only_after_60s(
    fake: FakeSindri, clock: FakeClock
) -> None:
    cli = SindriCli(str(fake.path), clock)
    first = await cli.resolve()
    fake.control(version="3.5.0-rc.1")
    st_ = fake.path.stat()
    os.utime(fake.path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 5_000_000_000))

    clock.advance(30)
    assert await cli.resolve() is first  # within the 60 s window nothing is checked
    assert fake.version_calls() == 1

    clock.advance(31)
    second = await cli.resolve()
    assert second.version == "3.5.0-rc.1"
    assert second.resolved_at == clock.value
    assert fake.version_calls() == 2
    clock.advance(10)
    assert await cli.resolve() is second
    assert fake.version_calls() == 2


async def test_missing_binary_is_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    cli = SindriCli(str(tmp_path / "no-such-sindri"), clock)
    assert cli.locate() is None
    facts = await cli.resolve()
    assert facts == CliFacts(available=False)
    assert cli.cached_facts() == facts


async def test_not_found_on_path(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    facts = await SindriCli(None, clock).resolve()
    assert not facts.available and facts.version is None and facts.resolved_at is None


async def test_found_on_path_when_setting_is_unset(
    fake: FakeSindri, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{fake.dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cli = SindriCli(None, clock)
    assert cli.locate() == str(fake.path)
    assert (await cli.resolve()).version == "3.4.1"


async def test_bin_path_must_be_an_executable_file(
    fake: FakeSindri, tmp_path: Path, clock: FakeClock
) -> None:
    fake.path.chmod(0o644)
    assert SindriCli(str(fake.path), clock).locate() is None
    assert SindriCli(str(tmp_path), clock).locate() is None  # a directory is not a binary
    assert not (await SindriCli(str(fake.path), clock).resolve()).available
    assert fake.calls() == []


async def test_fallback_to_dash_dash_version(fake: FakeSindri, clock: FakeClock) -> None:
    fake.control(version_json="garbage", version_text="sindri v3.4.2-beta.1 (build 2026-10-01)")
    facts = await SindriCli(str(fake.path), clock).resolve()
    assert facts.available and facts.version == "3.4.2-beta.1"
    assert (facts.target, facts.commit, facts.build_date) == (None, None, None)
    assert [c["argv"] for c in fake.calls()] == [["version", "--json"], ["--version"]]


async def test_fallback_also_after_non_zero_exit(fake: FakeSindri, clock: FakeClock) -> None:
    fake.control(version_json="fail")
    facts = await SindriCli(str(fake.path), clock).resolve()
    assert facts.available and facts.version == "3.4.1"


async def test_failed_resolution_is_retried_at_most_once_per_60s(fake: FakeSindri, clock: FakeClock) -> None:
    fake.control(version_json="fail", version_exit=1)
    cli = SindriCli(str(fake.path), clock)
    assert not (await cli.resolve()).available
    assert len(fake.calls()) == 2

    fake.control()  # the binary works again
    clock.advance(30)
    assert not (await cli.resolve()).available
    assert len(fake.calls()) == 2
    clock.advance(31)
    assert (await cli.resolve()).available
    assert len(fake.calls()) == 3


async def test_single_flight_under_concurrency(fake: FakeSindri, clock: FakeClock) -> None:
    fake.control(version_sleep=0.3)
    cli = SindriCli(str(fake.path), clock)
    task = cli.start_background_resolution()
    assert task is not None
    results = await asyncio.gather(*(cli.resolve() for _ in range(20)))
    assert all(r is results[0] and r.available for r in results)
    assert await task is results[0]
    assert fake.version_calls() == 1
    assert cli.start_background_resolution() is None  # cache valid: nothing started


async def test_waiter_cancelled_does_not_cancel_resolution(fake: FakeSindri, clock: FakeClock) -> None:
    fake.control(version_sleep=0.3)
    cli = SindriCli(str(fake.path), clock)
    impatient = asyncio.create_task(cli.resolve())
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert (await cli.resolve()).available
    assert fake.version_calls() == 1


async def test_hung_binary_is_bounded_by_the_resolution_timeout(fake: FakeSindri, clock: FakeClock) -> None:
    fake.control(version_sleep=30)
    cli = SindriCli(str(fake.path), clock, timeout_seconds=0.5)
    started = time.monotonic()
    facts = await cli.resolve()
    assert not facts.available
    assert time.monotonic() - started < 4


async def test_probe_gets_the_allow_listed_environment_only(
    fake: FakeSindri, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("SINDRI_CONSOLE_API_KEY", "ak_bootstrap_secret")
    await SindriCli(str(fake.path), clock).resolve()
    keys = fake.calls()[0]["env_keys"]
    assert "DATABASE_URL" not in keys and "SINDRI_CONSOLE_API_KEY" not in keys
    assert "PATH" in keys


def test_min_instance_version_rule() -> None:
    facts = CliFacts(available=True, version="3.4.1+build.7")
    assert min_instance_version("3.2.0", facts) == ("3.2.0", "ENV")
    assert min_instance_version(None, facts) == ("3.4.0", "CLI")
    assert min_instance_version("", facts) == ("3.4.0", "CLI")
    assert min_instance_version(None, CliFacts(available=False)) == (None, None)
    assert min_instance_version(None, None) == (None, None)
    assert min_instance_version(None, CliFacts(available=True, version="v2.10.3")) == ("2.10.0", "CLI")


def test_version_output_parsers() -> None:
    assert parse_version_json('{"version": "3.4.1"}') == {
        "version": "3.4.1",
        "target": None,
        "commit": None,
        "build_date": None,
    }
    assert parse_version_json('warming up\n{"version": "v3.0.0", "commit": 7}')["version"] == "3.0.0"
    assert parse_version_json('{"version": "three"}') is None
    assert parse_version_json('["3.4.1"]') is None
    assert parse_version_json("") is None
    assert first_semver_token("sindri 3.4.1 (abc 2026-10-01)") == "3.4.1"
    assert first_semver_token("sindri version v10.0.0-rc.2+sha.1,") == "10.0.0-rc.2+sha.1"
    assert first_semver_token("build 1.2 on 2026-10-01") is None


# ---------------------------------------------------------------------------------------------------------
# Environment allow-list
# ---------------------------------------------------------------------------------------------------------


async def test_env_allow_list_reaches_the_child(fake: FakeSindri, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATABASE_URL": "postgresql://u:p@db/x",
        "SINDRI_CONSOLE_API_KEY": "ak_bootstrap_secret",
        "SECRET_VAULT_KEY": "0" * 64,
        "REDIS_URL": "redis://r",
        "SOMETHING_ELSE": "x",
        "XDG_CONFIG_HOME": "/cfg",
        "KUBECONFIG": "/kube",
        "FLY_API_TOKEN": "fly-token-from-env",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_CUSTOM_THING": "aws-extra",
        "AZURE_CLIENT_SECRET": "",
        "HOME": "/home/sindri",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    looked_up: list[str] = []

    def vault(name: str) -> str | None:
        looked_up.append(name)
        return {"RUNPOD_API_KEY": "vault-runpod", "AZURE_CLIENT_SECRET": "vault-azure"}.get(name)

    env = build_cli_env({"DOCKER_HOST": "tcp://docker-1:2376", "MY_SECRET": "s3cr3t-value"}, vault)
    result = await _run(fake, ["env"], env=env)
    child = json.loads((fake.dir / "env.json").read_text())
    child.pop("LC_CTYPE", None)  # the interpreter may add this one itself (PEP 538)

    for forbidden in (
        "DATABASE_URL",
        "SINDRI_CONSOLE_API_KEY",
        "SECRET_VAULT_KEY",
        "REDIS_URL",
        "SOMETHING_ELSE",
    ):
        assert forbidden not in child
    assert child["XDG_CONFIG_HOME"] == "/cfg"
    assert child["KUBECONFIG"] == "/kube"
    assert child["HOME"] == "/home/sindri"
    assert child["FLY_API_TOKEN"] == "fly-token-from-env"
    assert child["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE"
    assert child["AWS_CUSTOM_THING"] == "aws-extra"
    assert child["RUNPOD_API_KEY"] == "vault-runpod"
    assert child["AZURE_CLIENT_SECRET"] == "vault-azure"  # empty in the environment counts as absent
    assert child["DOCKER_HOST"] == "tcp://docker-1:2376"
    assert child["MY_SECRET"] == "s3cr3t-value"
    assert set(child) <= set(env)
    assert "FLY_API_TOKEN" not in looked_up and "RUNPOD_API_KEY" in looked_up
    assert set(looked_up) <= set(cli_runner.PROVIDER_CREDENTIAL_NAMES)
    # credentials given to the CLI are masked if it echoes them
    assert "fly-token-from-env" not in result.stdout and "vault-runpod" not in result.stdout


def test_build_cli_env_rejects_bad_extra() -> None:
    with pytest.raises(ValueError):
        build_cli_env({"BAD=NAME": "x"}, environ={})
    with pytest.raises(ValueError):
        build_cli_env({"NAME": "a\x00b"}, environ={})
    assert build_cli_env(None, environ={"PATH": "/bin", "LANG": "C"}) == {"PATH": "/bin", "LANG": "C"}


def test_credential_values_skip_plain_settings() -> None:
    env = {"FLY_API_TOKEN": "tok-123456", "AWS_DEFAULT_REGION": "eu-west-1", "PATH": "/bin", "AZURE_X": "az"}
    assert sorted(credential_values(env)) == ["az", "tok-123456"]


# ---------------------------------------------------------------------------------------------------------
# Running: outcomes
# ---------------------------------------------------------------------------------------------------------


async def test_success_captures_both_streams(fake: FakeSindri) -> None:
    fake.control(script=[["out", "deploying\n"], ["err", "warn: slow\n"], ["out", "done\n"]], last_line="42")
    result = await _run(fake)
    assert result.succeeded and result.exit_code == 0 and not result.timed_out and result.start_error is None
    assert result.stdout == "deploying\ndone\n42\n"
    assert result.stderr == "warn: slow\n"
    assert result.stdout_tail == result.stdout and result.stderr_tail == result.stderr
    assert result.last_stderr_line == "warn: slow"
    assert result.duration_seconds > 0
    assert fake.calls()[0]["argv"] == ["deploy", "--config", "sindri.yaml"]


async def test_failure_keeps_stderr_and_last_line(fake: FakeSindri) -> None:
    long_line = "E" * 600
    fake.control(script=[["err", "first problem\n"], ["err", long_line + "\n\n   \n"]], exit=3)
    result = await _run(fake)
    assert not result.succeeded and result.exit_code == 3 and not result.timed_out
    assert "first problem" in result.stderr
    assert result.last_stderr_line == "E" * 500


async def test_runs_in_cwd_with_stdin_closed_in_own_session(fake: FakeSindri, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = await _run(fake, ["stdin"], cwd=str(work))
    assert result.stdout.strip() == "''"  # EOF at once: stdin is /dev/null
    start = fake.calls()[0]
    assert start["pgid"] == start["pid"] == start["sid"]
    assert start["pgid"] != os.getpgid(0)


async def test_argv_is_never_interpreted_by_a_shell(fake: FakeSindri, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    argv = ["destroy", "--config", f"x; touch {marker}", "$(touch {marker})"]
    await _run(fake, argv)
    assert fake.calls()[0]["argv"] == argv
    assert not marker.exists()


async def test_timeout_kills_the_whole_process_group(fake: FakeSindri) -> None:
    fake.control(spawn_child=True, sleep=30, script=[["out", "started\n"]])
    started = time.monotonic()
    result = await _run(fake, timeout_seconds=0.8, kill_grace_seconds=1.0)
    child = fake.child_pid()
    try:
        assert result.timed_out and not result.succeeded
        assert result.exit_code == -signal.SIGTERM
        assert time.monotonic() - started < 5
        assert result.stdout == "started\n"
        assert await _wait_gone(child), "the CLI's child survived the timeout"
        assert await _wait_gone(fake.calls()[0]["pid"])
        assert fake.calls("end") == []
    finally:
        _kill_if_alive(child)


async def test_sigkill_after_grace_when_sigterm_is_ignored(fake: FakeSindri) -> None:
    fake.control(ignore_term=True, sleep=30)
    started = time.monotonic()
    result = await _run(fake, timeout_seconds=0.5, kill_grace_seconds=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code == -signal.SIGKILL
    assert 0.9 <= elapsed < 5


async def test_start_errors_are_one_sentence_without_paths(fake: FakeSindri, tmp_path: Path) -> None:
    missing = await run_cli(str(tmp_path / "nope" / "sindri"), ["stop"], env={}, timeout_seconds=5)
    assert missing.start_error == "The Sindri CLI could not be started: the program was not found."
    assert missing.exit_code is None and not missing.succeeded and not missing.timed_out

    fake.path.chmod(0o644)
    denied = await _run(fake)
    assert denied.start_error == "The Sindri CLI could not be started: permission denied."
    fake.path.chmod(0o755)

    no_cwd = await _run(fake, cwd=str(tmp_path / "gone"))
    assert no_cwd.start_error == "The Sindri CLI could not be started: the working directory is not usable."

    none = await run_cli(None, ["stop"], env={}, timeout_seconds=5)
    assert none.start_error is not None
    for result in (missing, denied, no_cwd, none):
        assert str(tmp_path) not in result.start_error
    assert fake.calls() == []


async def test_leftover_child_holding_the_pipe_does_not_block(fake: FakeSindri) -> None:
    fake.control(spawn_child=True, script=[["out", "bye\n"]])
    started = time.monotonic()
    result = await _run(fake, drain_seconds=0.3)
    child = fake.child_pid()
    try:
        assert result.succeeded and result.stdout == "bye\n"
        assert time.monotonic() - started < 5
    finally:
        _kill_if_alive(child)


async def test_cancellation_kills_the_process_group(fake: FakeSindri) -> None:
    fake.control(spawn_child=True, sleep=30)
    child_started = asyncio.Event()

    async def on_line(stream: str, line: str) -> None:
        if line == "child-started":
            child_started.set()

    task = asyncio.create_task(_run(fake, on_line=on_line))
    await asyncio.wait_for(child_started.wait(), 5)
    child = fake.child_pid()
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _wait_gone(child)
        assert await _wait_gone(fake.calls()[0]["pid"])
    finally:
        _kill_if_alive(child)


# ---------------------------------------------------------------------------------------------------------
# Running: output handling
# ---------------------------------------------------------------------------------------------------------


async def test_output_cap_and_tails(fake: FakeSindri, tmp_path: Path) -> None:
    secret = "CapBoundarySecret-" + "".join(chr(65 + (i * 7) % 26) for i in range(40))
    filler = b"".join(b"%07d" % i + b"." * 1016 + b"\n" for i in range(OUTPUT_CAP_BYTES // 1024))
    # The secret straddles the 10 MiB cut; the stream goes on for 2 MiB more and ends with a marker.
    head = filler[: OUTPUT_CAP_BYTES - 20]
    rest = filler[: 2 * 1024 * 1024] + b"THE-END\n"
    payload = head + secret.encode() + b"\n" + rest
    blob = tmp_path / "blob"
    blob.write_bytes(payload)
    fake.control(script=[["file", str(blob)], ["err", "e" * 100 + "\n"]])

    result = await _run(fake, secrets_to_redact=[secret], mask="****")
    assert result.succeeded
    assert result.stdout_bytes == len(payload) and result.stdout_truncated
    assert len(result.stdout.encode()) <= OUTPUT_CAP_BYTES
    assert result.stdout.startswith(head.decode())
    assert result.stdout[len(head) :] in "****"  # the secret's place holds (part of) the mask only
    for i in range(len(secret) - 6):
        assert secret[i : i + 6] not in result.stdout[len(head) - 10 :]
    assert result.stdout_tail.endswith("THE-END\n")
    assert TAIL_BYTES - 1024 < len(result.stdout_tail.encode()) <= TAIL_BYTES
    assert rest.decode().endswith(result.stdout_tail)
    assert not result.stderr_truncated and result.stderr_tail == "e" * 100 + "\n"
    assert len(result.output_tail.encode()) <= TAIL_BYTES
    assert result.output_tail.endswith("e" * 100 + "\n")


async def test_tail_never_keeps_a_fragment_of_a_secret(fake: FakeSindri) -> None:
    secret = "TailSecret" + "".join(chr(97 + (i * 5) % 26) for i in range(50))
    # The last 64 KiB start 30 characters before the end of the secret.
    after = "z" * (TAIL_BYTES - 30)
    fake.control(script=[["out", "a" * 100_000], ["out", secret], ["out", after]])
    result = await _run(fake, secrets_to_redact=[secret])
    assert len(result.stdout_tail.encode()) <= TAIL_BYTES
    assert result.stdout_tail.endswith(after)
    assert result.stdout_tail[: -len(after)] in "***"
    assert secret[-30:] not in result.stdout_tail and secret[-8:] not in result.output_tail
    assert secret not in result.stdout and "***" in result.stdout


async def test_redaction_everywhere_with_configurable_mask(fake: FakeSindri) -> None:
    secret, short = "hunter2-secret", "abc12"
    fake.control(
        script=[
            ["out", f"token={secret} short={short}\n"],
            ["err", f"failed with {secret}\n"],
            ["out", f"fly {'fly-token-123'}\n"],
        ],
        exit=1,
    )
    lines: list[tuple[str, str]] = []

    async def on_line(stream: str, line: str) -> None:
        lines.append((stream, line))

    env = build_cli_env({"FLY_API_TOKEN": "fly-token-123"}, environ={"PATH": os.environ["PATH"]})
    result = await _run(fake, env=env, secrets_to_redact=[secret, short], on_line=on_line, mask="****")
    texts = [result.stdout, result.stderr, result.stdout_tail, result.stderr_tail, result.output_tail]
    texts += [result.last_stderr_line or ""] + [line for _, line in lines]
    for text in texts:
        assert secret not in text and "fly-token-123" not in text
    assert result.stdout == f"token=**** short={short}\nfly ****\n"  # values under 6 chars stay
    assert result.last_stderr_line == "failed with ****"

    default = await _run(fake, env=env, secrets_to_redact=[secret])
    assert default.stdout == f"token=*** short={short}\nfly ***\n"


async def test_on_line_order_splitting_and_decoding(fake: FakeSindri) -> None:
    long_line = "x" * (2 * LINE_MAX_CHARS + 5000)
    fake.control(
        script=[
            ["out", "out-0\n"],
            ["sleep", 0.05],
            ["err", "err-0\n"],
            ["sleep", 0.05],
            ["out", "out-1\r\n"],
            ["sleep", 0.05],
            ["err", "err-1\n"],
            ["sleep", 0.05],
            ["out", long_line + "\n"],
            ["sleep", 0.05],
            ["outb", "6f6b2dff2d6f6b0a"],  # "ok-\xff-ok\n": invalid UTF-8
            ["sleep", 0.05],
            ["out", "no newline at end"],
        ]
    )
    seen: list[tuple[str, str]] = []
    active = 0

    async def on_line(stream: str, line: str) -> None:
        nonlocal active
        active += 1
        assert active == 1, "on_line must never be re-entered"
        await asyncio.sleep(0.001)
        seen.append((stream, line))
        active -= 1

    result = await _run(fake, on_line=on_line)
    assert result.succeeded
    assert seen == [
        ("stdout", "out-0"),
        ("stderr", "err-0"),
        ("stdout", "out-1"),
        ("stderr", "err-1"),
        ("stdout", "x" * LINE_MAX_CHARS),
        ("stdout", "x" * LINE_MAX_CHARS),
        ("stdout", "x" * 5000),
        ("stdout", "ok-\ufffd-ok"),
        ("stdout", "no newline at end"),
    ]
    assert result.output_tail.startswith("out-0\nerr-0\nout-1\nerr-1\n")
    assert result.output_tail.endswith("ok-\ufffd-ok\nno newline at end\n")


async def test_slow_callback_still_gets_every_line_after_exit(fake: FakeSindri) -> None:
    lines = [f"line-{i:03d}-" + "p" * 2000 for i in range(120)]  # more than a pipe buffer holds
    fake.control(script=[["out", "".join(line + "\n" for line in lines)]])
    seen: list[str] = []

    async def on_line(stream: str, line: str) -> None:
        await asyncio.sleep(0.005)
        seen.append(line)

    result = await _run(fake, on_line=on_line, drain_seconds=0.2)
    assert result.succeeded
    assert seen == lines


async def test_secret_across_a_long_line_split_is_masked_whole(fake: FakeSindri) -> None:
    secret = "SplitSecret-0123456789"
    line = "a" * (LINE_MAX_CHARS - 5) + secret + "b" * 15_000
    fake.control(script=[["out", line]])  # unterminated: split while still streaming
    pieces: list[str] = []

    async def on_line(stream: str, text: str) -> None:
        pieces.append(text)

    await _run(fake, on_line=on_line, secrets_to_redact=[secret])
    assert all(len(p) <= LINE_MAX_CHARS for p in pieces)
    assert "".join(pieces) == "a" * (LINE_MAX_CHARS - 5) + "***" + "b" * 15_000


async def test_on_line_failure_stops_the_process_and_propagates(fake: FakeSindri) -> None:
    fake.control(script=[["out", "one\n"]], sleep=30)

    async def on_line(stream: str, line: str) -> None:
        raise RuntimeError("database down")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="database down"):
        await _run(fake, on_line=on_line, kill_grace_seconds=0.5)
    assert time.monotonic() - started < 5
    assert await _wait_gone(fake.calls()[0]["pid"])


def test_redactor_handles_multiline_secrets_and_overlaps() -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----"
    redactor = Redactor([pem, "short", "", "MIIEvQ"], "****")
    assert redactor.redact(f"x {pem} y") == "x **** y"
    assert redactor.redact("line: MIIEvQIBADANBg") == "line: ****"
    assert redactor.redact("short is kept") == "short is kept"
    assert not Redactor(["abc"])
    assert redact_secrets("a=longsecret b=longsecret", ["longsecret"]) == "a=*** b=***"
    assert redact_secrets("back\\slash", ["\\slash"], mask="\\1") == "back\\1"


# ---------------------------------------------------------------------------------------------------------
# Semantic versions
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0.0", "2.0.0", -1),
        ("2.1.0", "2.0.9", 1),
        ("3.4.1", "3.4.1", 0),
        ("3.4.1+build.1", "3.4.1+build.2", 0),
        ("1.0.0-alpha", "1.0.0", -1),
        ("1.0.0-alpha", "1.0.0-alpha.1", -1),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1),
        ("1.0.0-alpha.beta", "1.0.0-beta", -1),
        ("1.0.0-beta.2", "1.0.0-beta.11", -1),
        ("1.0.0-beta.11", "1.0.0-rc.1", -1),
        ("1.0.0-rc.1", "1.0.0", -1),
        ("10.0.0", "9.99.99", 1),
        ("v3.4.1", "3.4.1", 0),
        ("3.4", "3.4.0", None),
        ("01.2.3", "1.2.3", None),
        (None, "1.2.3", None),
    ],
)
def test_compare_semver_table(a: str | None, b: str | None, expected: int | None) -> None:
    assert compare_semver(a, b) == expected
    if expected is not None:
        assert compare_semver(b, a) == -expected


def test_version_status() -> None:
    assert version_status("3.4.1", "3.4.0") == "CURRENT"
    assert version_status("3.4.0", "3.4.0") == "CURRENT"
    assert version_status("3.4.0+meta", "3.4.0") == "CURRENT"
    assert version_status("3.4.0-rc.1", "3.4.0") == "OUTDATED"
    assert version_status("3.3.9", "3.4.0") == "OUTDATED"
    assert version_status(None, "3.4.0") == "UNKNOWN"
    assert version_status("3.4.1", None) == "UNKNOWN"
    assert version_status("latest", "3.4.0") == "UNKNOWN"


def test_parse_semver_validates_strictly() -> None:
    assert parse_semver("3.2.0") == SemVer(3, 2, 0)
    assert parse_semver("1.0.0-rc.1+sha.5") == SemVer(1, 0, 0, ("rc", "1"), ("sha", "5"))
    for bad in (
        "",
        "3.2",
        "3.2.0.1",
        "03.2.0",
        "3.2.0-",
        "3.2.0+",
        "3.2.0-01",
        "3.2.0-a..b",
        "v3.2.0",
        "３.2.0",
    ):
        assert parse_semver(bad) is None, bad
    assert parse_semver(320) is None
    assert parse_semver("v3.2.0", allow_v_prefix=True) == SemVer(3, 2, 0)


_IDENT_NUM = st.integers(0, 12).map(str)
_IDENT_ALNUM = st.sampled_from(["alpha", "beta", "rc", "a", "b-2", "-", "0a", "9z", "Z", "rc1", "x-y"])
_VERSIONS = st.builds(
    SemVer,
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.lists(st.one_of(_IDENT_NUM, _IDENT_ALNUM), max_size=3).map(tuple),
    st.lists(st.sampled_from(["build", "7", "sha-1", "001", "x"]), max_size=2).map(tuple),
)


def _oracle_key(v: SemVer) -> tuple:
    # Independent model of SemVer §11: release after its pre-releases, numeric identifiers before
    # alphanumeric ones, a shorter identifier list first when it is a prefix (tuple order does that).
    ids = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in v.prerelease)
    return (v.major, v.minor, v.patch, 0 if v.prerelease else 1, ids)


@settings(max_examples=300, deadline=None)
@given(_VERSIONS, _VERSIONS)
def test_compare_matches_the_model_and_is_antisymmetric(a: SemVer, b: SemVer) -> None:
    ka, kb = _oracle_key(a), _oracle_key(b)
    expected = (ka > kb) - (ka < kb)
    assert compare_semver(str(a), str(b)) == expected
    assert compare_semver(str(b), str(a)) == -expected


@settings(max_examples=200, deadline=None)
@given(_VERSIONS)
def test_round_trip_build_metadata_and_prerelease(v: SemVer) -> None:
    assert parse_semver(str(v)) == v
    release = SemVer(v.major, v.minor, v.patch)
    assert compare_semver(str(v), str(SemVer(v.major, v.minor, v.patch, v.prerelease, ("zz", "9")))) == 0
    if v.prerelease:
        assert compare_semver(str(v), str(release)) == -1
        assert version_status(str(v), str(release)) == "OUTDATED"
    else:
        assert version_status(str(v), str(release)) == "CURRENT"


# ---------------------------------------------------------------------------------------------------------
# Argument vectors
# ---------------------------------------------------------------------------------------------------------


def test_lifecycle_argv_table() -> None:
    assert suspend_argv("sindri.yaml") == ["stop", "--config", "sindri.yaml"]
    assert resume_argv("sindri.yaml") == ["start", "--config", "sindri.yaml"]
    assert destroy_argv("sindri.yaml") == ["destroy", "--force", "--config", "sindri.yaml"]
    assert deploy_argv("sindri.yaml") == ["deploy", "--config", "sindri.yaml"]
    assert backup_argv("sindri.yaml", "backup-web-1-20261128T120000Z", "USER_DATA", 6) == [
        "connect",
        "--config",
        "sindri.yaml",
        "--command",
        "sindri backup --output ~/.sindri/backups/backup-web-1-20261128T120000Z.tar.gz --profile user-data "
        "--compression 6 --yes && stat -c %s ~/.sindri/backups/backup-web-1-20261128T120000Z.tar.gz",
    ]
    assert "--profile full" in backup_argv("c", "b", "full", 9)[4]
    assert "--profile standard" in backup_argv("c", "b", "Standard", 1)[4]


@pytest.mark.parametrize(
    ("label", "profile", "level"),
    [
        ("x; rm -rf ~", "STANDARD", 6),
        ("-label", "STANDARD", 6),
        ("a" * 129, "STANDARD", 6),
        ("ok", "EVERYTHING", 6),
        ("ok", "STANDARD", 0),
        ("ok", "STANDARD", 10),
        ("ok", "STANDARD", True),
    ],
)
def test_backup_argv_refuses_unsafe_values(label: str, profile: str, level: int) -> None:
    with pytest.raises(ValueError):
        backup_argv("sindri.yaml", label, profile, level)


def test_missing_cli_message_is_the_contract_sentence() -> None:
    assert CLI_MISSING_MESSAGE == (
        "The Sindri CLI was not found. Install it (https://github.com/pacphi/sindri) "
        "or set SINDRI_BIN_PATH to its path."
    )
