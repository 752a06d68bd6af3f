"""Request and response bodies of notify's API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared import organ_id

EVENT_PATTERN = r"^(#|\*|[a-z][a-z0-9_]*)(\.(#|\*|[a-z][a-z0-9_]*))*$"


def _organ_id(value: str) -> str:
    if not organ_id.is_valid(value):
        raise ValueError("not an agency identifier (mã định danh), e.g. 000.00.00.H56")
    return value


OrganId = Annotated[str, Field(min_length=13, max_length=13), AfterValidator(_organ_id)]
EventPattern = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=EVENT_PATTERN,
        description="a routing key or an AMQP topic pattern: `document.issued`, `document.*`, `dossier.#`, `#`",
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionIn(Strict):
    callback_url: str = Field(min_length=8, max_length=2000, description="where events are POSTed (https)")
    event_types: list[EventPattern] = Field(min_length=1, max_length=20)
    agency: OrganId | None = Field(
        default=None, description="deliver events of this agency's subtree; default: your own agency"
    )
    description: str = Field(default="", max_length=300)


class SubscriptionPatch(Strict):
    callback_url: str | None = Field(default=None, min_length=8, max_length=2000)
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=20)
    agency: OrganId | None = None
    description: str | None = Field(default=None, max_length=300)
    active: bool | None = Field(default=None, description="true re-enables a subscription a 410 disabled")


class SubscriptionOut(BaseModel):
    id: int
    callback_url: str
    event_types: list[str]
    agency: str
    description: str
    active: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="signs every delivery (Standard Webhooks); shown this once")
    test_delivery_id: int = Field(description="the test event sent to the callback now")


class SubscriptionSecret(BaseModel):
    secret: str = Field(description="shown this once; the previous secret also signs for a while")
    previous_secret_valid_until: datetime


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    next: str | None


DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]


class DeliveryOut(BaseModel):
    id: int
    subscription_id: int
    event_id: str = Field(description="also the webhook-id header of every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int = Field(description="attempts started, one in flight included (the log lists those that are over)")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptOut(BaseModel):
    id: int
    delivery_id: int
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class DeliveryDetail(DeliveryOut):
    attempts_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next: str | None


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next: str | None


class ReplayRange(Strict):
    since: datetime = Field(description="deliveries owed from this time (inclusive)")
    until: datetime = Field(description="… to this time (exclusive)")
    status: Literal["failed", "all"] = Field(default="failed", description="replay only failures, or everything")

    @model_validator(mode="after")
    def _ordered(self) -> ReplayRange:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("give times with a timezone")
        if self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class Replayed(BaseModel):
    replayed: int
