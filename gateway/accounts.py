"""Administering the built-in provider's accounts: users and service clients.

An administrator acts only inside their agency's subtree: they see, create and change accounts
of that subtree and nothing else (others' accounts are 404), and never grant a clearance above
their own. Citizens' accounts and the ``service`` role are not handed out here.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, false, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity import Passwords, _builtin
from gateway.models import ServiceClient, User
from gateway.schemas import (
    ClientIn,
    ClientOut,
    ClientPage,
    ClientPatch,
    ClientWithSecret,
    UserIn,
    UserOut,
    UserPage,
    UserPatch,
)
from gateway.state import GatewayState
from shared import clock, organ_id
from shared.auth import Caller, allow, current_caller
from shared.db import request_session
from shared.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable, problem_responses
from shared.http import IfMatch, StrictRoute, check_if_match, etag_for, id_cursor

router = APIRouter(prefix="/api/auth", tags=["accounts"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")
Admin = Depends(current_caller)


def _subtree_suffix(agency: str) -> str:
    """SQL LIKE pattern of an agency's subtree: OrganIds read right to left, so a subtree is a
    suffix (``000.00.17.H56`` → ``%.17.H56``); the exact check follows in Python."""
    levels = organ_id.path(agency)
    if len(levels) == 4:
        return agency
    return "%." + ".".join(reversed(levels))


def _scoped(stmt: Select[Any], column: Any, caller: Caller) -> Select[Any]:
    if "service" in caller.roles:
        return stmt
    if caller.agency is None:
        return stmt.where(false())  # an admin of no agency administers nobody
    return stmt.where(column.like(_subtree_suffix(caller.agency)))


def _check_grant(caller: Caller, *, agency: str, clearance: int = 0) -> None:
    if not caller.acts_in(agency):
        raise Forbidden("that agency is outside your subtree", agency=agency)
    if "service" not in caller.roles and clearance > caller.clearance:
        raise Forbidden("you cannot grant a clearance above your own", clearance=clearance)


def _check_password(request: Request, password: str, username: str) -> None:
    minimum = request.app.state.runtime.settings.password_min_length
    if len(password) < minimum or password.lower() == username.lower():
        raise Unprocessable(
            f"the password needs at least {minimum} characters and must differ from the username",
            code_detail="weak_password",
        )


def _user_out(user: User) -> UserOut:
    return UserOut(
        username=user.username,
        full_name=user.full_name,
        roles=list(user.roles),
        agency=user.agency,
        clearance=user.clearance,
        active=user.active,
        locked_until=user.locked_until,
        created_at=user.created_at,
    )


def _client_out(client: ServiceClient) -> ClientOut:
    return ClientOut(
        client_id=client.client_id,
        description=client.description,
        roles=list(client.roles),
        agency=client.agency,
        active=client.active,
        created_at=client.created_at,
    )


async def _user(session: AsyncSession, caller: Caller, username: str) -> User:
    user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    if user is None or not caller.acts_in(user.agency):
        raise NotFound(f"no user {username}")
    return user


async def _client(session: AsyncSession, caller: Caller, client_id: str) -> ServiceClient:
    client = (
        await session.execute(select(ServiceClient).where(ServiceClient.client_id == client_id))
    ).scalar_one_or_none()
    if client is None or not caller.acts_in(client.agency):
        raise NotFound(f"no client {client_id}")
    return client


def _passwords(request: Request) -> Passwords:
    _builtin(request)
    return GatewayState.of(request).passwords


# --- users --------------------------------------------------------------------------------


@router.get("/users", response_model=UserPage, responses=problem_responses(400, 401, 403, 404), **allow("admin"))
async def list_users(
    request: Request,
    agency: str | None = Query(default=None, max_length=13, description="only this agency's subtree"),
    role: str | None = Query(default=None, max_length=30),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=20),
    caller: Caller = Admin,
    session: AsyncSession = Session,
) -> UserPage:
    """Accounts in your agency's subtree, oldest first."""
    _builtin(request)
    stmt = _scoped(select(User), User.agency, caller).where(User.id > id_cursor(cursor)).order_by(User.id)
    if agency is not None:
        if not organ_id.is_valid(agency):
            raise BadRequest("agency is not an agency identifier")
        stmt = stmt.where(User.agency.like(_subtree_suffix(agency)))
    rows = (await session.execute(stmt.limit(limit + 1))).scalars().all()
    page = [u for u in rows[:limit] if caller.acts_in(u.agency) and (role is None or role in u.roles)]
    more = len(rows) > limit
    return UserPage(items=[_user_out(u) for u in page], next=str(rows[limit - 1].id) if more else None)


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    **allow("admin"),
)
async def create_user(
    body: UserIn, request: Request, response: Response, caller: Caller = Admin, session: AsyncSession = Session
) -> UserOut:
    """Create an officer's account in your subtree."""
    passwords = _passwords(request)
    _check_grant(caller, agency=body.agency, clearance=body.clearance)
    _check_password(request, body.password, body.username)
    # hashed before the first query: the transaction (SQLite's write lock) opens at that query
    password_hash = await passwords.hash_async(body.password)
    if (await session.execute(select(User.id).where(User.username == body.username))).first():
        raise Conflict(f"the username {body.username} is taken")
    user = User(
        username=body.username,
        full_name=body.full_name,
        password_hash=password_hash,
        roles=sorted(set(body.roles)),
        agency=body.agency,
        clearance=body.clearance,
        active=True,
        failed_attempts=0,
        version=1,
        created_at=clock.now(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the username {body.username} is taken") from exc
    response.headers["ETag"] = etag_for(user.version)
    response.headers["Location"] = f"/api/auth/users/{user.username}"
    return _user_out(user)


@router.get("/users/{username}", response_model=UserOut, responses=problem_responses(401, 403, 404), **allow("admin"))
async def get_user(
    username: str, request: Request, response: Response, caller: Caller = Admin, session: AsyncSession = Session
) -> UserOut:
    _builtin(request)
    user = await _user(session, caller, username)
    response.headers["ETag"] = etag_for(user.version)
    return _user_out(user)


@router.patch(
    "/users/{username}",
    response_model=UserOut,
    responses=problem_responses(401, 403, 404, 412, 422, 428),
    **allow("admin"),
)
async def update_user(
    username: str,
    body: UserPatch,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    caller: Caller = Admin,
    session: AsyncSession = Session,
) -> UserOut:
    """Change roles, agency, clearance, name or password, or (de)activate; needs ``If-Match``."""
    passwords = _passwords(request)
    if body.password is not None:
        _check_password(request, body.password, username)
    password_hash = await passwords.hash_async(body.password) if body.password is not None else None
    user = await _user(session, caller, username)
    check_if_match(if_match, etag_for(user.version))
    if user.username == caller.sub and (body.active is False or (body.roles and "admin" not in body.roles)):
        raise Forbidden("you cannot deactivate yourself or drop your own admin role")
    changes = body.model_dump(exclude_unset=True)
    _check_grant(caller, agency=changes.get("agency", user.agency), clearance=changes.get("clearance", 0))
    if password_hash is not None:
        user.password_hash = password_hash
        user.failed_attempts = 0
        user.locked_until = None
    for name in ("full_name", "agency", "clearance", "active"):
        if name in changes and changes[name] is not None:
            setattr(user, name, changes[name])
    if body.roles is not None:
        user.roles = sorted(set(body.roles))
    user.version += 1
    await session.flush()
    response.headers["ETag"] = etag_for(user.version)
    return _user_out(user)


@router.post(
    "/users/{username}/unlock", response_model=UserOut, responses=problem_responses(401, 403, 404), **allow("admin")
)
async def unlock_user(
    username: str, request: Request, caller: Caller = Admin, session: AsyncSession = Session
) -> UserOut:
    """Lift a lockout after too many failed sign-ins."""
    _builtin(request)
    user = await _user(session, caller, username)
    user.locked_until = None
    user.failed_attempts = 0
    await session.flush()
    return _user_out(user)


# --- service clients ----------------------------------------------------------------------


@router.get("/clients", response_model=ClientPage, responses=problem_responses(400, 401, 403, 404), **allow("admin"))
async def list_clients(
    request: Request,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=20),
    caller: Caller = Admin,
    session: AsyncSession = Session,
) -> ClientPage:
    """Machine clients (portals, integrators) of your subtree."""
    _builtin(request)
    stmt = (
        _scoped(select(ServiceClient), ServiceClient.agency, caller)
        .where(ServiceClient.id > id_cursor(cursor))
        .order_by(ServiceClient.id)
    )
    rows = (await session.execute(stmt.limit(limit + 1))).scalars().all()
    page = [c for c in rows[:limit] if caller.acts_in(c.agency)]
    return ClientPage(items=[_client_out(c) for c in page], next=str(rows[limit - 1].id) if len(rows) > limit else None)


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientWithSecret,
    responses=problem_responses(401, 403, 404, 409, 422),
    **allow("admin"),
)
async def create_client(
    body: ClientIn, request: Request, response: Response, caller: Caller = Admin, session: AsyncSession = Session
) -> ClientWithSecret:
    """Register a machine client; its secret is in this response and nowhere else, ever."""
    passwords = _passwords(request)
    _check_grant(caller, agency=body.agency)
    secret = secrets.token_urlsafe(32)
    secret_hash = await passwords.hash_async(secret)
    if (await session.execute(select(ServiceClient.id).where(ServiceClient.client_id == body.client_id))).first():
        raise Conflict(f"the client id {body.client_id} is taken")
    client = ServiceClient(
        client_id=body.client_id,
        description=body.description,
        secret_hash=secret_hash,
        roles=sorted(set(body.roles)),
        agency=body.agency,
        active=True,
        version=1,
        created_at=clock.now(),
    )
    session.add(client)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the client id {body.client_id} is taken") from exc
    response.headers["ETag"] = etag_for(client.version)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/api/auth/clients/{client.client_id}"
    return ClientWithSecret(**_client_out(client).model_dump(), client_secret=secret)


