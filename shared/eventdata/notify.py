"""What notify sends of its own: only webhooks carry it, never the bus."""

from __future__ import annotations

from pydantic import Field

from shared.events import EventData, register


@register("webhook.test", service="notify", bus=False)
class WebhookTest(EventData):
    """Sent once to every new subscription, whatever its event types: the callback is reachable
    and checks the signature. Acknowledge it like any other delivery; it changes nothing."""

    subscription_id: int = Field(description="the subscription it was sent to")
    message: str
