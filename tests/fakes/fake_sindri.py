"""A fake `sindri` executable for tests of everything that runs the CLI (lifecycle, deployments, registry).

The fake is a small Python script written into a directory of the test's choosing. Its behaviour is read
from `control.json` next to it (the CLI runner passes only an allow-listed environment, so environment
variables cannot steer it), and every call appends JSON lines to `calls.log`:

- `{"event": "start", "argv": [...], "pid", "t", "cwd", "config": {...} | null, "env_keys": [...]}`
- `{"event": "end", "argv": [...], "pid", "t", "exit": <code>}`

`config` describes the file named by `--config` when the call had one: whether it existed, its mode and its
text (so a test can check that the console wrote `sindri.yaml` with mode 0600 before the call).

Behaviour per call: the global keys of the control file, overridden by `commands[<first argument>]`
(e.g. `commands={"connect": {"exit": 1}}` fails only the backup step of a destroy):

| key | meaning |
|---|---|
| `exit` | exit code (default 0) |
| `sleep` | seconds to sleep before the last line (default 0) |
| `stdout` / `stderr` | lists of lines written first, in order (stderr lines after stdout lines) |
| `line_delay` | seconds between those lines (streaming tests) |
| `last_line` | a final stdout line (e.g. the byte count `stat -c %s` prints after a backup) |
| `ignore_term` | ignore SIGTERM (only SIGKILL ends it) |

`sindri version --json` prints the version object of 10-core §20 (`version` overridable) and never sleeps
unless `version_sleep` is set, so the console's CLI resolver finds it quickly.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = r'''#!{python}
import json, os, signal, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = sys.argv[1:]


def load_control():
    try:
        with open(os.path.join(HERE, "control.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {{}}


def record(entry):
    entry["pid"] = os.getpid()
    entry["t"] = time.time()
    line = json.dumps(entry) + "\n"
    # One write per line in append mode: concurrent fakes never interleave inside a line.
    fd = os.open(os.path.join(HERE, "calls.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def describe_config():
    if "--config" not in ARGS:
        return None
    i = ARGS.index("--config")
    if i + 1 >= len(ARGS):
        return None
    path = ARGS[i + 1]
    full = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    info = {{"path": path, "exists": os.path.isfile(full), "mode": None, "text": None}}
    if info["exists"]:
        info["mode"] = oct(os.stat(full).st_mode & 0o777)
        with open(full, encoding="utf-8", errors="replace") as fh:
            info["text"] = fh.read(65536)
    return info


control = load_control()
behaviour = {{k: v for k, v in control.items() if k != "commands"}}
if ARGS:
    behaviour.update((control.get("commands") or {{}}).get(ARGS[0], {{}}))

record({{"event": "start", "argv": ARGS, "cwd": os.getcwd(), "config": describe_config(),
        "env_keys": sorted(os.environ)}})


def finish(code):
    sys.stdout.flush()
    sys.stderr.flush()
    record({{"event": "end", "argv": ARGS, "exit": code}})
    os._exit(code)


if behaviour.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: finish(143))

if ARGS == ["version", "--json"]:
    time.sleep(float(control.get("version_sleep", 0)))
    print(json.dumps({{"version": control.get("version", "3.4.1"), "commit": "abc1234",
                      "build_date": "2026-10-01", "target": "x86_64-unknown-linux-gnu"}}))
    finish(0)

if ARGS == ["--version"]:
    print("sindri " + control.get("version", "3.4.1"))
    finish(0)

delay = float(behaviour.get("line_delay", 0))
for line in behaviour.get("stdout", []):
    print(line, flush=True)
    time.sleep(delay)
for line in behaviour.get("stderr", []):
    print(line, file=sys.stderr, flush=True)
    time.sleep(delay)

deadline = time.time() + float(behaviour.get("sleep", 0))
while time.time() < deadline:
    time.sleep(min(0.05, max(0.0, deadline - time.time())))

if behaviour.get("last_line") is not None:
    print(behaviour["last_line"], flush=True)
finish(int(behaviour.get("exit", 0)))
'''


@dataclass(frozen=True)
class FakeRun:
    """One finished (or still running) call of the fake."""

    argv: list[str]
    pid: int
    started: float
    ended: float | None
    exit: int | None
    cwd: str
    config: dict[str, Any] | None
    env_keys: list[str]

    @property
    def command(self) -> str | None:
        return self.argv[0] if self.argv else None


class FakeSindri:
    """The fake binary at `<directory>/sindri` plus readers of what it recorded."""

    def __init__(self, directory: Path, name: str = "sindri") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.path = directory / name
        self.path.write_text(SCRIPT.format(python=sys.executable))
        self.path.chmod(0o755)
        self.log_path = directory / "calls.log"
        self.control()

    def control(self, **values: Any) -> None:
        """Replace the whole behaviour (see the module docstring); takes effect for the next call."""
        tmp = self.dir / "control.json.tmp"
        tmp.write_text(json.dumps(values))
        tmp.replace(self.dir / "control.json")

    def entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def runs(self, *, include_version: bool = False) -> list[FakeRun]:
        """Calls in start order; `version` probes of the resolver are left out unless asked for."""
        ends = {e["pid"]: e for e in self.entries() if e["event"] == "end"}
        out = []
        for e in self.entries():
            if e["event"] != "start":
                continue
            if not include_version and e["argv"] in (["version", "--json"], ["--version"]):
                continue
            end = ends.get(e["pid"])
            out.append(FakeRun(argv=e["argv"], pid=e["pid"], started=e["t"], ended=end["t"] if end else None,
                               exit=end["exit"] if end else None, cwd=e["cwd"], config=e["config"],
                               env_keys=e["env_keys"]))
        return out

    def commands(self) -> list[str | None]:
        """First argument of each non-version call, in start order (`stop`, `connect`, `destroy`, …)."""
        return [r.command for r in self.runs()]

    def max_overlap(self) -> int:
        """The largest number of calls that were running at the same moment."""
        points: list[tuple[float, int]] = []
        for r in self.runs():
            points.append((r.started, 1))
            points.append((r.ended if r.ended is not None else float("inf"), -1))
        # At equal times an end counts before a start: touching intervals do not overlap.
        points.sort(key=lambda p: (p[0], p[1]))
        best = current = 0
        for _, delta in points:
            current += delta
            best = max(best, current)
        return best

    def wait_for_runs(self, count: int, timeout: float = 10.0, *, finished: bool = False) -> list[FakeRun]:
        """Poll (blocking; call from a thread or between awaits) until `count` calls started (or ended)."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs()
            done = [r for r in runs if r.ended is not None] if finished else runs
            if len(done) >= count or time.monotonic() > deadline:
                return runs
            time.sleep(0.02)
