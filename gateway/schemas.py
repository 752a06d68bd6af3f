"""Request and response bodies of the gateway's own API (accounts of the built-in provider)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared import organ_id

# Roles an administrator may grant: "service" (acts everywhere) and "citizen" (belongs to no
# agency) are never handed out through this API.
GrantableRole = Literal["desk_officer", "specialist", "leader", "clerk", "admin", "auditor", "integrator"]


def _organ_id(value: str) -> str:
    if not organ_id.is_valid(value):
        raise ValueError("not an agency identifier (mã định danh), e.g. 000.00.00.H56")
    return value


OrganId = Annotated[str, Field(min_length=13, max_length=13), AfterValidator(_organ_id)]
Username = Annotated[str, Field(min_length=3, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Clearance = Annotated[int, Field(ge=0, le=3, description="0 none, 1 mật, 2 tối mật, 3 tuyệt mật")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserIn(Strict):
    username: Username
    full_name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=200)
    roles: list[GrantableRole] = Field(min_length=1, max_length=8)
    agency: OrganId
    clearance: Clearance = 0


class UserPatch(Strict):
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=1, max_length=200)
    roles: list[GrantableRole] | None = Field(default=None, min_length=1, max_length=8)
    agency: OrganId | None = None
    clearance: Clearance | None = None
    active: bool | None = None


class UserOut(BaseModel):
    username: str
    full_name: str
    roles: list[str]
    agency: str | None
    clearance: int
    active: bool
    locked_until: datetime | None
    created_at: datetime | None


class UserPage(BaseModel):
    items: list[UserOut]
    next: str | None = Field(description="cursor of the next page; absent on the last one")


ClientId = Annotated[str, Field(min_length=3, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class ClientIn(Strict):
    client_id: ClientId
    description: str = Field(default="", max_length=300)
    roles: list[GrantableRole] = Field(min_length=1, max_length=8)
    agency: OrganId


class ClientPatch(Strict):
    description: str | None = Field(default=None, max_length=300)
    roles: list[GrantableRole] | None = Field(default=None, min_length=1, max_length=8)
    active: bool | None = None


class ClientOut(BaseModel):
    client_id: str
    description: str
    roles: list[str]
    agency: str | None
    active: bool
    created_at: datetime | None


class ClientWithSecret(ClientOut):
    client_secret: str = Field(description="shown this once; only its hash is kept")


class ClientPage(BaseModel):
    items: list[ClientOut]
    next: str | None
