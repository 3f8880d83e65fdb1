"""Wire types of users, teams, memberships and API keys (10-core §4)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from sindri_console.kit.rbac import ROLE_NAMES
from sindri_console.kit.schema import ApiModel, IsoDatetime, OutModel

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
TEAM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")


def _role(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().upper() not in ROLE_NAMES:
        raise ValueError("must be one of " + ", ".join(ROLE_NAMES))
    return value.strip().upper()


def _email(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an email address")
    v = value.strip()
    if len(v) > 254 or v.count("@") != 1 or not EMAIL_RE.match(v):
        raise ValueError("must be an email address with one '@' and no spaces")
    return v.lower()


def _trimmed(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _required_role(value: Any) -> Any:
    if value is None:
        raise ValueError("must be one of " + ", ".join(ROLE_NAMES))
    return _role(value)


def _required_email(value: Any) -> Any:
    if value is None:
        raise ValueError("must be an email address")
    return _email(value)


RoleCap = Annotated[str | None, BeforeValidator(_role)]
RoleName = Annotated[str, BeforeValidator(_required_role)]
Email = Annotated[str, BeforeValidator(_required_email)]
KeyName = Annotated[str, BeforeValidator(_trimmed), Field(min_length=1, max_length=100)]


class KeyCreate(ApiModel):
    name: KeyName
    role: RoleCap = None
    expires_in_days: int | None = None
    expires_at: IsoDatetime | None = None


class AdminKeyCreate(ApiModel):
    kind: Literal["USER", "AGENT"]
    user_id: str | None = Field(default=None, max_length=128)
    instance_id: str | None = Field(default=None, max_length=128)
    name: KeyName = "api key"
    role: RoleCap = None
    expires_in_days: int | None = None
    expires_at: IsoDatetime | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _k(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v


class UserCreate(ApiModel):
    email: Email
    name: str | None = Field(default=None, max_length=128)
    role: RoleName = "VIEWER"
    is_active: bool = True


class UserPatch(ApiModel):
    email: Email | None = None
    name: str | None = Field(default=None, max_length=128)
    role: RoleName | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> UserPatch:
        for name in ("email", "role", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class MemberIn(ApiModel):
    user_id: str = Field(min_length=1, max_length=128)
    role: RoleCap = None


class TeamCreate(ApiModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=512)
    members: list[MemberIn] = Field(default_factory=list, max_length=500)

    @field_validator("name")
    @classmethod
    def _n(cls, v: str) -> str:
        if not TEAM_NAME_RE.match(v):
            raise ValueError("must start with a letter or digit and use letters, digits, space, _ . -")
        return v


class TeamPatch(ApiModel):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=512)

    @field_validator("name")
    @classmethod
    def _n(cls, v: str | None) -> str | None:
        if v is None or not TEAM_NAME_RE.match(v):
            raise ValueError("must start with a letter or digit and use letters, digits, space, _ . -")
        return v


class MemberPatch(ApiModel):
    role: RoleCap


class TeamInstancesIn(ApiModel):
    instance_ids: list[str] = Field(min_length=1, max_length=100)


class ApiKeyOut(OutModel):
    id: str
    kind: str
    name: str
    key_prefix: str
    user_id: str | None
    user_email: str | None
    instance_id: str | None
    instance_name: str | None
    role: str | None
    status: str
    created_at: str
    created_by: str | None
    expires_at: str | None
    last_used_at: str | None
    last_used_ip: str | None
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str


class TeamRef(OutModel):
    id: str
    name: str
    role: str | None


class UserOut(OutModel):
    id: str
    email: str
    name: str | None
    role: str
    is_active: bool
    teams: list[TeamRef]
    active_key_count: int
    created_at: str
    updated_at: str
    created_by: str | None
    last_seen_at: str | None


class MemberOut(OutModel):
    user_id: str
    email: str
    name: str | None
    user_role: str
    role: str | None
    effective_role: str
    added_at: str
    added_by: str | None


class TeamOut(OutModel):
    id: str
    name: str
    description: str | None
    member_count: int
    instance_count: int
    created_at: str
    updated_at: str
    created_by: str | None
    members: list[MemberOut] | None = None


class MeOut(OutModel):
    id: str
    email: str
    name: str | None
    role: str
    effective_role: str
    is_active: bool
    teams: list[TeamRef]
    api_key: dict[str, Any]
    created_at: str
    last_seen_at: str | None


class Page(OutModel):
    data: list[dict[str, Any]]
    pagination: dict[str, Any]


class DataList(OutModel):
    data: list[dict[str, Any]]
