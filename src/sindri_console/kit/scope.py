"""Team scope (00 §5, 10-core §4.1): the one place that decides which instances a caller sees."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.kit.auth import Principal
from sindri_console.kit.errors import ApiError
from sindri_console.kit.ids import is_valid_path_id
from sindri_console.kit.rbac import Role
from sindri_console.models.identity import Team
from sindri_console.models.instance import Instance

LIVE_STATUSES = ("DEPLOYING", "RUNNING", "UNREACHABLE", "SUSPENDING", "SUSPENDED", "RESUMING", "STOPPED",
                 "ERROR", "DESTROYING")
REMOVED_STATUSES = ("DESTROYED", "DEREGISTERED")


def visible_instances(principal: Principal, team_column: Any = None) -> ColumnElement[bool]:
    """SQL condition on the instance's team column for instances in the caller's scope.

    Agent principals see only their own instance (agent key) or every instance (bootstrap).
    """
    col = Instance.team_id if team_column is None else team_column
    if principal.credential == "bootstrap" or principal.unrestricted:
        return true()
    if principal.credential == "agent_key":
        return Instance.id == principal.instance_id
    return or_(col.is_(None), col.in_(list(principal.memberships)))


def can_see_team(principal: Principal, team_id: str | None) -> bool:
    if principal.credential == "bootstrap" or principal.unrestricted:
        return True
    return team_id is None or team_id in principal.memberships


def check_path_id(value: str, what: str = "id") -> str:
    if not is_valid_path_id(value):
        raise ApiError(400, f"Invalid {what}: use 1-128 characters of letters, digits, '_' and '-'")
    return value


async def get_visible_instance(session: AsyncSession, principal: Principal, instance_id: str,
                               *, for_update: bool = False) -> Instance:
    """The instance, or 404 when it does not exist or lies outside the caller's scope."""
    check_path_id(instance_id, "instance id")
    stmt = select(Instance).where(Instance.id == instance_id, visible_instances(principal))
    inst = await session.scalar(stmt)
    if inst is None:
        raise ApiError(404, "Instance not found")
    return inst


async def require_role_on_instance(session: AsyncSession, principal: Principal, instance: Instance,
                                   needed: Role) -> None:
    """403 when the member role of the instance's team caps the caller below `needed` (§4.1)."""
    role = principal.role_on_team(instance.team_id)
    if role is not None and Role[role] >= needed:
        return
    team_name = await session.scalar(select(Team.name).where(Team.id == instance.team_id))
    raise ApiError(
        403,
        f"This action requires the {needed.name} role or higher on instances of team '{team_name}'",
    )
