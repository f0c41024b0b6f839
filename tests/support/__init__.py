"""Test helpers shared by the suites: real gateway processes and per-protocol clients."""
