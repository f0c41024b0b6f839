"""Signed webhooks on terminal trade status, delivered from a durable outbox."""

from tradewire.core.webhooks.dispatcher import WebhookDispatcher, load_or_create_secret, webhook_body
from tradewire.core.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign, verify

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "WebhookDispatcher",
    "load_or_create_secret",
    "sign",
    "verify",
    "webhook_body",
]
