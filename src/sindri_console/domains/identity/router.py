"""Self-service (`/me`) and admin routes for users, teams, memberships and API keys (10-core §4)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import ColumnElement, func, or_, select

from sindri_console.domains.identity import service
from sindri_console.domains.identity.schemas import (
    AdminKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    DataList,
    KeyCreate,
    MemberIn,
    MemberOut,
    MemberPatch,
    MeOut,
    Page,
    TeamCreate,
    TeamInstancesIn,
    TeamOut,
    TeamPatch,
    UserCreate,
    UserOut,
    UserPatch,
)
from sindri_console.domains.instances.repository import agent_states
from sindri_console.domains.instances.service import min_instance_version
from sindri_console.domains.instances.wire import instance_to_wire
from sindri_console.kit.auth import CurrentPrincipal
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.errors import ApiError
from sindri_console.kit.pagination import page_body, page_params, paginate
from sindri_console.kit.rbac import ROLE_NAMES
from sindri_console.kit.schema import query_bool, query_enum_list, query_str
from sindri_console.kit.scope import check_path_id
from sindri_console.models.identity import ApiKey, Team, TeamMember, User
from sindri_console.runtime import runtime_of

router = APIRouter(prefix="/api/v1", tags=["identity"])
ERR: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad request"}, 401: {"description": "Unauthenticated"}, 403: {"description": "Forbidden"},
    404: {"description": "Not found"}, 409: {"description": "Conflict"}, 422: {"description": "Validation error"},
}


# ---- /me ----------------------------------------------------------------------------------------

@router.get("/me", response_model=MeOut, responses=ERR, summary="The calling user")
async def get_me(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    async with rt.db.read() as s:
        user = await s.get(User, principal.user_id)
        key = await s.get(ApiKey, principal.api_key_id)
        if user is None or key is None:
            raise ApiError(401, "Invalid API key")
        teams = (await service._teams_of(s, [user.id]))[user.id]
    return {
        "id": user.id, "email": user.email, "name": user.name, "role": user.role,
        "effectiveRole": principal.effective_role, "isActive": user.is_active, "teams": teams,
        "apiKey": {"id": key.id, "name": key.name, "keyPrefix": key.key_prefix, "role": key.role,
                   "expiresAt": to_iso(key.expires_at)},
        "createdAt": to_iso(user.created_at), "lastSeenAt": to_iso(user.last_seen_at),
    }


@router.get("/me/api-keys", response_model=DataList, responses=ERR, summary="The caller's API keys")
async def my_keys(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    include_revoked = query_bool(request.query_params, "includeRevoked")
    async with rt.db.read() as s:
        active = (await s.scalars(select(ApiKey).where(ApiKey.user_id == principal.user_id, ApiKey.revoked_at.is_(None))
                                  .order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))).all()
        keys = list(active)
        if include_revoked:
            keys += list((await s.scalars(
                select(ApiKey).where(ApiKey.user_id == principal.user_id, ApiKey.revoked_at.is_not(None))
                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(200))).all())
            keys.sort(key=lambda k: (k.created_at, k.id), reverse=True)
        return {"data": await service.keys_to_wire(s, keys)}


@router.post("/me/api-keys", status_code=201, response_model=ApiKeyCreated, responses=ERR,
             summary="Create an API key for the caller")
async def create_my_key(request: Request, principal: CurrentPrincipal, body: KeyCreate) -> Any:
    return await service.create_own_key(runtime_of(request), principal, body)


@router.delete("/me/api-keys/{id}", response_model=ApiKeyOut, responses=ERR, summary="Revoke one of the caller's keys")
async def revoke_my_key(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "API key id")
    return await service.revoke_key(runtime_of(request), principal, id, owner_id=principal.user_id,
                                    reason="revoked by its owner")


# ---- admin: users -------------------------------------------------------------------------------

@router.get("/admin/users", response_model=Page, responses=ERR, summary="List users")
async def list_users(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    stmt = select(User)
    roles = query_enum_list(q, "role", ROLE_NAMES)
    if roles:
        stmt = stmt.where(User.role.in_(roles))
    if q.get("isActive") not in (None, ""):
        stmt = stmt.where(User.is_active.is_(query_bool(q, "isActive")))
    team_id = query_str(q, "teamId", 128)
    if team_id:
        stmt = stmt.where(User.id.in_(select(TeamMember.user_id).where(TeamMember.team_id == team_id)))
    search = query_str(q, "search", 128)
    if search:
        stmt = stmt.where(or_(rt.db.dialect.icontains(User.email, search), rt.db.dialect.icontains(User.name, search)))
    stmt = stmt.order_by(User.created_at.desc(), User.id.desc())
    async with rt.db.read() as s:
        rows, total, _ = await paginate(s, stmt, params)
        return page_body(await service.users_to_wire(s, [r[0] for r in rows]), params, total)


@router.post("/admin/users", status_code=201, response_model=UserOut, responses=ERR, summary="Create a user")
async def create_user(request: Request, principal: CurrentPrincipal, body: UserCreate) -> Any:
    rt = runtime_of(request)
    user = await service.create_user(rt, principal, body)
    async with rt.db.read() as s:
        return (await service.users_to_wire(s, [user]))[0]


@router.get("/admin/users/{id}", response_model=UserOut, responses=ERR, summary="User detail")
async def get_user(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "user id")
    rt = runtime_of(request)
    async with rt.db.read() as s:
        user = await s.get(User, id)
        if user is None:
            raise ApiError(404, "User not found")
        return (await service.users_to_wire(s, [user]))[0]


@router.patch("/admin/users/{id}", response_model=UserOut, responses=ERR, summary="Update a user")
async def patch_user(id: str, request: Request, principal: CurrentPrincipal, body: UserPatch) -> Any:
    check_path_id(id, "user id")
    return await service.patch_user(runtime_of(request), principal, id, body)


@router.delete("/admin/users/{id}", status_code=204, responses=ERR, summary="Delete a user")
async def delete_user(id: str, request: Request, principal: CurrentPrincipal) -> Response:
    check_path_id(id, "user id")
    await service.delete_user(runtime_of(request), principal, id)
    return Response(status_code=204)


# ---- admin: teams -------------------------------------------------------------------------------

@router.get("/admin/teams", response_model=Page, responses=ERR, summary="List teams")
async def list_teams(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    stmt = select(Team)
    search = query_str(q, "search", 64)
    if search:
        stmt = stmt.where(rt.db.dialect.icontains(Team.name, search))
    stmt = stmt.order_by(func.lower(Team.name), Team.id)
    async with rt.db.read() as s:
        rows, total, _ = await paginate(s, stmt, params)
        return page_body([await service.team_to_wire(s, r[0], False) for r in rows], params, total)


@router.post("/admin/teams", status_code=201, response_model=TeamOut, responses=ERR, summary="Create a team")
async def create_team(request: Request, principal: CurrentPrincipal, body: TeamCreate) -> Any:
    return await service.create_team(runtime_of(request), principal, body)


@router.get("/admin/teams/{id}", response_model=TeamOut, responses=ERR, summary="Team detail with members")
async def get_team(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "team id")
    rt = runtime_of(request)
    async with rt.db.read() as s:
        team = await s.get(Team, id)
        if team is None:
            raise ApiError(404, "Team not found")
        return await service.team_to_wire(s, team, True)


@router.patch("/admin/teams/{id}", response_model=TeamOut, responses=ERR, summary="Update a team")
async def patch_team(id: str, request: Request, principal: CurrentPrincipal, body: TeamPatch) -> Any:
    check_path_id(id, "team id")
    return await service.patch_team(runtime_of(request), principal, id, body)


@router.delete("/admin/teams/{id}", status_code=204, responses=ERR, summary="Delete a team")
async def delete_team(id: str, request: Request, principal: CurrentPrincipal) -> Response:
    check_path_id(id, "team id")
    await service.delete_team(runtime_of(request), principal, id)
    return Response(status_code=204)


@router.post("/admin/teams/{id}/members", status_code=201, response_model=MemberOut, responses=ERR,
             summary="Add a member")
async def add_member(id: str, request: Request, principal: CurrentPrincipal, body: MemberIn) -> Any:
    check_path_id(id, "team id")
    return await service.add_member(runtime_of(request), principal, id, body)


@router.patch("/admin/teams/{id}/members/{userId}", response_model=MemberOut, responses=ERR,
              summary="Change a member's role")
async def patch_member(id: str, userId: str, request: Request, principal: CurrentPrincipal,
                       body: MemberPatch) -> Any:
    check_path_id(id, "team id")
    check_path_id(userId, "user id")
    return await service.patch_member(runtime_of(request), principal, id, userId, body.role)


@router.delete("/admin/teams/{id}/members/{userId}", status_code=204, responses=ERR, summary="Remove a member")
async def remove_member(id: str, userId: str, request: Request, principal: CurrentPrincipal) -> Response:
    check_path_id(id, "team id")
    check_path_id(userId, "user id")
    await service.remove_member(runtime_of(request), principal, id, userId)
    return Response(status_code=204)


@router.post("/admin/teams/{id}/instances", response_model=DataList, responses=ERR,
             summary="Move instances into a team")
async def assign_instances(id: str, request: Request, principal: CurrentPrincipal, body: TeamInstancesIn) -> Any:
    check_path_id(id, "team id")
    rt = runtime_of(request)
    instances = await service.assign_instances(rt, principal, id, body.instance_ids)
    async with rt.db.read() as s:
        states = await agent_states(s, [i.id for i in instances])
    mv = min_instance_version(rt)
    return {"data": [instance_to_wire(i, states.get(i.id), mv) for i in instances]}


@router.delete("/admin/teams/{id}/instances/{instanceId}", status_code=204, responses=ERR,
               summary="Remove an instance from a team")
async def unassign_instance(id: str, instanceId: str, request: Request, principal: CurrentPrincipal) -> Response:
    check_path_id(id, "team id")
    check_path_id(instanceId, "instance id")
    await service.unassign_instance(runtime_of(request), principal, id, instanceId)
    return Response(status_code=204)


# ---- admin: API keys ----------------------------------------------------------------------------

@router.get("/admin/api-keys", response_model=Page, responses=ERR, summary="List API keys")
async def list_keys(request: Request, principal: CurrentPrincipal) -> Any:
    rt = runtime_of(request)
    q = request.query_params
    params = page_params(q)
    stmt = select(ApiKey)
    kinds = query_enum_list(q, "kind", ("USER", "AGENT"))
    if kinds:
        stmt = stmt.where(ApiKey.kind.in_(kinds))
    for name, col in (("userId", ApiKey.user_id), ("instanceId", ApiKey.instance_id)):
        v = query_str(q, name, 128)
        if v:
            stmt = stmt.where(col == v)
    statuses = query_enum_list(q, "status", ("ACTIVE", "EXPIRED", "REVOKED")) or ["ACTIVE", "EXPIRED"]
    now = utcnow()
    conds: list[ColumnElement[bool]] = []
    if "REVOKED" in statuses:
        conds.append(ApiKey.revoked_at.is_not(None))
    if "EXPIRED" in statuses:
        conds.append((ApiKey.revoked_at.is_(None)) & ApiKey.expires_at.is_not(None) & (ApiKey.expires_at <= now))
    if "ACTIVE" in statuses:
        conds.append((ApiKey.revoked_at.is_(None)) & (ApiKey.expires_at.is_(None) | (ApiKey.expires_at > now)))
    stmt = stmt.where(or_(*conds)).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    async with rt.db.read() as s:
        rows, total, _ = await paginate(s, stmt, params)
        return page_body(await service.keys_to_wire(s, [r[0] for r in rows]), params, total)


@router.post("/admin/api-keys", status_code=201, response_model=ApiKeyCreated, responses=ERR,
             summary="Create a user or agent key")
async def create_key(request: Request, principal: CurrentPrincipal, body: AdminKeyCreate) -> Any:
    return await service.admin_create_key(runtime_of(request), principal, body)


@router.get("/admin/api-keys/{id}", response_model=ApiKeyOut, responses=ERR, summary="API key detail")
async def get_key(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "API key id")
    rt = runtime_of(request)
    async with rt.db.read() as s:
        key = await s.get(ApiKey, id)
        if key is None:
            raise ApiError(404, "API key not found")
        return (await service.keys_to_wire(s, [key]))[0]


@router.delete("/admin/api-keys/{id}", response_model=ApiKeyOut, responses=ERR, summary="Revoke an API key")
async def revoke_key(id: str, request: Request, principal: CurrentPrincipal) -> Any:
    check_path_id(id, "API key id")
    reason = query_str(request.query_params, "reason", 200)
    return await service.revoke_key(runtime_of(request), principal, id, owner_id=None, reason=reason)
