"""Users, teams, memberships and API keys (10-core §4). Every write is one transaction with its audit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.engine import publish_after_commit
from sindri_console.domains.identity.keys import key_status, mint_agent_key, mint_user_key, resolve_expiry
from sindri_console.domains.identity.schemas import (
    AdminKeyCreate,
    KeyCreate,
    MemberIn,
    TeamCreate,
    TeamPatch,
    UserCreate,
    UserPatch,
)
from sindri_console.domains.instances.state import LIVE_STATUSES, REMOVED_STATUSES, write_event
from sindri_console.kit.audit import write_audit
from sindri_console.kit.auth import Principal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import new_id
from sindri_console.kit.rbac import Role, min_role
from sindri_console.models.identity import ApiKey, Team, TeamMember, User
from sindri_console.models.instance import Instance
from sindri_console.runtime import Runtime

# ---- wire objects -------------------------------------------------------------------------------


def key_to_wire(key: ApiKey, user_email: str | None, instance_name: str | None) -> dict[str, Any]:
    return {
        "id": key.id, "kind": key.kind, "name": key.name, "keyPrefix": key.key_prefix, "userId": key.user_id,
        "userEmail": user_email, "instanceId": key.instance_id, "instanceName": instance_name, "role": key.role,
        "status": key_status(key), "createdAt": to_iso(key.created_at), "createdBy": key.created_by,
        "expiresAt": to_iso(key.expires_at), "lastUsedAt": to_iso(key.last_used_at),
        "lastUsedIp": key.last_used_ip, "revokedAt": to_iso(key.revoked_at), "revokedBy": key.revoked_by,
        "revokeReason": key.revoke_reason,
    }


async def keys_to_wire(s: AsyncSession, keys: list[ApiKey]) -> list[dict[str, Any]]:
    user_ids = {k.user_id for k in keys if k.user_id}
    inst_ids = {k.instance_id for k in keys if k.instance_id}
    # a key without a user or an instance looks up None, which finds nothing
    emails: dict[str | None, str]
    names: dict[str | None, str]
    emails = dict((await s.execute(select(User.id, User.email).where(User.id.in_(user_ids)))).all()) if user_ids else {}
    names = dict((await s.execute(select(Instance.id, Instance.name).where(Instance.id.in_(inst_ids)))).all()) \
        if inst_ids else {}
    return [key_to_wire(k, emails.get(k.user_id), names.get(k.instance_id)) for k in keys]


async def _teams_of(s: AsyncSession, user_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {u: [] for u in user_ids}
    if not user_ids:
        return out
    rows = await s.execute(
        select(TeamMember.user_id, Team.id, Team.name, TeamMember.role)
        .join(Team, Team.id == TeamMember.team_id).where(TeamMember.user_id.in_(user_ids)).order_by(Team.name)
    )
    for uid, tid, tname, role in rows:
        out[uid].append({"id": tid, "name": tname, "role": role})
    return out


async def users_to_wire(s: AsyncSession, users: list[User]) -> list[dict[str, Any]]:
    ids = [u.id for u in users]
    teams = await _teams_of(s, ids)
    now = utcnow()
    counts: dict[str | None, int] = {}
    if ids:
        rows = await s.execute(
            select(ApiKey.user_id, func.count()).where(
                ApiKey.user_id.in_(ids), ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)).group_by(ApiKey.user_id)
        )
        counts = {u: int(c) for u, c in rows}
    return [{
        "id": u.id, "email": u.email, "name": u.name, "role": u.role, "isActive": u.is_active,
        "teams": teams.get(u.id, []), "activeKeyCount": counts.get(u.id, 0), "createdAt": to_iso(u.created_at),
        "updatedAt": to_iso(u.updated_at), "createdBy": u.created_by, "lastSeenAt": to_iso(u.last_seen_at),
    } for u in users]


def member_to_wire(m: TeamMember, u: User) -> dict[str, Any]:
    effective = "ADMIN" if u.role == "ADMIN" else (min_role(u.role, m.role) or u.role)
    return {"userId": u.id, "email": u.email, "name": u.name, "userRole": u.role, "role": m.role,
            "effectiveRole": effective, "addedAt": to_iso(m.added_at), "addedBy": m.added_by}


async def team_to_wire(s: AsyncSession, team: Team, with_members: bool) -> dict[str, Any]:
    member_count = int(await s.scalar(select(func.count()).select_from(TeamMember)
                                      .where(TeamMember.team_id == team.id)) or 0)
    instance_count = int(await s.scalar(select(func.count()).select_from(Instance).where(
        Instance.team_id == team.id, Instance.status.not_in(REMOVED_STATUSES))) or 0)
    body: dict[str, Any] = {
        "id": team.id, "name": team.name, "description": team.description, "memberCount": member_count,
        "instanceCount": instance_count, "createdAt": to_iso(team.created_at), "updatedAt": to_iso(team.updated_at),
        "createdBy": team.created_by,
    }
    if with_members:
        rows = await s.execute(select(TeamMember, User).join(User, User.id == TeamMember.user_id)
                               .where(TeamMember.team_id == team.id).order_by(User.email))
        body["members"] = [member_to_wire(m, u) for m, u in rows]
    return body


# ---- keys ---------------------------------------------------------------------------------------


async def create_own_key(rt: Runtime, principal: Principal, body: KeyCreate) -> dict[str, Any]:
    if body.role is not None and Role[body.role] > Role[principal.effective_role or "VIEWER"]:
        raise ApiError(422, "Invalid request: role cannot exceed the role of the key used for this request",
                       [{"field": "role", "message": "cannot exceed the role of the calling key"}])
    expires = resolve_expiry(body.expires_in_days, body.expires_at, rt.settings.API_KEY_MAX_LIFETIME_DAYS)
    async with rt.db.write() as s:
        assert principal.user_id is not None
        key, raw = await mint_user_key(s, user_id=principal.user_id, name=body.name, role=body.role,
                                       expires_at=expires, created_by=principal.user_id)
        await write_audit(s, principal, "CREATE", "api_key", key.id,
                          {"kind": "USER", "name": key.name, "role": key.role, "expiresAt": to_iso(expires)})
        out = key_to_wire(key, principal.user_email, None)
    out["key"] = raw
    return out


async def revoke_key(rt: Runtime, principal: Principal | None, key_id: str, *, owner_id: str | None,
                     reason: str | None, actor_kind: str | None = None) -> dict[str, Any]:
    """Soft revoke; revoking a revoked key returns it unchanged with no new audit entry."""
    async with rt.db.write() as s:
        stmt = select(ApiKey).where(ApiKey.id == key_id)
        if owner_id is not None:
            stmt = stmt.where(ApiKey.user_id == owner_id)
        key = await s.scalar(stmt)
        if key is None:
            raise ApiError(404, "API key not found")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            key.revoked_by = principal.user_id if principal else None
            key.revoke_reason = reason
            await write_audit(s, principal, "REVOKE", "api_key", key.id, {"reason": reason, "kind": key.kind},
                              actor_kind=actor_kind)
            await s.flush()
        return (await keys_to_wire(s, [key]))[0]


async def admin_create_key(rt: Runtime, principal: Principal | None, body: AdminKeyCreate,
                           actor_kind: str | None = None) -> dict[str, Any]:
    expires = resolve_expiry(body.expires_in_days, body.expires_at, rt.settings.API_KEY_MAX_LIFETIME_DAYS)
    async with rt.db.write() as s:
        if body.kind == "USER":
            if not body.user_id:
                raise ApiError(422, "Invalid request: userId is required for a USER key",
                               [{"field": "userId", "message": "is required for a USER key"}])
            user = await s.get(User, body.user_id)
            if user is None:
                raise ApiError(404, "User not found")
            if body.role is not None and Role[body.role] > Role[user.role]:
                raise ApiError(422, "Invalid request: role cannot exceed the user's role",
                               [{"field": "role", "message": f"cannot exceed the user's role {user.role}"}])
            key, raw = await mint_user_key(s, user_id=user.id, name=body.name, role=body.role, expires_at=expires,
                                           created_by=principal.user_id if principal else None)
            meta = {"kind": "USER", "name": key.name, "userId": user.id, "role": key.role,
                    "expiresAt": to_iso(expires)}
        else:
            if body.role is not None:
                raise ApiError(422, "Invalid request: agent keys carry no role",
                               [{"field": "role", "message": "must be absent for an AGENT key"}])
            if not body.instance_id:
                raise ApiError(422, "Invalid request: instanceId is required for an AGENT key",
                               [{"field": "instanceId", "message": "is required for an AGENT key"}])
            inst = await s.get(Instance, body.instance_id)
            if inst is None:
                raise ApiError(404, "Instance not found")
            if inst.status in REMOVED_STATUSES:
                raise ApiError(409, f"Instance is {inst.status}")
            key, raw = await mint_agent_key(s, instance_id=inst.id, name=body.name, expires_at=expires,
                                            created_by=principal.user_id if principal else None)
            meta = {"kind": "AGENT", "name": key.name, "instanceId": inst.id, "role": None,
                    "expiresAt": to_iso(expires)}
        await write_audit(s, principal, "CREATE", "api_key", key.id, meta, actor_kind=actor_kind)
        out = (await keys_to_wire(s, [key]))[0]
    out["key"] = raw
    return out


# ---- users --------------------------------------------------------------------------------------


async def _active_admins(s: AsyncSession, excluding: str | None = None) -> int:
    stmt = select(func.count()).select_from(User).where(User.role == "ADMIN", User.is_active.is_(True))
    if excluding:
        stmt = stmt.where(User.id != excluding)
    return int(await s.scalar(stmt) or 0)


async def create_user(rt: Runtime, principal: Principal | None, body: UserCreate,
                      actor_kind: str | None = None, session: AsyncSession | None = None) -> User:
    async def run(s: AsyncSession) -> User:
        exists = await s.scalar(select(User.id).where(func.lower(User.email) == body.email.lower()))
        if exists:
            raise ApiError(409, f"A user with email '{body.email}' already exists")
        now = utcnow()
        user = User(id=new_id(), email=body.email.lower(), name=body.name, role=body.role,
                    is_active=body.is_active, created_at=now, updated_at=now,
                    created_by=principal.user_id if principal else None)
        s.add(user)
        await s.flush()
        await write_audit(s, principal, "CREATE", "user", user.id,
                          {"email": user.email, "role": user.role, "isActive": user.is_active},
                          actor_kind=actor_kind)
        return user

    if session is not None:
        return await run(session)
    async with rt.db.write() as s:
        return await run(s)


async def patch_user(rt: Runtime, principal: Principal, user_id: str, body: UserPatch) -> dict[str, Any]:
    fields = body.model_fields_set
    async with rt.db.write() as s:
        user = await s.get(User, user_id)
        if user is None:
            raise ApiError(404, "User not found")
        changes: dict[str, dict[str, Any]] = {}
        was_active_admin = user.role == "ADMIN" and user.is_active
        if "email" in fields and body.email != user.email:
            taken = await s.scalar(select(User.id).where(func.lower(User.email) == body.email, User.id != user.id))
            if taken:
                raise ApiError(409, f"A user with email '{body.email}' already exists")
            changes["email"] = {"from": user.email, "to": body.email}
            user.email = body.email  # type: ignore[assignment]
        if "name" in fields and body.name != user.name:
            changes["name"] = {"from": user.name, "to": body.name}
            user.name = body.name
        if "role" in fields and body.role != user.role:
            changes["role"] = {"from": user.role, "to": body.role}
            user.role = body.role  # type: ignore[assignment]
        if "is_active" in fields and body.is_active != user.is_active:
            changes["isActive"] = {"from": user.is_active, "to": body.is_active}
            user.is_active = bool(body.is_active)
        still_active_admin = user.role == "ADMIN" and user.is_active
        if was_active_admin and not still_active_admin and await _active_admins(s, excluding=user.id) == 0:
            raise ApiError(409, "This change would leave no active ADMIN")
        if changes:
            user.updated_at = utcnow()
            await write_audit(s, principal, "UPDATE", "user", user.id, {"changes": changes})
            if "role" in changes or "isActive" in changes:
                publish_after_commit(s, "scope.changed", {"userIds": [user.id], "teamIds": [], "instanceIds": []})
        await s.flush()
        return (await users_to_wire(s, [user]))[0]


async def delete_user(rt: Runtime, principal: Principal, user_id: str) -> None:
    async with rt.db.write() as s:
        user = await s.get(User, user_id)
        if user is None:
            raise ApiError(404, "User not found")
        if user.id == principal.user_id:
            raise ApiError(409, "You cannot delete yourself")
        if user.role == "ADMIN" and user.is_active and await _active_admins(s, excluding=user.id) == 0:
            raise ApiError(409, "This change would leave no active ADMIN")
        await s.execute(delete(ApiKey).where(ApiKey.user_id == user.id))
        await s.execute(delete(TeamMember).where(TeamMember.user_id == user.id))
        await s.delete(user)
        await write_audit(s, principal, "DELETE", "user", user_id, {"email": user.email})
        publish_after_commit(s, "scope.changed", {"userIds": [user_id], "teamIds": [], "instanceIds": []})


# ---- teams --------------------------------------------------------------------------------------


async def create_team(rt: Runtime, principal: Principal, body: TeamCreate) -> dict[str, Any]:
    async with rt.db.write() as s:
        if await s.scalar(select(Team.id).where(func.lower(Team.name) == body.name.lower())):
            raise ApiError(409, f"A team named '{body.name}' already exists")
        seen: set[str] = set()
        errors = []
        for i, m in enumerate(body.members):
            if m.user_id in seen:
                errors.append({"field": f"members[{i}].userId", "message": "duplicate user"})
            seen.add(m.user_id)
        known = set((await s.scalars(select(User.id).where(User.id.in_(seen)))).all()) if seen else set()
        for i, m in enumerate(body.members):
            if m.user_id not in known:
                errors.append({"field": f"members[{i}].userId", "message": "unknown user"})
        if errors:
            raise ApiError(422, f"Invalid request: {errors[0]['field']} {errors[0]['message']}", errors)
        now = utcnow()
        team = Team(id=new_id(), name=body.name, description=body.description, created_at=now, updated_at=now,
                    created_by=principal.user_id)
        s.add(team)
        await s.flush()
        for m in body.members:
            s.add(TeamMember(team_id=team.id, user_id=m.user_id, role=m.role, added_at=now, added_by=principal.user_id))
        await write_audit(s, principal, "CREATE", "team", team.id, {"name": team.name}, team_id=team.id)
        if body.members:
            publish_after_commit(s, "scope.changed", {"userIds": sorted(seen), "teamIds": [team.id],
                                                      "instanceIds": []})
        await s.flush()
        return await team_to_wire(s, team, True)


async def _team(s: AsyncSession, team_id: str) -> Team:
    team = await s.get(Team, team_id)
    if team is None:
        raise ApiError(404, "Team not found")
    return team


async def patch_team(rt: Runtime, principal: Principal, team_id: str, body: TeamPatch) -> dict[str, Any]:
    fields = body.model_fields_set
    async with rt.db.write() as s:
        team = await _team(s, team_id)
        changes: dict[str, Any] = {}
        if "name" in fields and body.name != team.name:
            assert body.name is not None
            if await s.scalar(select(Team.id).where(func.lower(Team.name) == body.name.lower(), Team.id != team.id)):
                raise ApiError(409, f"A team named '{body.name}' already exists")
            changes["name"] = {"from": team.name, "to": body.name}
            team.name = body.name
        if "description" in fields and body.description != team.description:
            changes["description"] = {"from": team.description, "to": body.description}
            team.description = body.description
        if changes:
            team.updated_at = utcnow()
            await write_audit(s, principal, "UPDATE", "team", team.id, {"changes": changes}, team_id=team.id)
        await s.flush()
        return await team_to_wire(s, team, False)


async def delete_team(rt: Runtime, principal: Principal, team_id: str) -> None:
    async with rt.db.write() as s:
        team = await _team(s, team_id)
        live = int(await s.scalar(select(func.count()).select_from(Instance).where(
            Instance.team_id == team.id, Instance.status.in_(LIVE_STATUSES))) or 0)
        if live:
            raise ApiError(409, f"Team '{team.name}' still has {live} live instance(s); move or remove them first")
        members = list((await s.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team.id))).all())
        await s.execute(update(Instance).where(Instance.team_id == team.id).values(team_id=None))
        await s.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
        await s.delete(team)
        await write_audit(s, principal, "DELETE", "team", team_id, {"name": team.name}, team_id=team_id)
        publish_after_commit(s, "scope.changed", {"userIds": members, "teamIds": [team_id], "instanceIds": []})


async def add_member(rt: Runtime, principal: Principal, team_id: str, body: MemberIn) -> dict[str, Any]:
    async with rt.db.write() as s:
        await _team(s, team_id)
        user = await s.get(User, body.user_id)
        if user is None:
            raise ApiError(422, "Invalid request: userId is not an existing user",
                           [{"field": "userId", "message": "unknown user"}])
        if await s.get(TeamMember, (team_id, user.id)):
            raise ApiError(409, "This user is already a member of the team")
        m = TeamMember(team_id=team_id, user_id=user.id, role=body.role, added_at=utcnow(), added_by=principal.user_id)
        s.add(m)
        await write_audit(s, principal, "CREATE", "team_member", user.id, {"role": body.role}, team_id=team_id)
        publish_after_commit(s, "scope.changed", {"userIds": [user.id], "teamIds": [team_id], "instanceIds": []})
        await s.flush()
        return member_to_wire(m, user)


async def patch_member(rt: Runtime, principal: Principal, team_id: str, user_id: str, role: str | None
                       ) -> dict[str, Any]:
    async with rt.db.write() as s:
        await _team(s, team_id)
        m = await s.get(TeamMember, (team_id, user_id))
        if m is None:
            raise ApiError(404, "Membership not found")
        if m.role != role:
            await write_audit(s, principal, "UPDATE", "team_member", user_id,
                              {"changes": {"role": {"from": m.role, "to": role}}}, team_id=team_id)
            m.role = role
            publish_after_commit(s, "scope.changed", {"userIds": [user_id], "teamIds": [team_id],
                                                      "instanceIds": []})
        user = await s.get(User, user_id)
        assert user is not None
        await s.flush()
        return member_to_wire(m, user)


async def remove_member(rt: Runtime, principal: Principal, team_id: str, user_id: str) -> None:
    async with rt.db.write() as s:
        await _team(s, team_id)
        m = await s.get(TeamMember, (team_id, user_id))
        if m is None:
            raise ApiError(404, "Membership not found")
        await s.delete(m)
        await write_audit(s, principal, "DELETE", "team_member", user_id, {"role": m.role}, team_id=team_id)
        publish_after_commit(s, "scope.changed", {"userIds": [user_id], "teamIds": [team_id], "instanceIds": []})


async def assign_instances(rt: Runtime, principal: Principal, team_id: str, ids: list[str]) -> list[Instance]:
    async with rt.db.write() as s:
        await _team(s, team_id)
        found = {i.id: i for i in (await s.scalars(select(Instance).where(Instance.id.in_(ids)))).all()}
        errors = []
        for idx, iid in enumerate(ids):
            inst = found.get(iid)
            if inst is None:
                errors.append({"field": f"instanceIds[{idx}]", "message": "unknown instance"})
            elif inst.status in REMOVED_STATUSES:
                errors.append({"field": f"instanceIds[{idx}]", "message": f"instance is {inst.status}"})
        if errors:
            raise ApiError(422, f"Invalid request: {errors[0]['field']} {errors[0]['message']}", errors)
        now = utcnow()
        moved = []
        for iid in dict.fromkeys(ids):
            inst = found[iid]
            if inst.team_id == team_id:
                continue
            old = inst.team_id
            inst.team_id = team_id
            inst.updated_at = now
            write_event(s, inst.id, "TEAM_CHANGE", "Instance moved to another team",
                        {"fromTeamId": old, "toTeamId": team_id}, actor_kind="USER", user_id=principal.user_id)
            await write_audit(s, principal, "UPDATE", "instance", inst.id,
                              {"changes": {"teamId": {"from": old, "to": team_id}}}, team_id=team_id)
            moved.append(inst.id)
        if moved:
            publish_after_commit(s, "scope.changed", {"userIds": [], "teamIds": [team_id], "instanceIds": moved})
        await s.flush()
        return [found[i] for i in dict.fromkeys(ids)]


async def unassign_instance(rt: Runtime, principal: Principal, team_id: str, instance_id: str) -> None:
    async with rt.db.write() as s:
        await _team(s, team_id)
        inst = await s.scalar(select(Instance).where(and_(Instance.id == instance_id, Instance.team_id == team_id)))
        if inst is None:
            raise ApiError(404, "Instance not found in this team")
        inst.team_id = None
        inst.updated_at = utcnow()
        write_event(s, inst.id, "TEAM_CHANGE", "Instance removed from its team",
                    {"fromTeamId": team_id, "toTeamId": None}, actor_kind="USER", user_id=principal.user_id)
        await write_audit(s, principal, "UPDATE", "instance", inst.id,
                          {"changes": {"teamId": {"from": team_id, "to": None}}}, team_id=team_id)
        publish_after_commit(s, "scope.changed", {"userIds": [], "teamIds": [team_id], "instanceIds": [inst.id]})

