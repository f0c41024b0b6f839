"""External tools the suites drive (grpcurl, buf, ...): found on PATH or skipped — except
under CI or scripts/test.sh, where a missing tool is a failure, never a skip."""

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (scripts/provision.sh --test installs it)"
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_TEST_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
