"""Executors: PAPER (simulated fills) and LIVE (real transactions), one interface."""
