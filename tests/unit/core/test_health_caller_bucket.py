"""HealthCheck's caller status says what the caller's rate-limit bucket holds, as the call's own
``ratelimit-remaining`` header does (the body said one fewer: what one more call would leave)."""

from __future__ import annotations

import pytest

from support.in_process import call_with_key, core_with_key
from tradewire.v1 import service_pb2 as spb

KEY = "tw_healthck_" + "h" * 40


@pytest.mark.asyncio
async def test_the_caller_s_remaining_requests_match_the_header_of_the_same_call(tmp_path):
    async with core_with_key(tmp_path, KEY, "hana", limits={"burst": 5, "requests_per_s": 0.001}) as core:
        for expected in (4, 3, 2, 1, 0):
            ctx = call_with_key(KEY, "HealthCheck")
            answer = await core.service.HealthCheck(spb.HealthCheckRequest(), ctx)
            assert ctx.response_headers["ratelimit-remaining"] == str(expected)
            assert answer.caller.rate_limit_remaining == expected
            assert answer.caller.rate_limit_limit == 5