@router.get(
    "/clients/{client_id}", response_model=ClientOut, responses=problem_responses(401, 403, 404), **allow("admin")
)
async def get_client(
    client_id: str, request: Request, response: Response, caller: Caller = Admin, session: AsyncSession = Session
) -> ClientOut:
    _builtin(request)
    client = await _client(session, caller, client_id)
    response.headers["ETag"] = etag_for(client.version)
    return _client_out(client)


@router.patch(
    "/clients/{client_id}",
    response_model=ClientOut,
    responses=problem_responses(401, 403, 404, 412, 422, 428),
    **allow("admin"),
)
async def update_client(
    client_id: str,
    body: ClientPatch,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    caller: Caller = Admin,
    session: AsyncSession = Session,
) -> ClientOut:
    """Change a client's description or roles, or (de)activate it; needs ``If-Match``."""
    _builtin(request)
    client = await _client(session, caller, client_id)
    check_if_match(if_match, etag_for(client.version))
    if body.description is not None:
        client.description = body.description
    if body.roles is not None:
        client.roles = sorted(set(body.roles))
    if body.active is not None:
        client.active = body.active
    client.version += 1
    await session.flush()
    response.headers["ETag"] = etag_for(client.version)
    return _client_out(client)


@router.post(
    "/clients/{client_id}/secret",
    response_model=ClientWithSecret,
    responses=problem_responses(401, 403, 404),
    **allow("admin"),
)
async def new_client_secret(
    client_id: str, request: Request, response: Response, caller: Caller = Admin, session: AsyncSession = Session
) -> ClientWithSecret:
    """Replace a client's secret (the old one stops working at once); shown this once."""
    passwords = _passwords(request)
    secret = secrets.token_urlsafe(32)
    secret_hash = await passwords.hash_async(secret)
    client = await _client(session, caller, client_id)
    client.secret_hash = secret_hash
    client.version += 1
    await session.flush()
    response.headers["Cache-Control"] = "no-store"
    return ClientWithSecret(**_client_out(client).model_dump(), client_secret=secret)


