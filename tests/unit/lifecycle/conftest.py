"""The trade-lifecycle unit tests: runner, hub, retry policy, webhooks, outbox (no sockets)."""
