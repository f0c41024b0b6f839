"""End-to-end fixtures: the built dashboard served by a real gateway, driven by Debian's Chromium.

- ``dashboard_dist`` builds web/ once (``npm run build``), skipped when web/dist is newer
  than every source it is built from.
- ``gateway`` is one real ``tradewire serve`` process serving that build at ``/``.
- ``browser`` is /usr/bin/chromium launched by Playwright (never ``playwright install``).
- ``ui`` opens a fresh browser context per test and fails the test on any console error or
  uncaught page error; ``ui.shot(name)`` saves a screenshot under test-artifacts/e2e/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from e2e.dashboard_ui import CHROMIUM, CHROMIUM_ARGS, DESKTOP, Dashboard, open_dashboard
from support.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DIST = WEB / "dist"

# Every input the build reads; dist is rebuilt when any of them is newer than dist/index.html.
_BUILD_INPUTS = ["src", "index.html", "vite.config.ts", "tsconfig.json", "package.json", "package-lock.json"]

expect.set_options(timeout=15_000)


def _newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_dir():
            for child in path.rglob("*"):
                if child.is_file():
                    newest = max(newest, child.stat().st_mtime)
        elif path.exists():
            newest = max(newest, path.stat().st_mtime)
    return newest


@pytest.fixture(scope="session")
def dashboard_dist() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to build the dashboard (web/)")
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    sources = [WEB / name for name in _BUILD_INPUTS] + [ROOT / "gen" / "ts"]
    index = DIST / "index.html"
    if not index.exists() or index.stat().st_mtime < _newest_mtime(sources):
        result = subprocess.run([npm, "run", "build"], cwd=WEB, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"npm run build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return DIST


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, dashboard_dist: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("e2e-gateway"),
        env={"TRADEWIRE_SERVER__WEB_ROOT": str(dashboard_dist)},
    ).start()
    yield process
    code = process.stop()
    assert code == 0, f"gateway exited with {code}:\n{process.log_text()[-3000:]}"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
def viewport() -> dict[str, int]:
    return DESKTOP


@pytest.fixture
async def ui(browser: Browser, gateway: GatewayProcess, viewport: dict[str, int]) -> AsyncIterator[Dashboard]:
    async with open_dashboard(browser, gateway, viewport) as dashboard:
        yield dashboard
