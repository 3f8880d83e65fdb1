"""Instance registry: registration (10-core §5.2, 40 §2), listing, detail and deregistration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.domains.identity.keys import mint_agent_key
from sindri_console.domains.instances import repository as repo
from sindri_console.domains.instances.geo import resolve_geo
from sindri_console.domains.instances.schemas import Registration, normalise_name
from sindri_console.domains.instances.state import (
    apply_agent_contact,
    record_initial_status,
    transition,
    write_event,
)
from sindri_console.domains.instances.wire import instance_to_wire
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import new_id
from sindri_console.kit.rbac import Role
from sindri_console.kit.scope import can_see_team
from sindri_console.models.agent import AgentState
from sindri_console.models.identity import Team
from sindri_console.models.instance import Instance
from sindri_console.runtime import Runtime

# columns a registration may set: internal name -> Instance attribute
INSTANCE_FIELDS = ("name", "provider", "region", "distro", "extensions", "config_hash", "ssh_endpoint", "size_id",
                   "disk_gb", "tags", "sindri_version")
WIRE = {"name": "name", "provider": "provider", "region": "region", "distro": "distro", "extensions": "extensions",
        "config_hash": "configHash", "ssh_endpoint": "sshEndpoint", "size_id": "sizeId", "disk_gb": "diskGb",
        "tags": "tags", "sindri_version": "sindriVersion", "team_id": "teamId", "geo": "geo"}


@dataclass
class RegistrationResult:
    created: bool
    body: dict[str, Any]


def min_instance_version(rt: Runtime) -> str | None:
    from sindri_console.domains.version.service import min_instance_version as _mv

    return _mv(rt)[0]


async def _find_target(session: AsyncSession, principal: Principal, reg: Registration) -> tuple[Instance | None, str]:
    """(matched live instance or None, the name to use when creating)."""
    if reg.is_agent_body:
        name = reg.get("name")
        if name is None:
            source = reg.get("hostname") or reg.get("instance_id")
            name = normalise_name(source)
            if not name:
                raise ApiError(422, "Invalid request: hostname cannot be turned into an instance name; set "
                                    "SINDRI_INSTANCE_ID", [{"field": "hostname", "message":
                                    "cannot be turned into an instance name; set SINDRI_INSTANCE_ID"}])
        match = await repo.resolve_identity(session, reg.get("instance_id"))
        if match is None:
            match = await repo.resolve_identity(session, name)
        if principal.credential == "agent_key":
            bound = await session.get(Instance, principal.instance_id)
            if bound is None or bound.status in repo.REMOVED:
                raise ApiError(401, "API key has been revoked")
            if match is not None and match.id != bound.id:
                raise ApiError(403, f"This agent key belongs to instance '{bound.name}'")
            return bound, bound.name
        return match, name
    name = reg.get("name")
    if name is None:
        raise ApiError(422, "Invalid request: name is required", [{"field": "name", "message": "is required"}])
    if principal.credential == "agent_key":
        bound = await session.get(Instance, principal.instance_id)
        if bound is None or bound.status in repo.REMOVED:
            raise ApiError(401, "API key has been revoked")
        other = await repo.find_live_by_name(session, name)
        if other is not None and other.id != bound.id:
            raise ApiError(403, f"This agent key belongs to instance '{bound.name}'")
        return bound, bound.name
    return await repo.find_live_by_name(session, name), name


async def _check_team(session: AsyncSession, principal: Principal, team_id: str | None, *, creating: bool,
                      current: str | None) -> None:
    if team_id is None:
        return
    if not creating and team_id == current:
        return
    if not creating and not principal.is_admin:
        raise ApiError(422, "Invalid request: teamId can only be changed by an ADMIN",
                       [{"field": "teamId", "message": "can only be changed by an ADMIN"}])
    exists = await session.scalar(select(Team.id).where(Team.id == team_id))
    if exists is None:
        raise ApiError(422, "Invalid request: teamId is not an existing team",
                       [{"field": "teamId", "message": "is not an existing team"}])
    if not principal.is_admin and team_id not in principal.memberships:
        raise ApiError(422, "Invalid request: teamId: not one of your teams",
                       [{"field": "teamId", "message": "not one of your teams"}])


def _apply_geo(rt: Runtime, inst: Instance, reg: Registration) -> None:
    s = rt.settings
    geo = resolve_geo(provider=inst.provider, region=inst.region, tags=inst.tags or {},
                      explicit_geo=reg.get("geo"), default_lat=s.DEFAULT_GEO_LAT, default_lon=s.DEFAULT_GEO_LON,
                      default_label=s.DEFAULT_GEO_LABEL)
    if geo is None:
        inst.geo_lat = inst.geo_lon = inst.geo_label = inst.geo_source = None
    else:
        inst.geo_lat, inst.geo_lon, inst.geo_label, inst.geo_source = geo.lat, geo.lon, geo.label, geo.source


async def register(rt: Runtime, principal: Principal, reg: Registration, agent_version_header: str | None
                   ) -> RegistrationResult:
    """Create or update an instance in one transaction; a lost create race is retried once as an update."""
    for attempt in (1, 2):
        try:
            return await _register_once(rt, principal, reg, agent_version_header)
        except IntegrityError:
            if attempt == 2:
                raise ApiError(409, f"Instance name '{reg.get('name')}' is in use") from None
    raise AssertionError("unreachable")


async def _register_once(rt: Runtime, principal: Principal, reg: Registration,
                         agent_version_header: str | None) -> RegistrationResult:
    now = utcnow()
    is_agent = principal.is_agent
    credential = principal.credential
    async with rt.db.write() as s:
        target, name = await _find_target(s, principal, reg)
        if target is not None and not is_agent and not can_see_team(principal, target.team_id):
            raise ApiError(409, f"Instance name '{name}' is in use")
        # agent bodies may carry `name` to rename (not for bound agent keys)
        rename_to = None
        if target is not None and reg.is_agent_body and reg.has("name") and credential != "agent_key":
            if reg.get("name") != target.name:
                holder = await repo.find_live_by_name(s, reg.get("name"))
                if holder is not None and holder.id != target.id:
                    raise ApiError(409, f"Instance name '{reg.get('name')}' is already in use")
                rename_to = reg.get("name")
        wants_key = bool(reg.get("issue_agent_key"))
        if wants_key:
            if credential == "agent_key":
                raise ApiError(403, "An agent key cannot issue another agent key")
            if credential == "user_key":
                role = principal.role_on_team(target.team_id if target else reg.get("team_id"))
                if role is None or Role[role] < Role.OPERATOR:
                    raise ApiError(403, "Issuing an agent key requires the OPERATOR role or higher")
        team_id = None if is_agent else reg.get("team_id")
        created = target is None
        changes: dict[str, dict[str, Any]] = {}
        if created:
            if reg.get("provider") is None and not reg.is_agent_body:
                raise ApiError(422, "Invalid request: provider is required for a new instance",
                               [{"field": "provider", "message": "is required for a new instance"}])
            if not is_agent:
                await _check_team(s, principal, team_id, creating=True, current=None)
            inst = Instance(
                id=new_id(), name=name, provider=reg.get("provider"), region=reg.get("region"),
                distro=reg.get("distro"), extensions=reg.get("extensions") or [],
                config_hash=reg.get("config_hash"), ssh_endpoint=reg.get("ssh_endpoint"),
                size_id=reg.get("size_id"), disk_gb=reg.get("disk_gb"), tags=reg.get("tags") or {},
                team_id=team_id, status="RUNNING", status_reason="Registered", status_changed_at=now,
                sindri_version=reg.get("sindri_version"), created_at=now, updated_at=now,
                created_by=principal.user_id,
            )
            _apply_geo(rt, inst, reg)
            s.add(inst)
            await s.flush()
            record_initial_status(s, inst, "Registered")
            changes = {WIRE[f]: {"from": None, "to": getattr(inst, f)} for f in INSTANCE_FIELDS
                       if reg.has(f) and getattr(inst, f) not in (None, [], {})}
            if team_id:
                changes["teamId"] = {"from": None, "to": team_id}
        else:
            assert target is not None
            inst = target
            if not is_agent and reg.has("team_id"):
                await _check_team(s, principal, team_id, creating=False, current=inst.team_id)
            for f in INSTANCE_FIELDS:
                if f == "name" or not reg.has(f):
                    continue
                new = reg.get(f)
                if f in ("extensions",) and new is None:
                    new = []
                if getattr(inst, f) != new:
                    changes[WIRE[f]] = {"from": getattr(inst, f), "to": new}
                    setattr(inst, f, new)
            if rename_to:
                changes["name"] = {"from": inst.name, "to": rename_to}
                inst.name = rename_to
            if not is_agent and reg.has("team_id") and reg.get("team_id") != inst.team_id:
                changes["teamId"] = {"from": inst.team_id, "to": reg.get("team_id")}
                inst.team_id = reg.get("team_id")
            if any(reg.has(k) for k in ("geo", "tags", "region", "provider")):
                _apply_geo(rt, inst, reg)
            inst.updated_at = now
            await s.flush()

        state: AgentState | None = await s.get(AgentState, inst.id)
        if reg.is_agent_body or is_agent:
            if state is None:
                state = AgentState(instance_id=inst.id, capabilities=[], connected=False, heartbeat_lost=False,
                                   frames_dropped=0, updated_at=now)
                s.add(state)
            state.last_registered_at = now
            version = reg.get("agent_version") or (agent_version_header[:64] if agent_version_header else None)
            if version:
                state.agent_version = version
            for f in ("os", "arch", "hostname"):
                if reg.has(f):
                    setattr(state, f, reg.get(f))
            if reg.has("timestamp"):
                state.last_registration_agent_time = reg.get("timestamp")
            if reg.has("instance_id"):
                ident = reg.get("instance_id")
                await s.execute(update(AgentState).where(AgentState.agent_instance_id == ident,
                                                         AgentState.instance_id != inst.id)
                                .values(agent_instance_id=None))
                state.agent_instance_id = ident
            state.updated_at = now
            await s.flush()
        previous = None
        if is_agent and state is not None:
            previous = await apply_agent_contact(s, state, kind="register",
                                                 loss_seconds=rt.settings.AGENT_HEARTBEAT_LOSS_SECONDS, now=now)
        meta: dict[str, Any] = {"created": created, "by": "AGENT" if is_agent else "USER",
                                "changedFields": sorted(changes)}
        if previous is not None:
            meta.update({"fromStatus": previous, "toStatus": "RUNNING"})
        write_event(s, inst.id, "REGISTER", f"Instance {'registered' if created else 're-registered'} by "
                    f"{'its agent' if is_agent else principal.user_email}", meta,
                    actor_kind="AGENT" if is_agent else "USER", user_id=principal.user_id)
        audit_meta: dict[str, Any] = {"via": "agent" if (is_agent or reg.is_agent_body) else "user",
                                      "credential": credential, "changes": changes}
        if reg.is_agent_body and state is not None:
            audit_meta["agentVersion"] = state.agent_version
        raw_key = key_id = None
        if wants_key:
            key, raw_key = await mint_agent_key(s, instance_id=inst.id, name=f"{inst.name}-agent", expires_at=None,
                                                created_by=principal.user_id)
            key_id = key.id
            audit_meta["agentKeyId"] = key_id
        await write_audit(s, principal, "CREATE" if created else "UPDATE", "instance", inst.id, audit_meta,
                          team_id=inst.team_id)
        await s.flush()
        body = instance_to_wire(inst, state, min_instance_version(rt))
        if raw_key:
            body["agentKey"] = raw_key
            body["agentKeyId"] = key_id
    return RegistrationResult(created, body)


async def deregister(rt: Runtime, principal: Principal, instance: Instance) -> dict[str, Any]:
    """Row 16: forget the instance; revoke its agent keys, cancel its commands, close its socket."""
    from sindri_console.domains.instances.removal import on_instance_removed

    now = utcnow()
    async with rt.db.write() as s:
        inst = await s.get(Instance, instance.id)
        assert inst is not None
        if inst.status in repo.REMOVED:
            raise ApiError(409, f"Instance is already {inst.status}")
        if inst.active_job_id is not None or inst.status not in ("RUNNING", "UNREACHABLE", "SUSPENDED", "STOPPED",
                                                                 "ERROR"):
            job = f" (job {inst.active_job_id})" if inst.active_job_id else ""
            raise ApiError(409, f"Instance '{inst.name}' has an operation in progress{job}")
        who = principal.user_email or "an agent"
        prev = await transition(
            s, inst.id, allowed_from=(inst.status,), to="DEREGISTERED", reason=f"Deregistered by {who}",
            bus_reason="deregister", event_type="DEREGISTER", event_message=f"Deregistered by {who}",
            actor_kind="USER", user_id=principal.user_id, require_no_job=True,
            values={"removed_at": now}, now=now,
        )
        if prev is None:
            current = await s.scalar(select(Instance.status).where(Instance.id == inst.id))
            raise ApiError(409, f"Instance '{inst.name}' cannot be deregistered: current status is {current}")
        await on_instance_removed(s, inst.id, "DEREGISTERED", now)
        await write_audit(s, principal, "DELETE", "instance", inst.id, {"mode": "deregister", "name": inst.name},
                          team_id=inst.team_id)
        await s.flush()
        await s.refresh(inst)
        state = await s.get(AgentState, inst.id)
        return instance_to_wire(inst, state, min_instance_version(rt))
