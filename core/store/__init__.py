"""Persistence behind narrow interfaces: trades, idempotency keys, positions."""
