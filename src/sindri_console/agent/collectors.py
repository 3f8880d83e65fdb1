"""Heartbeat, metrics, processes and extensions collectors (40-agent-protocol §4.2, §4.3, §4.10, §4.11, §10.3)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from typing import Any

import psutil

from sindri_console.agent.util import iso_from_epoch, now_iso, sanitized_environ

MAX_PROCESSES = 100
MAX_EXTENSIONS = 500
EXTENSION_STATUSES = {"installed", "installing", "failed", "removed", "disabled", "unknown"}
COLLECTOR_OUTPUT_CAP = 64 * 1024 * 1024
_LOOPBACK_NICS = re.compile(r"^lo(\d+|back\d*)?$")


def _clamp_percent(value: float) -> float:
    return round(min(100.0, max(0.0, float(value))), 2)


class CpuSampler:
    """CPU usage as the delta of ``psutil.cpu_times`` since this sampler's previous reading.

    Heartbeat and metrics each own one, so neither shortens the other's measuring window.
    """

    def __init__(self) -> None:
        self._last = psutil.cpu_times()
        self._last_per_cpu = psutil.cpu_times(percpu=True)

    @staticmethod
    def _busy_and_total(before: Any, after: Any) -> tuple[float, float, float]:
        fields = after._fields
        total = sum(getattr(after, f) - getattr(before, f) for f in fields if f not in {"guest", "guest_nice"})
        idle = sum(getattr(after, f) - getattr(before, f) for f in ("idle", "iowait") if f in fields)
        steal = getattr(after, "steal", 0.0) - getattr(before, "steal", 0.0) if "steal" in fields else 0.0
        return total - idle, total, steal

    def sample(self) -> tuple[float, list[float], float]:
        """Return (overall %, per-core %, steal %) since the previous call."""
        now = psutil.cpu_times()
        now_per_cpu = psutil.cpu_times(percpu=True)
        busy, total, steal = self._busy_and_total(self._last, now)
        overall = _clamp_percent(100.0 * busy / total) if total > 0 else 0.0
        steal_pct = _clamp_percent(100.0 * steal / total) if total > 0 else 0.0
        per_core: list[float] = []
        for before, after in zip(self._last_per_cpu, now_per_cpu, strict=False):
            c_busy, c_total, _ = self._busy_and_total(before, after)
            per_core.append(_clamp_percent(100.0 * c_busy / c_total) if c_total > 0 else 0.0)
        self._last, self._last_per_cpu = now, now_per_cpu
        return overall, per_core, steal_pct


def _load_averages() -> tuple[float, float, float]:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return 0.0, 0.0, 0.0
    return round(one, 2), round(five, 2), round(fifteen, 2)


def heartbeat_data(sampler: CpuSampler, agent_started_monotonic: float) -> dict[str, Any]:
    cpu, _, _ = sampler.sample()
    memory = psutil.virtual_memory()
    data: dict[str, Any] = {
        "timestamp": now_iso(),
        "uptimeSeconds": max(0, int(time.monotonic() - agent_started_monotonic)),
        "systemUptimeSeconds": max(0, int(time.time() - psutil.boot_time())),
        "cpuPercent": cpu,
        "memoryUsedBytes": int(memory.used),
        "memoryTotalBytes": int(memory.total),
        "loadAvg1": _load_averages()[0],
    }
    try:
        disk = psutil.disk_usage("/")
        data["diskUsedBytes"] = int(disk.used)
        data["diskTotalBytes"] = int(disk.total)
    except OSError:
        pass  # columns not reported stay null on the server
    return data


def _disks() -> list[dict[str, Any]]:
    disks: list[dict[str, Any]] = []
    for part in psutil.disk_partitions(all=False):
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except (OSError, PermissionError):
            continue  # unreadable mounts are skipped
        disks.append(
            {
                "mountPoint": part.mountpoint,
                "device": part.device,
                "fsType": part.fstype,
                "totalBytes": int(usage.total),
                "usedBytes": int(usage.used),
                "freeBytes": int(usage.free),
                "usagePercent": _clamp_percent(usage.percent),
            }
        )
    return disks


def metrics_data(sampler: CpuSampler) -> dict[str, Any]:
    timestamp = now_iso()
    cpu, per_core, steal = sampler.sample()
    load1, load5, load15 = _load_averages()
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    network = {"bytesSent": 0, "bytesRecv": 0, "packetsSent": 0, "packetsRecv": 0}
    for nic, counters in (psutil.net_io_counters(pernic=True) or {}).items():
        if _LOOPBACK_NICS.match(nic):
            continue
        network["bytesSent"] += counters.bytes_sent
        network["bytesRecv"] += counters.bytes_recv
        network["packetsSent"] += counters.packets_sent
        network["packetsRecv"] += counters.packets_recv
    data: dict[str, Any] = {
        "timestamp": timestamp,
        "cpu": {
            "usagePercent": cpu,
            "loadAvg1": load1,
            "loadAvg5": load5,
            "loadAvg15": load15,
            "coreCount": psutil.cpu_count() or len(per_core) or 1,
            "perCore": per_core,
            "stealPercent": steal,
        },
        "memory": {
            "totalBytes": int(memory.total),
            "usedBytes": int(memory.used),
            "freeBytes": int(memory.available),
            "cachedBytes": int(getattr(memory, "cached", 0)),
            "usagePercent": _clamp_percent(memory.percent),
            "swapTotalBytes": int(swap.total),
            "swapUsedBytes": int(swap.used),
        },
        "disk": _disks(),
        "network": network,
    }
    try:
        io = psutil.disk_io_counters()
    except (OSError, RuntimeError):
        io = None
    if io is not None:
        data["diskIo"] = {"readBytes": int(io.read_bytes), "writeBytes": int(io.write_bytes)}
    return data


_SECRET_NAMES = r"(?:password|passwd|secret|token|api-key|apikey|api_key|access-key)"
# --name=value, NAME=value (the name may carry a prefix such as DB_PASSWORD or --github-token)
_SECRET_ASSIGN = re.compile(rf"(?i)(\b[\w.-]*{_SECRET_NAMES}[\w.-]*=)(\S+)")
_SECRET_FLAG = re.compile(rf"(?i)^-{{1,2}}[\w.-]*{_SECRET_NAMES}[\w.-]*$")


def redact_command_line(args: list[str]) -> str:
    """Join a process's arguments with the values of secret-looking options replaced by ``***`` (§10.8)."""
    out: list[str] = []
    hide_next = False
    # Some programs rewrite their argv into one space-separated string, so split on spaces first.
    for arg in " ".join(args).split(" "):
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        if _SECRET_FLAG.match(arg):
            out.append(arg)
            hide_next = True
            continue
        out.append(_SECRET_ASSIGN.sub(lambda m: m.group(1) + "***", arg))
    return " ".join(out)


