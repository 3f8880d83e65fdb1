"""Validation and mapping of agent data frames to rows (40 §4.2–§4.13). Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sindri_console.domains.agents.frames import (
    Fields,
    FrameError,
    agent_timestamp,
    clean_text,
    has,
    parse_agent_time,
    pick,
)
from sindri_console.domains.metrics.ingest import MetricSample

# ---- heartbeat (§4.2) ------------------------------------------------------------------------------


@dataclass
class HeartbeatValues:
    timestamp: datetime
    skew_ms: int | None
    agent_uptime_seconds: int | None = None
    system_uptime_seconds: int | None = None
    cpu_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    disk_used_bytes: int | None = None
    disk_total_bytes: int | None = None
    load_avg_1: float | None = None
    processes: list[Any] | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


def parse_heartbeat(data: dict[str, Any], received: datetime, envelope_ts: Any = None) -> HeartbeatValues:
    f = Fields(data)
    ts_raw = pick(data, "timestamp")
    if ts_raw is None:
        ts_raw = envelope_ts
    ts, skew = agent_timestamp(ts_raw, received)
    hb = HeartbeatValues(timestamp=ts, skew_ms=skew)
    hb.agent_uptime_seconds = f.integer("uptimeSeconds", "uptime")
    hb.system_uptime_seconds = f.integer("systemUptimeSeconds")
    hb.cpu_percent = f.number("cpuPercent", lo=0, hi=100, clamp_hi=True)
    hb.memory_used_bytes = f.integer("memoryUsedBytes", "memoryUsed")
    hb.memory_total_bytes = f.integer("memoryTotalBytes", "memoryTotal")
    hb.disk_used_bytes = f.integer("diskUsedBytes", "diskUsed")
    hb.disk_total_bytes = f.integer("diskTotalBytes", "diskTotal")
    hb.load_avg_1 = f.number("loadAvg1", lo=0)
    procs = pick(data, "processes")
    if procs is not None:
        if isinstance(procs, list):
            hb.processes = procs
        else:
            f.fail("processes", "must be a list")
    hb.errors = f.errors
    return hb


def heartbeat_push(instance_id: str, hb: HeartbeatValues, received_iso: str, ts_iso: str) -> dict[str, Any]:
    return {
        "instanceId": instance_id, "timestamp": ts_iso, "receivedAt": received_iso,
        "agentUptimeSeconds": hb.agent_uptime_seconds, "systemUptimeSeconds": hb.system_uptime_seconds,
        "cpuPercent": hb.cpu_percent, "memoryUsedBytes": hb.memory_used_bytes,
        "memoryTotalBytes": hb.memory_total_bytes, "diskUsedBytes": hb.disk_used_bytes,
        "diskTotalBytes": hb.disk_total_bytes, "loadAvg1": hb.load_avg_1,
    }


# ---- metrics (§4.3) --------------------------------------------------------------------------------


@dataclass
class Counters:
    """Cumulative counters of the previous sample of a connection, for rates."""

    ts_ms: int
    values: dict[str, int]


RATE_COUNTERS = {
    "net_tx_bps": "net_bytes_sent",
    "net_rx_bps": "net_bytes_recv",
    "disk_read_bps": "disk_read_bytes",
    "disk_write_bps": "disk_write_bytes",
}


def dedupe_disks(disks: list[Any], f: Fields) -> tuple[int, int] | None:
    """Skip zero totals, one entry per device, then one per total size; sum used and total."""
    seen_devices: set[str] = set()
    seen_totals: set[int] = set()
    used_sum = total_sum = 0
    kept = 0
    for i, d in enumerate(disks):
        if not isinstance(d, dict):
            f.fail(f"disk[{i}]", "must be an object")
            continue
        df = Fields(d, f"disk[{i}].")
        total = df.integer("totalBytes", "total")
        used = df.integer("usedBytes", "used")
        f.errors.extend(df.errors)
        if not total or used is None:
            continue
        device = pick(d, "device")
        dev_key = device if isinstance(device, str) and device else None
        if dev_key is not None:
            if dev_key in seen_devices:
                continue
            seen_devices.add(dev_key)
        if total in seen_totals:
            continue
        seen_totals.add(total)
        used_sum += used
        total_sum += total
        kept += 1
    if kept == 0:
        return None
    return used_sum, total_sum


@dataclass
class MetricsResult:
    sample: MetricSample
    counters: Counters
    errors: list[dict[str, str]]


def parse_metrics(instance_id: str, data: dict[str, Any], received: datetime, envelope_ts: Any,
                  previous: Counters | None) -> MetricsResult:
    """Map a metrics frame (nested D/C or flat mimir names); raises FrameError when required values lack."""
    f = Fields(data)
    cpu = v if isinstance(v := data.get("cpu"), dict) else {}
    mem = v if isinstance(v := data.get("memory"), dict) else {}
    net = v if isinstance(v := data.get("network"), dict) else {}
    dio = pick(data, "diskIo")
    dio = dio if isinstance(dio, dict) else {}
    cf, mf, nf, iof = Fields(cpu, "cpu."), Fields(mem, "memory."), Fields(net, "network."), Fields(dio, "diskIo.")

    def first(flat: Any, nested: Any) -> Any:
        return flat if flat is not None else nested

    cpu_percent = first(f.number("cpuPercent", lo=0, hi=100, clamp_hi=True),
                        cf.number("usagePercent", lo=0, hi=100, clamp_hi=True))
    mem_used = first(f.integer("memUsedBytes", "memUsed"), mf.integer("usedBytes"))
    mem_total = first(f.integer("memTotalBytes", "memTotal"), mf.integer("totalBytes"))
    missing = []
    if cpu_percent is None:
        missing.append({"field": "cpu.usagePercent", "message": "is required"})
    if mem_used is None:
        missing.append({"field": "memory.usedBytes", "message": "is required"})
    if mem_total is None:
        missing.append({"field": "memory.totalBytes", "message": "is required"})
    if missing:
        raise FrameError("INVALID_PAYLOAD", "A metrics frame needs cpu.usagePercent, memory.usedBytes and "
                                            "memory.totalBytes", missing + f.errors + cf.errors + mf.errors)
    ts_raw = pick(data, "ts") if has(data, "ts") else None
    if ts_raw is None:
        ts_raw = pick(data, "timestamp")
    if ts_raw is None:
        ts_raw = envelope_ts
    ts, _ = agent_timestamp(ts_raw, received)
    ts_ms = int(ts.timestamp() * 1000)
    s = MetricSample(instance_id=instance_id, ts_ms=ts_ms, cpu_percent=float(cpu_percent),
                     mem_used_bytes=mem_used, mem_total_bytes=mem_total)
    s.load_avg_1 = first(f.number("loadAvg1", lo=0), cf.number("loadAvg1", lo=0))
    s.load_avg_5 = first(f.number("loadAvg5", lo=0), cf.number("loadAvg5", lo=0))
    s.load_avg_15 = first(f.number("loadAvg15", lo=0), cf.number("loadAvg15", lo=0))
    s.cpu_steal_percent = first(f.number("cpuSteal", lo=0, hi=100, clamp_hi=True),
                                cf.number("stealPercent", lo=0, hi=100, clamp_hi=True))
    s.core_count = first(f.integer("coreCount"), cf.integer("coreCount"))
    s.mem_cached_bytes = first(f.integer("memCachedBytes", "memCached"), mf.integer("cachedBytes"))
    s.swap_used_bytes = first(f.integer("swapUsedBytes", "swapUsed"), mf.integer("swapUsedBytes"))
    s.swap_total_bytes = first(f.integer("swapTotalBytes", "swapTotal"), mf.integer("swapTotalBytes"))
    flat_du, flat_dt = f.integer("diskUsedBytes", "diskUsed"), f.integer("diskTotalBytes", "diskTotal")
    if flat_du is not None or flat_dt is not None:
        s.disk_used_bytes, s.disk_total_bytes = flat_du, flat_dt
    else:
        disks = data.get("disk")
        if isinstance(disks, list) and disks:
            summed = dedupe_disks(disks, f)
            if summed is not None:
                s.disk_used_bytes, s.disk_total_bytes = summed
        elif disks is not None and not isinstance(disks, list):
            f.fail("disk", "must be a list or null")
    s.disk_read_bps = f.integer("diskReadBps")
    s.disk_write_bps = f.integer("diskWriteBps")
    s.net_bytes_sent = first(f.integer("netBytesSent"), nf.integer("bytesSent"))
    s.net_bytes_recv = first(f.integer("netBytesRecv"), nf.integer("bytesRecv"))
    s.net_packets_sent = first(f.integer("netPacketsSent"), nf.integer("packetsSent"))
    s.net_packets_recv = first(f.integer("netPacketsRecv"), nf.integer("packetsRecv"))
    flat_tx, flat_rx = f.integer("netTxBps"), f.integer("netRxBps")
    counters = {
        "net_bytes_sent": s.net_bytes_sent,
        "net_bytes_recv": s.net_bytes_recv,
        "disk_read_bytes": iof.integer("readBytes"),
        "disk_write_bytes": iof.integer("writeBytes"),
    }
    current = Counters(ts_ms, {k: v for k, v in counters.items() if v is not None})
    if previous is not None:
        dt = (ts_ms - previous.ts_ms) / 1000
        if 0 < dt <= 600:
            for col, counter in RATE_COUNTERS.items():
                now_v, prev_v = current.values.get(counter), previous.values.get(counter)
                if now_v is not None and prev_v is not None and now_v >= prev_v:
                    setattr(s, col, round((now_v - prev_v) / dt))
    if flat_tx is not None:
        s.net_tx_bps = flat_tx
    if flat_rx is not None:
        s.net_rx_bps = flat_rx
    errors = f.errors + cf.errors + mf.errors + nf.errors + iof.errors
    return MetricsResult(s, current, errors)


def _percent(used: int | None, total: int | None) -> float | None:
    if used is None or not total:
        return None
    return round(100 * used / total, 2)


def metrics_push(s: MetricSample, ts_iso: str) -> dict[str, Any]:
    return {
        "instanceId": s.instance_id, "timestamp": ts_iso, "cpuPercent": s.cpu_percent, "loadAvg1": s.load_avg_1,
        "memUsedBytes": s.mem_used_bytes, "memTotalBytes": s.mem_total_bytes,
        "memPercent": _percent(s.mem_used_bytes, s.mem_total_bytes),
        "diskUsedBytes": s.disk_used_bytes, "diskTotalBytes": s.disk_total_bytes,
        "diskPercent": _percent(s.disk_used_bytes, s.disk_total_bytes),
        "netBytesSent": s.net_bytes_sent, "netBytesRecv": s.net_bytes_recv,
        "netTxBps": s.net_tx_bps, "netRxBps": s.net_rx_bps,
    }


# ---- processes (§4.10) -------------------------------------------------------------------------------

MAX_PROCESSES = 100


def parse_process_list(items: Any, prefix: str = "processes") -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Validate process items; raises FrameError when the list itself is unusable."""
    if not isinstance(items, list):
        raise FrameError("INVALID_PAYLOAD", "processes must be a list", [{"field": prefix, "message": "must be a list"}])
    if len(items) > MAX_PROCESSES:
        raise FrameError("INVALID_PAYLOAD", f"A process report holds at most {MAX_PROCESSES} processes",
                         [{"field": prefix, "message": f"must have at most {MAX_PROCESSES} items"}])
    out: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            errors.append({"field": f"{prefix}[{i}]", "message": "must be an object"})
            continue
        pf = Fields(p, f"{prefix}[{i}].")
        pid = pf.integer("pid", required=True)
        if pid is None:
            errors.extend(pf.errors)
            continue
        created = pf.iso("createTime")
        out.append({
            "pid": pid,
            "ppid": pf.integer("ppid"),
            "name": pf.text("name", max_len=256),
            "username": pf.text("username", max_len=64),
            "status": pf.text("status", max_len=32),
            "cpuPercent": pf.number("cpuPercent", lo=0),
            "memoryPercent": pf.number("memoryPercent", lo=0, hi=100, clamp_hi=True),
            "memoryRssBytes": pf.integer("memoryRssBytes"),
            "createTime": created.isoformat().replace("+00:00", "Z") if created else None,
            "command": pf.text("command", max_len=512),
        })
        errors.extend(pf.errors)
    return out, errors


