"""The gateway's tables: the built-in identity provider's users, clients and signing keys,
the shared rate-limit buckets, and the outbox its access records leave through."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, counter_table, new_metadata
from shared.outbox import Outbox


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


counters = counter_table(Base.metadata)
outbox = Outbox(Base.metadata, service="gateway")


class User(Base):
    """A person who logs in with a password: roles, agency (OrganId) and secrecy clearance."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[Any]] = mapped_column(JSON)
    agency: Mapped[str | None] = mapped_column(String(13), index=True)
    clearance: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime | None] = mapped_column()


class ServiceClient(Base):
    """A machine client (portal, integrator system, another part) using client credentials."""

    __tablename__ = "service_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(300), default="")
    secret_hash: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[Any]] = mapped_column(JSON)
    agency: Mapped[str | None] = mapped_column(String(13), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime | None] = mapped_column()


class SigningKey(Base):
    """A token signing key; retired keys stay in the JWKS until tokens they signed expire."""

    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()


class RateBucket(Base):
    """One token bucket shared by the gateway replicas (rate_limit_store = database), kept as
    GCRA's theoretical arrival time so one SQL statement can test and take a token."""

    __tablename__ = "rate_bucket"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    # seconds since the epoch as floats: the arithmetic happens inside the statement
    tat: Mapped[float] = mapped_column(Float, index=True)
    allowed_at: Mapped[float] = mapped_column(Float)
