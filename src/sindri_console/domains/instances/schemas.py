"""Registration bodies (10-core §5.2, 40 §2.2): presence-aware parsing of both casings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from sindri_console.domains.instances.geo import PROVIDERS, normalise_provider
from sindri_console.kit.clock import parse_iso
from sindri_console.kit.errors import ApiError
from sindri_console.kit.schema import ApiModel, OutModel, unstorable_text

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
DISTROS = ("ubuntu", "fedora", "opensuse")
PROVIDER_MESSAGE = "must be one of " + ", ".join(PROVIDERS)

# wire name -> internal name; snake_case spellings are accepted too
FIELDS = {
    "instanceId": "instance_id", "name": "name", "hostname": "hostname", "provider": "provider",
    "region": "region", "distro": "distro", "extensions": "extensions", "configHash": "config_hash",
    "sshEndpoint": "ssh_endpoint", "sizeId": "size_id", "diskGb": "disk_gb", "tags": "tags", "geo": "geo",
    "teamId": "team_id", "sindriVersion": "sindri_version", "issueAgentKey": "issue_agent_key",
    "agentVersion": "agent_version", "os": "os", "arch": "arch", "timestamp": "timestamp",
}
SNAKE_TO_WIRE = {v: k for k, v in FIELDS.items()}


def normalise_name(value: str) -> str:
    """40 §2.2 name normaliser: lower-case, runs outside [a-z0-9-] → '-', trimmed, ≤ 63."""
    s = re.sub(r"[^a-z0-9-]+", "-", value.lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")
    return s[:63].rstrip("-")


@dataclass
class Registration:
    present: dict[str, Any] = field(default_factory=dict)  # internal name -> value (None = explicit null)
    is_agent_body: bool = False

    def has(self, name: str) -> bool:
        return name in self.present

    def get(self, name: str, default: Any = None) -> Any:
        return self.present.get(name, default)


def _err(errors: list[dict[str, str]], wire: str, message: str) -> None:
    errors.append({"field": wire, "message": message})


def parse_registration(body: Any) -> Registration:
    """Validate a registration body; raises ApiError(422) listing every failing field."""
    if not isinstance(body, dict):
        raise ApiError(422, "Invalid request: the body must be a JSON object",
                       [{"field": "body", "message": "must be a JSON object"}])
    raw: dict[str, Any] = {}
    for key, value in body.items():
        wire = key if key in FIELDS else SNAKE_TO_WIRE.get(key)
        if wire is None:
            continue
        if isinstance(value, str) and value.strip() == "" and wire != "instanceId":
            continue  # empty string = absent
        if wire not in raw or key == wire:
            raw[wire] = value
    reg = Registration(is_agent_body="instanceId" in raw)
    errors: list[dict[str, str]] = []
    for wire in list(raw):
        if unstorable_text(raw[wire]):
            _err(errors, wire, "must not contain NUL characters or invalid Unicode")
            del raw[wire]

    def text(wire: str, max_len: int, *, min_len: int = 1, nullable: bool = False, strip: bool = True) -> None:
        if wire not in raw:
            return
        v = raw[wire]
        if v is None:
            if nullable:
                reg.present[FIELDS[wire]] = None
            else:
                _err(errors, wire, "must be a string")
            return
        if not isinstance(v, str):
            _err(errors, wire, "must be a string")
            return
        if strip:
            v = v.strip()
        if len(v) < min_len or len(v) > max_len:
            _err(errors, wire, f"must be {min_len}-{max_len} characters")
            return
        reg.present[FIELDS[wire]] = v

    if "instanceId" in raw:
        v = raw["instanceId"]
        if not isinstance(v, str) or not (1 <= len(v.strip()) <= 128):
            _err(errors, "instanceId", "must be a string of 1-128 characters")
        else:
            reg.present["instance_id"] = v.strip()
    if "name" in raw:
        v = raw["name"]
        if not isinstance(v, str) or len(v) > 63 or not NAME_RE.match(v):
            _err(errors, "name", "must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a "
                                 "letter or digit")
        else:
            reg.present["name"] = v
    text("hostname", 253)
    if "provider" in raw:
        v = raw["provider"]
        p = normalise_provider(v) if isinstance(v, str) and len(v) <= 32 else None
        if p is None:
            _err(errors, "provider", PROVIDER_MESSAGE)
        else:
            reg.present["provider"] = p
    text("region", 64, nullable=True)
    if "distro" in raw:
        v = raw["distro"]
        if v is None:
            reg.present["distro"] = None
        elif not isinstance(v, str) or v.strip().lower() not in DISTROS:
            _err(errors, "distro", "must be one of ubuntu, fedora, opensuse")
        else:
            reg.present["distro"] = v.strip().lower()
    if "extensions" in raw:
        v = raw["extensions"]
        if not isinstance(v, list) or len(v) > 200:
            _err(errors, "extensions", "must be a list of at most 200 names")
        else:
            out: list[str] = []
            for i, item in enumerate(v):
                if not isinstance(item, str) or not (1 <= len(item) <= 128):
                    _err(errors, f"extensions[{i}]", "must be a string of 1-128 characters")
                elif item not in out:
                    out.append(item)
            reg.present["extensions"] = out
    if "configHash" in raw:
        v = raw["configHash"]
        if v is None:
            reg.present["config_hash"] = None
        elif not isinstance(v, str) or not HEX64_RE.match(v):
            _err(errors, "configHash", "must be 64 hexadecimal characters")
        else:
            reg.present["config_hash"] = v.lower()
    text("sshEndpoint", 256, nullable=True)
    text("sizeId", 64, nullable=True)
    if "diskGb" in raw:
        v = raw["diskGb"]
        if v is None:
            reg.present["disk_gb"] = None
        elif isinstance(v, bool) or not isinstance(v, int) or not (1 <= v <= 65536):
            _err(errors, "diskGb", "must be an integer between 1 and 65536")
        else:
            reg.present["disk_gb"] = v
    if "tags" in raw:
        v = raw["tags"]
        if v is None:
            reg.present["tags"] = {}
        elif not isinstance(v, dict) or len(v) > 50:
            _err(errors, "tags", "must be an object of at most 50 entries")
        else:
            tags: dict[str, str] = {}
            for k, tv in v.items():
                if not TAG_KEY_RE.match(k):
                    _err(errors, f"tags.{k[:64]}", "keys must be 1-64 characters of A-Z a-z 0-9 _ . : / -")
                elif not isinstance(tv, str) or len(tv) > 256:
                    _err(errors, f"tags.{k}", "values must be strings of at most 256 characters")
                else:
                    tags[k] = tv
            reg.present["tags"] = tags
    if "geo" in raw:
        v = raw["geo"]
        if v is None:
            reg.present["geo"] = None
        elif not isinstance(v, dict):
            _err(errors, "geo", "must be an object { lat, lon, label? }")
        else:
            lat, lon, label = v.get("lat"), v.get("lon"), v.get("label")
            ok = True
            if isinstance(lat, bool) or not isinstance(lat, int | float) or not (-90 <= lat <= 90):
                _err(errors, "geo.lat", "must be a number between -90 and 90")
                ok = False
            if isinstance(lon, bool) or not isinstance(lon, int | float) or not (-180 <= lon <= 180):
                _err(errors, "geo.lon", "must be a number between -180 and 180")
                ok = False
            if label is not None and (not isinstance(label, str) or len(label) > 128):
                _err(errors, "geo.label", "must be a string of at most 128 characters")
                ok = False
            if ok:
                # ok: both were checked to be numbers above
                assert lat is not None and lon is not None
                reg.present["geo"] = {"lat": float(lat), "lon": float(lon), "label": label}
    if "teamId" in raw:
        v = raw["teamId"]
        if v is not None and (not isinstance(v, str) or not (1 <= len(v) <= 128)):
            _err(errors, "teamId", "must be a team id or null")
        else:
            reg.present["team_id"] = v
    text("sindriVersion", 64, nullable=True)
    if "issueAgentKey" in raw:
        v = raw["issueAgentKey"]
        if not isinstance(v, bool):
            _err(errors, "issueAgentKey", "must be true or false")
        else:
            reg.present["issue_agent_key"] = v
    text("agentVersion", 64)
    text("os", 32)
    text("arch", 32)
    if "timestamp" in raw:
        v = raw["timestamp"]
        try:
            reg.present["timestamp"] = parse_iso(v) if isinstance(v, str) else None
        except ValueError:
            reg.present["timestamp"] = None
        if reg.present["timestamp"] is None:
            _err(errors, "timestamp", "must be an ISO 8601 timestamp with an offset")
    if errors:
        raise ApiError(422, f"Invalid request: {errors[0]['field']} {errors[0]['message']}", errors)
    return reg


class RegistrationDoc(ApiModel):
    """OpenAPI description of the registration body (parsed by `parse_registration`)."""

    name: str | None = Field(default=None, description="1-63, lower-case letters, digits and '-'")
    provider: str | None = None
    region: str | None = None
    distro: str | None = None
    extensions: list[str] | None = None
    config_hash: str | None = None
    ssh_endpoint: str | None = None
    size_id: str | None = None
    disk_gb: int | None = None
    tags: dict[str, str] | None = None
    geo: dict[str, Any] | None = None
    team_id: str | None = None
    sindri_version: str | None = None
    issue_agent_key: bool | None = None
    instance_id: str | None = Field(default=None, description="agent body: the agent's own identity")
    hostname: str | None = None
    agent_version: str | None = None
    os: str | None = None
    arch: str | None = None
    timestamp: str | None = None


class GeoOut(OutModel):
    lat: float
    lon: float
    label: str
    source: str


class InstanceOut(OutModel):
    id: str
    name: str
    provider: str | None
    region: str | None
    distro: str | None
    extensions: list[str]
    config_hash: str | None
    ssh_endpoint: str | None
    size_id: str | None
    disk_gb: int | None
    tags: dict[str, Any]
    team_id: str | None
    status: str
    status_reason: str | None
    status_changed_at: str
    geo: GeoOut | None
    agent: dict[str, Any] | None
    sindri_version: str | None
    version_status: str
    active_job_id: str | None
    created_at: str
    updated_at: str
    removed_at: str | None


class InstanceDetailOut(InstanceOut):
    team: dict[str, Any] | None
    last_heartbeat: dict[str, Any] | None


class RegistrationOut(InstanceOut):
    agent_key: str | None = None
    agent_key_id: str | None = None


class InstancePage(OutModel):
    data: list[InstanceOut]
    pagination: dict[str, Any]
