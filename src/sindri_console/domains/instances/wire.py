"""Instance wire objects (10-core §5.1, §5.4; agent object of 40 §7.3)."""

from __future__ import annotations

from typing import Any

from sindri_console.kit.cli_runner import version_status
from sindri_console.kit.clock import to_iso
from sindri_console.models.agent import AgentState
from sindri_console.models.instance import Heartbeat, Instance


def agent_to_wire(st: AgentState | None) -> dict[str, Any] | None:
    if st is None:
        return None
    name = st.agent_name
    if name is None and st.dialect == "draupnir":
        name = "draupnir"
    return {
        "connected": bool(st.connected),
        "dialect": st.dialect,
        "name": name,
        "version": st.agent_version,
        "protocolVersion": st.protocol_version,
        "capabilities": list(st.capabilities or []),
        "agentInstanceId": st.agent_instance_id,
        "hostname": st.hostname,
        "os": st.os,
        "arch": st.arch,
        "connectedAt": to_iso(st.connected_at),
        "disconnectedAt": to_iso(st.disconnected_at),
        "lastSeenAt": to_iso(st.last_seen_at),
        "lastHeartbeatAt": to_iso(st.last_heartbeat_at),
        "lastRegisteredAt": to_iso(st.last_registered_at),
        "heartbeatIntervalSeconds": st.heartbeat_interval_seconds,
        "heartbeatLost": bool(st.heartbeat_lost),
        "uptimeSeconds": st.uptime_seconds,
        "clockSkewMs": st.clock_skew_ms,
    }


def geo_to_wire(inst: Instance) -> dict[str, Any] | None:
    if inst.geo_lat is None or inst.geo_lon is None:
        return None
    return {"lat": inst.geo_lat, "lon": inst.geo_lon, "label": inst.geo_label or "", "source": inst.geo_source}


def instance_to_wire(inst: Instance, agent: AgentState | None, min_version: str | None) -> dict[str, Any]:
    return {
        "id": inst.id,
        "name": inst.name,
        "provider": inst.provider,
        "region": inst.region,
        "distro": inst.distro,
        "extensions": list(inst.extensions or []),
        "configHash": inst.config_hash,
        "sshEndpoint": inst.ssh_endpoint,
        "sizeId": inst.size_id,
        "diskGb": inst.disk_gb,
        "tags": dict(inst.tags or {}),
        "teamId": inst.team_id,
        "status": inst.status,
        "statusReason": inst.status_reason,
        "statusChangedAt": to_iso(inst.status_changed_at),
        "geo": geo_to_wire(inst),
        "agent": agent_to_wire(agent),
        "sindriVersion": inst.sindri_version,
        "versionStatus": version_status(inst.sindri_version, min_version),
        "activeJobId": inst.active_job_id,
        "createdAt": to_iso(inst.created_at),
        "updatedAt": to_iso(inst.updated_at),
        "removedAt": to_iso(inst.removed_at),
    }


def heartbeat_to_wire(hb: Heartbeat | None) -> dict[str, Any] | None:
    if hb is None:
        return None
    return {
        "timestamp": to_iso(hb.timestamp),
        "receivedAt": to_iso(hb.received_at),
        "agentUptimeSeconds": hb.agent_uptime_seconds,
        "systemUptimeSeconds": hb.system_uptime_seconds,
        "cpuPercent": hb.cpu_percent,
        "memoryUsedBytes": hb.memory_used_bytes,
        "memoryTotalBytes": hb.memory_total_bytes,
        "diskUsedBytes": hb.disk_used_bytes,
        "diskTotalBytes": hb.disk_total_bytes,
        "loadAvg1": hb.load_avg_1,
    }