class ProcessCollector:
    """Keeps ``psutil.Process`` objects between runs so ``cpu_percent`` is a real delta."""

    _ATTRS = ["pid", "ppid", "name", "username", "status", "memory_percent", "memory_info", "create_time", "cmdline"]

    def __init__(self) -> None:
        self._known: dict[int, psutil.Process] = {}

    def collect(self) -> dict[str, Any]:
        timestamp = now_iso()
        seen: dict[int, psutil.Process] = {}
        items: list[dict[str, Any]] = []
        for proc in psutil.process_iter():
            cached = self._known.get(proc.pid)
            try:
                if cached is not None and cached.create_time() == proc.create_time():
                    proc = cached
                cpu = proc.cpu_percent(None)
                info = proc.as_dict(attrs=self._ATTRS, ad_value=None)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            seen[proc.pid] = proc
            memory = info.get("memory_info")
            cmdline = info.get("cmdline") or []
            command = redact_command_line(list(cmdline))[:512] if cmdline else None
            created = info.get("create_time")
            items.append(
                {
                    "pid": info["pid"],
                    "ppid": info.get("ppid") or 0,
                    "name": (info.get("name") or "")[:256],
                    "username": (info.get("username") or None) and str(info["username"])[:64],
                    "status": str(info.get("status") or "unknown")[:32],
                    "cpuPercent": round(max(0.0, cpu or 0.0), 2),
                    "memoryPercent": _clamp_percent(info.get("memory_percent") or 0.0),
                    "memoryRssBytes": int(memory.rss) if memory is not None else 0,
                    "createTime": iso_from_epoch(created) if created else None,
                    "command": command,
                }
            )
        self._known = seen
        items.sort(key=lambda p: (-p["cpuPercent"], -p["memoryRssBytes"]))
        return {"timestamp": timestamp, "totalCount": len(items), "processes": items[:MAX_PROCESSES]}


