"""README.md's metrics table is the reference of /metrics: every tradewire_* family the gateway
exposes is in it with its type, and every metric README.md names is exposed."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from solders.keypair import Keypair

from tradewire.core.config import Settings
from tradewire.gateway.assembly import build_core
from tradewire.gateway.worker_metrics import WorkerMetrics

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Metrics"


@pytest.fixture(scope="module")
async def families(tmp_path_factory) -> dict[str, str]:
    """Every family /metrics exposes (name → type), from the registry build_core() makes."""
    workdir = tmp_path_factory.mktemp("metrics-reference")
    core = build_core(settings_with_every_collector(workdir))
    try:
        alone = generate_latest(core.metrics.registry)
        # a scrape with several workers: the same families, and tradewire_worker_scraped
        merged = await WorkerMetrics(core.metrics.registry, 0, 1, "127.0.0.1", 0).exposition()
    finally:
        await core.close()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", (alone + merged).decode(), re.MULTILINE))


def settings_with_every_collector(workdir: Path) -> Settings:
    """LIVE enabled (its circuit breakers are a collector of their own); nothing is contacted."""
    wallet = workdir / "wallet.json"
    wallet.write_text(json.dumps(list(bytes(Keypair()))))
    wallet.chmod(0o600)
    return Settings.model_validate({"storage": {"data_dir": str(workdir / "data")},
                                    "live": {"enabled": True, "wallet_path": str(wallet)}})


def created_series(families: dict[str, str]) -> set[str]:
    """The ``_created`` series prometheus_client adds to each counter and histogram (the text
    format types them gauges of their own): documented with their metric, not as rows."""
    return {name.removesuffix("_total") + "_created" for name, kind in families.items()
            if kind in ("counter", "histogram")}


def section() -> str:
    text = README.read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def table() -> dict[str, str]:
    """The section's rows: metric name → type."""
    rows = {}
    for line in section().splitlines():
        if line.startswith("| `tradewire_"):
            name, kind = (cell.strip() for cell in line.strip("|").split("|")[:2])
            rows[name.strip("`")] = kind
    return rows


def test_every_tradewire_family_exposed_is_in_the_table(families):
    exposed = {name for name in families if name.startswith("tradewire_")} - created_series(families)
    missing = sorted(exposed - table().keys())
    assert not missing, f"exposed at /metrics but not in README.md's {SECTION} table: {missing}"


def test_every_metric_in_the_table_is_exposed_with_its_type(families):
    wrong = {name: (kind, families.get(name, "not exposed")) for name, kind in table().items()
             if families.get(name) != kind}
    assert not wrong, f"README.md says (type, /metrics says): {wrong}"


def test_every_metric_named_anywhere_in_the_readme_is_exposed(families):
    known = families.keys() | created_series(families)
    named = set(re.findall(r"\btradewire_[a-z0-9_]+\*?", README.read_text()))
    unknown = sorted(name for name in named
                     if not (fnmatch.filter(known, name) if name.endswith("*") else name in known))
    assert not unknown, f"README.md names metrics /metrics does not expose: {unknown}"


def test_the_process_collectors_are_named_in_the_section(families):
    patterns = re.findall(r"`((?:process|python)_[a-z_]*\*?)`", section())
    others = [name for name in families if not name.startswith("tradewire_")]
    unnamed = sorted(name for name in others if not any(fnmatch.fnmatch(name, p) for p in patterns))
    assert others and not unnamed, f"exposed at /metrics but not named in README.md's {SECTION}: {unnamed}"