# ---- extensions (§4.11) ------------------------------------------------------------------------------

EXTENSION_STATES = ("installed", "installing", "failed", "removed", "disabled", "unknown")
MAX_EXTENSIONS = 500


@dataclass
class ExtensionItem:
    name: str
    version: str | None
    status: str
    status_since: datetime | None
    error: str | None


def parse_extensions(data: dict[str, Any]) -> tuple[list[ExtensionItem], list[dict[str, str]]]:
    items = pick(data, "extensions")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise FrameError("INVALID_PAYLOAD", "extensions must be a list",
                         [{"field": "extensions", "message": "must be a list"}])
    if len(items) > MAX_EXTENSIONS:
        raise FrameError("INVALID_PAYLOAD", f"An extension report holds at most {MAX_EXTENSIONS} items",
                         [{"field": "extensions", "message": f"must have at most {MAX_EXTENSIONS} items"}])
    out: list[ExtensionItem] = []
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, e in enumerate(items):
        if not isinstance(e, dict):
            errors.append({"field": f"extensions[{i}]", "message": "must be an object"})
            continue
        ef = Fields(e, f"extensions[{i}].")
        name = ef.text("name", max_len=128, min_len=1, required=True)
        if name is None or name in seen:
            errors.extend(ef.errors)
            continue
        seen.add(name)
        raw_status = pick(e, "status")
        status = raw_status.strip().lower() if isinstance(raw_status, str) else "unknown"
        if status not in EXTENSION_STATES:
            status = "unknown"
        out.append(ExtensionItem(name=name, version=ef.text("version", max_len=64), status=status,
                                 status_since=ef.iso("statusSince"), error=ef.text("error", max_len=1024)))
        errors.extend(ef.errors)
    return out, errors