# --- colleagues ---------------------------------------------------------------------------

ColleagueRole = Literal["desk_officer", "specialist", "leader", "clerk"]


class ColleagueOut(BaseModel):
    """Who a colleague is, as a picker shows them: no clearance, lock state or anything secret."""

    username: str
    full_name: str
    roles: list[str]


class ColleaguePage(BaseModel):
    items: list[ColleagueOut]
    next: str | None = Field(description="cursor of the next page; absent on the last one")


@router.get(
    "/colleagues",
    response_model=ColleaguePage,
    responses=problem_responses(400, 401, 403, 422),
    **allow("leader", "clerk"),
)
async def list_colleagues(
    request: Request,
    role: ColleagueRole | None = Query(default=None, description="only people who hold this role"),
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=20),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> ColleaguePage:
    """The active people of your own agency (not its subtree), to choose whom to assign work to:
    names and roles only. A leader or clerk needs this without being an administrator."""
    _builtin(request)
    if caller.agency is None:
        raise Forbidden("you belong to no agency")
    # one agency's people are few: its rows are read whole and the role filtered here, so a
    # page is never short of matches while more exist
    rows = (
        (
            await session.execute(
                select(User)
                .where(User.agency == caller.agency, User.active.is_(True), User.id > id_cursor(cursor))
                .order_by(User.id)
            )
        )
        .scalars()
        .all()
    )
    matching = [u for u in rows if role is None or role in u.roles]
    page = matching[:limit]
    more = len(matching) > limit
    return ColleaguePage(
        items=[ColleagueOut(username=u.username, full_name=u.full_name, roles=list(u.roles)) for u in page],
        next=str(page[-1].id) if more else None,
    )