async def _run_tool(argv: list[str], limit_seconds: float) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=sanitized_environ(),
        start_new_session=True,
    )

    async def capped(stream: asyncio.StreamReader) -> bytes:
        buf = bytearray()
        while chunk := await stream.read(65536):
            if len(buf) < COLLECTOR_OUTPUT_CAP:
                buf += chunk[: COLLECTOR_OUTPUT_CAP - len(buf)]
        return bytes(buf)

    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(limit_seconds):
            out, err, code = await asyncio.gather(capped(proc.stdout), capped(proc.stderr), proc.wait())
    except TimeoutError:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    return code, out, err


def _resolve_cli(bin_path: str) -> str | None:
    if os.sep in bin_path:
        return bin_path if os.path.isfile(bin_path) and os.access(bin_path, os.X_OK) else None
    return shutil.which(bin_path)


def _extension_items(parsed: Any) -> list[dict[str, Any]]:
    """Accept the CLI's list of objects, an object holding such a list, or a name → object map."""
    if isinstance(parsed, dict):
        for key in ("extensions", "items", "data"):
            if isinstance(parsed.get(key), list):
                parsed = parsed[key]
                break
        else:
            parsed = [dict(value, name=name) if isinstance(value, dict) else {"name": name, "status": value}
                      for name, value in parsed.items()]
    if not isinstance(parsed, list):
        raise ValueError("unexpected JSON shape")
    items: list[dict[str, Any]] = []
    for raw in parsed:
        if not isinstance(raw, dict):
            continue
        name = raw.get("name") or raw.get("extension")
        if not isinstance(name, str) or not name.strip():
            continue
        status = str(raw.get("status") or "unknown").strip().lower()
        version = raw.get("version")
        since = raw.get("status_datetime") or raw.get("statusDatetime") or raw.get("statusSince")
        error = raw.get("error")
        items.append(
            {
                "name": name.strip()[:128],
                "version": str(version)[:64] if version not in (None, "") else None,
                "status": status if status in EXTENSION_STATUSES else "unknown",
                "statusSince": str(since) if since else None,
                "error": str(error)[:1024] if error else None,
            }
        )
        if len(items) >= MAX_EXTENSIONS:
            break
    return items


async def extensions_report(bin_path: str, limit_seconds: float = 30.0) -> dict[str, Any]:
    report: dict[str, Any] = {"timestamp": now_iso(), "available": False, "cliVersion": None, "extensions": []}
    cli = _resolve_cli(bin_path)
    if cli is None:
        where = bin_path if os.sep in bin_path else "PATH"
        report["reason"] = f"sindri CLI not found on {where}"[:256]
        return report
    try:
        code, out, err = await _run_tool([cli, "extension", "status", "--json"], limit_seconds)
    except TimeoutError:
        report["reason"] = f"sindri extension status did not finish within {int(limit_seconds)} s"
        return report
    except OSError as exc:
        report["reason"] = f"sindri CLI could not be started: {exc.strerror or exc}"[:256]
        return report
    if code != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        report["reason"] = (f"sindri extension status exited with {code}" + (f": {detail[-1]}" if detail else ""))[:256]
        return report
    try:
        report["extensions"] = _extension_items(json.loads(out.decode("utf-8", "replace") or "[]"))
    except ValueError as exc:
        report["reason"] = f"sindri extension status printed unreadable JSON: {exc}"[:256]
        return report
    report["available"] = True
    try:
        v_code, v_out, _ = await _run_tool([cli, "--version"], limit_seconds)
        if v_code == 0:
            text = v_out.decode("utf-8", "replace").strip().splitlines()
            report["cliVersion"] = text[0][:64] if text else None
    except (TimeoutError, OSError):
        pass  # the version is informational; the status list is what matters
    return report