# ---- config (§4.13) ----------------------------------------------------------------------------------

ENV_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_CONFIG_CONTENT = 256 * 1024


def parse_config(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The report to store, with env values that are not `sha256:<hex>` dropped (never kept in clear)."""
    f = Fields(data)
    report: dict[str, Any] = {}
    for key in ("hostname", "provider", "region"):
        report[key] = f.text(key, max_len=253)
    sc = pick(data, "sindriConfig")
    if sc is None:
        report["sindriConfig"] = None
    elif isinstance(sc, dict):
        sf = Fields(sc, "sindriConfig.")
        content = sf.text("content", max_len=MAX_CONFIG_CONTENT)
        report["sindriConfig"] = {"path": sf.text("path", max_len=1024), "sha256": sf.text("sha256", max_len=64),
                                  "content": content}
        f.errors.extend(sf.errors)
    else:
        f.fail("sindriConfig", "must be an object or null")
    exts, ext_errors = parse_extensions(data) if has(data, "extensions") else ([], [])
    f.errors.extend(ext_errors)
    report["extensions"] = [{"name": e.name, "version": e.version, "status": e.status} for e in exts]
    env = pick(data, "env")
    clean_env: dict[str, str] = {}
    if env is not None:
        if not isinstance(env, dict):
            f.fail("env", "must be an object")
        else:
            for i, (k, v) in enumerate(env.items()):
                if i >= 500:
                    f.fail("env", "must have at most 500 keys")
                    break
                if isinstance(v, str) and ENV_HASH_RE.match(v):
                    clean_env[clean_text(str(k))[:256]] = v
                else:
                    f.fail(f"env.{str(k)[:64]}", "must be sha256:<64 hex>; values are never accepted in clear")
    report["env"] = clean_env
    res = f.obj_field("resources")
    if res is not None:
        rf = Fields(res, "resources.")
        report["resources"] = {"cpuCount": rf.integer("cpuCount"), "memoryTotalBytes": rf.integer("memoryTotalBytes"),
                               "diskTotalBytes": rf.integer("diskTotalBytes")}
        f.errors.extend(rf.errors)
    netw = f.obj_field("network")
    if netw is not None:
        ports = pick(netw, "listeningPorts")
        ok_ports = sorted({p for p in ports if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536}
                          )[:1000] if isinstance(ports, list) else []
        report["network"] = {"hostname": pick(netw, "hostname") if isinstance(pick(netw, "hostname"), str) else None,
                             "listeningPorts": ok_ports}
    osinfo = f.obj_field("os")
    if osinfo is not None:
        of = Fields(osinfo, "os.")
        report["os"] = {"id": of.text("id", max_len=64), "versionId": of.text("versionId", max_len=64),
                        "kernel": of.text("kernel", max_len=128)}
        f.errors.extend(of.errors)
    return report, f.errors


# ---- events (§4.8) -----------------------------------------------------------------------------------

STORED_EVENT_TYPES = ("EXTENSION_INSTALL", "EXTENSION_REMOVE", "ERROR", "BACKUP", "RESTORE")
_EVENT_SEPARATORS = re.compile(r"[:\-. ]")


def normalise_event_type(value: str) -> str:
    return _EVENT_SEPARATORS.sub("_", value.strip()).upper()


@dataclass
class AgentEvent:
    event_type: str
    message: str
    metadata: dict[str, Any]
    timestamp: datetime


def parse_event(data: dict[str, Any], received: datetime, envelope_ts: Any, mimir: bool) -> AgentEvent:
    raw = pick(data, "eventType")
    if raw is None and mimir:
        raw = data.get("type")
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        raise FrameError("INVALID_PAYLOAD", "An event needs eventType",
                         [{"field": "eventType", "message": "must be a string of 1-64 characters"}])
    f = Fields(data)
    message = f.text("message", max_len=10_000) or ""
    meta = f.obj_field("metadata") or {}
    ts_raw = pick(data, "timestamp")
    ts, _ = agent_timestamp(ts_raw if ts_raw is not None else envelope_ts, received)
    return AgentEvent(normalise_event_type(raw), message, meta, ts)


# ---- LLM usage (§4.6, 30-admin §5.1) -----------------------------------------------------------------

MAX_LLM_RECORDS = 1000
CAPTURE_TIERS = ("proxy", "ebpf", "ollama")
TOKEN_MAX = 10**10


@dataclass
class LlmRecord:
    ts: datetime
    provider: str
    model: str
    operation: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reported_cost_micros: int | None
    capture_tier: str | None
    trace_id: str | None

    def dedupe_key(self, instance_id: str) -> str:
        parts = [instance_id, str(int(self.ts.timestamp() * 1000)), self.provider, self.model, self.operation or "",
                 str(self.input_tokens), str(self.output_tokens), str(self.cache_read_tokens),
                 str(self.cache_write_tokens), self.trace_id or ""]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def parse_llm_batch(data: dict[str, Any], received: datetime) -> tuple[list[LlmRecord], int, list[dict[str, str]]]:
    """Valid records, the number skipped, and the per-record errors."""
    records = pick(data, "records")
    if not isinstance(records, list):
        raise FrameError("INVALID_PAYLOAD", "records must be a list", [{"field": "records", "message": "must be a list"}])
    if len(records) > MAX_LLM_RECORDS:
        raise FrameError("INVALID_PAYLOAD", f"A batch holds at most {MAX_LLM_RECORDS} records",
                         [{"field": "records", "message": f"must have at most {MAX_LLM_RECORDS} items"}])
    out: list[LlmRecord] = []
    errors: list[dict[str, str]] = []
    skipped = 0
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            errors.append({"field": f"records[{i}]", "message": "must be an object"})
            skipped += 1
            continue
        rf = Fields(r, f"records[{i}].")
        provider = rf.text("provider", max_len=64, min_len=1, required=True)
        model = rf.text("model", max_len=256, min_len=1, required=True)
        operation = rf.text("operation", max_len=64)
        tin = rf.integer("inputTokens", hi=TOKEN_MAX, required=True)
        tout = rf.integer("outputTokens", hi=TOKEN_MAX, required=True)
        cr = rf.integer("cacheReadTokens", hi=TOKEN_MAX)
        cw = rf.integer("cacheWriteTokens", hi=TOKEN_MAX)
        cost = rf.number("costUsd", lo=0, hi=10**6)
        tier = rf.text("captureTier", max_len=16)
        if tier is not None and tier.lower() not in CAPTURE_TIERS:
            rf.fail("captureTier", "must be proxy, ebpf or ollama")
            tier = None
        trace = rf.text("traceId", max_len=128)
        ts_raw = pick(r, "ts")
        ts = None
        if isinstance(ts_raw, int | float) and not isinstance(ts_raw, bool):
            ts = parse_agent_time(ts_raw)
        if ts is None or not (received - timedelta(days=7) <= ts <= received + timedelta(minutes=5)):
            rf.fail("ts", "must be epoch milliseconds within the last 7 days")
            ts = None
        if rf.errors:
            # 30-admin §5.1: any invalid field skips the record
            errors.extend(rf.errors)
            skipped += 1
            continue
        assert provider is not None and model is not None and tin is not None and tout is not None and ts is not None
        out.append(LlmRecord(
            ts=ts.replace(microsecond=ts.microsecond // 1000 * 1000), provider=provider.lower(), model=model,
            operation=operation, input_tokens=tin, output_tokens=tout, cache_read_tokens=cr or 0,
            cache_write_tokens=cw or 0,
            reported_cost_micros=round(cost * 1_000_000) if cost is not None else None,
            capture_tier=tier.lower() if tier else None, trace_id=trace,
        ))
    return out, skipped, errors
