"""Rate limits and de-duplication as a demanding trading client meets them: a limit is the
account's (every key of its owner, a token for the same account), whatever carries the call;
the bucket's arithmetic holds over long runs, when its clock steps back and at configured
extremes; a refusal says when to retry and claims nothing; a request id is one trade per
caller, also across a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import jwt as pyjwt
import pytest
import redis
from google.rpc import error_details_pb2

from support.auth_material import FakeClock
from support.in_process import call_with_key, core_with_key
from support.ports import wait_until
from support.trading import eventually
from tradewire.core.auth.api_keys import hash_key
from tradewire.core.context import CallContext, Protocol
from tradewire.core.errors import Code, TradewireError
from tradewire.core.ratelimit import (
    MAX_WAIT_S, RateDecision, RateLimitConfig, RateLimits, TokenBucketLimiter, raise_if_limited,
)
from tradewire.core.shared.redis_limiter import RedisTokenBucketLimiter
from tradewire.core.trades import trade_error
from tradewire.v1 import service_pb2 as spb
from tradewire.v1 import trade_pb2 as pb

KEY = "tw_qalimit1_" + "q" * 40
SECOND_KEY = "tw_qalimit2_" + "w" * 40  # the same owner's other key
OTHER_KEY = "tw_qalimit3_" + "e" * 40  # another owner's
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
HS_SECRET = "qa-limits-hmac-secret-" + "s" * 32
ISSUER, AUDIENCE = "https://idp.qa", "tradewire"
NEVER_REFILLS = 0.001  # tokens per second: no token comes back within a test


def trade(request_id: str, mode: int = pb.TRADING_MODE_PAPER, **fields) -> pb.TradeRequest:
    values = {"amount": "0.01", "slippage_bps": 100, **fields}
    return pb.TradeRequest(request_id=request_id, mode=mode, input_mint=SOL, output_mint=USDC, **values)


def key_entry(key: str, owner: str, scopes=("read", "trade:paper")) -> dict:
    return {"prefix": key[:11], "sha256": hash_key(key), "owner": owner, "scopes": list(scopes)}


def token(subject: str) -> str:
    now = int(time.time())
    return pyjwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now - 5, "nbf": now - 5,
                         "exp": now + 600, "scope": "read trade:paper"}, HS_SECRET, algorithm="HS256",
                        headers={"kid": "hs"})


def call_with(credential: str, method: str, protocol: Protocol = Protocol.GRPC) -> CallContext:
    return CallContext(protocol=protocol, method=method, headers={"authorization": f"Bearer {credential}"},
                       peer="127.0.0.1:1")


async def outcome(call) -> str:
    """"ok", or the refusal's reason."""
    try:
        await call
    except TradewireError as exc:
        return exc.reason
    return "ok"


def use_clock(core, clock: FakeClock) -> RateLimits:
    """The core's buckets, as configured, on ``clock`` (a refill without waiting for one)."""
    limits = RateLimits(core.service.pipeline.limits.config, clock=clock)
    core.service.pipeline.limits = limits
    return limits


# -- whose limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix, shared", [("", True), ("jwt:", False)], ids=["same-account", "jwt-namespace"])
async def test_every_key_of_an_owner_shares_its_bucket_and_a_token_does_when_it_is_that_account(
        tmp_path, prefix, shared):
    auth = {"api_keys": [key_entry(KEY, "rita"), key_entry(SECOND_KEY, "rita"), key_entry(OTHER_KEY, "omar")],
            "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "principal_prefix": prefix,
                    "keys": [{"kid": "hs", "algorithm": "HS256", "secret": HS_SECRET}]}}
    async with core_with_key(tmp_path, KEY, "rita", auth=auth, limits={"requests_per_s": NEVER_REFILLS,
                                                                        "burst": 4}) as core:
        history = core.service.GetTradeHistory
        # two keys of one owner, over two protocols: one bucket of 4
        answers = [await outcome(history(spb.GetTradeHistoryRequest(), call_with(k, "GetTradeHistory", p)))
                   for k, p in ((KEY, Protocol.GRPC), (SECOND_KEY, Protocol.HTTP_JSON), (KEY, Protocol.CONNECT),
                                (SECOND_KEY, Protocol.GRPC_WEB))]
        assert answers == ["ok"] * 4
        assert await outcome(history(spb.GetTradeHistoryRequest(), call_with(SECOND_KEY, "GetTradeHistory"))) \
            == "RATE_LIMITED"
        # another owner's key has its own
        assert await outcome(history(spb.GetTradeHistoryRequest(), call_with(OTHER_KEY, "GetTradeHistory"))) == "ok"
        # a token for subject "rita" is the key owner's account only without the "jwt:" namespace
        as_token = await outcome(history(spb.GetTradeHistoryRequest(), call_with(token("rita"), "GetTradeHistory")))
        assert as_token == ("RATE_LIMITED" if shared else "ok")


# -- what a call costs ----------------------------------------------------------------------


async def test_a_live_batch_takes_one_live_token_per_trade_not_one_more_for_the_call(tmp_path):
    """The batch call itself costs one token of the caller's bucket; each LIVE trade in it one
    LIVE token, as an ExecuteTrade of it would. (The call took a LIVE token too: with a LIVE
    burst of 2, a batch of 2 LIVE trades ran one and refused the other.)"""
    async with core_with_key(tmp_path, KEY, "rita", scopes=("read", "trade:paper", "trade:live"),
                             limits={"live_requests_per_s": NEVER_REFILLS, "live_burst": 2}) as core:
        batch = spb.ExecuteTradeBatchRequest(trades=[trade("live-1", pb.TRADING_MODE_LIVE),
                                                     trade("live-2", pb.TRADING_MODE_LIVE)])
        response = await core.service.ExecuteTradeBatch(batch, call_with_key(KEY, "ExecuteTradeBatch"))
        reasons = [item.result.error.reason or item.error.reason for item in response.results]
        assert reasons == ["LIVE_NOT_CONFIGURED"] * 2  # both ran (no LIVE executor here): none RATE_LIMITED
        assert not core.service.pipeline.limits.live.peek("live:rita").allowed  # and the two spent it
        # a third LIVE trade is refused, and claims nothing
        third = await outcome(core.service.ExecuteTrade(trade("live-3", pb.TRADING_MODE_LIVE),
                                                        call_with_key(KEY, "ExecuteTrade")))
        assert third == "RATE_LIMITED" and core.store.get("rita", "live-3") is None


async def test_a_refused_trade_claims_nothing_and_its_request_id_runs_once_the_bucket_refills(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita", limits={"requests_per_s": 2, "burst": 2}) as core:
        clock = FakeClock(5000.0)
        use_clock(core, clock)
        execute = core.service.ExecuteTrade
        first = await execute(trade("first"), call_with_key(KEY, "ExecuteTrade"))
        assert await outcome(execute(trade("first"), call_with_key(KEY, "ExecuteTrade"))) == "ok"  # a replay costs too
        ctx = call_with_key(KEY, "ExecuteTrade")
        with pytest.raises(TradewireError) as refused:
            await execute(trade("later"), ctx)
        assert (refused.value.code, refused.value.reason) == (Code.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert refused.value.retry_after_s == 0.5 and ctx.response_headers["retry-after"] == "1"
        assert core.store.get("rita", "later") is None and core.runner.in_flight("rita") == 0
        clock.advance(refused.value.retry_after_s)  # waiting what it said is enough
        later = await execute(trade("later"), call_with_key(KEY, "ExecuteTrade"))
        assert later.status == pb.TRADE_STATUS_FILLED and later.trade_id != first.trade_id
        clock.advance(0.5)
        assert await execute(trade("later"), call_with_key(KEY, "ExecuteTrade")) == later  # the same trade


async def test_a_batch_item_the_bucket_cannot_pay_for_says_when_to_retry(tmp_path):
    """A batch item (as a session's trade) carries its error's metadata, not RetryInfo: the retry
    delay must be there, not only in the message's words."""
    async with core_with_key(tmp_path, KEY, "rita", limits={"requests_per_s": 4, "burst": 3}) as core:
        use_clock(core, FakeClock(100.0))
        batch = spb.ExecuteTradeBatchRequest(trades=[trade(f"item-{i}") for i in range(3)])
        response = await core.service.ExecuteTradeBatch(batch, call_with_key(KEY, "ExecuteTradeBatch"))
        refused = response.results[2].error
        assert refused.reason == "RATE_LIMITED" and refused.code == Code.RESOURCE_EXHAUSTED
        assert float(refused.metadata["retry_after_s"]) == 0.25  # one token at 4 a second
        assert core.store.get("rita", "item-2") is None


async def test_a_session_trade_refused_by_the_limit_claims_nothing_and_runs_when_sent_again(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita", limits={"requests_per_s": 1, "burst": 1}) as core:
        clock = FakeClock(100.0)
        use_clock(core, clock)
        sent = asyncio.Queue()

        async def requests():
            while (message := await sent.get()) is not None:
                yield message

        answers = []

        async def session():
            async for response in core.service.TradeSession(requests(), call_with_key(KEY, "TradeSession")):
                answers.append(response)

        running = asyncio.create_task(session())
        history = core.service.GetTradeHistory(spb.GetTradeHistoryRequest(), call_with_key(KEY, "GetTradeHistory"))
        assert await outcome(history) == "ok"  # the caller's one token (the session's open took a stream's)
        await sent.put(spb.TradeSessionRequest(trade=trade("sess-1")))
        await eventually(lambda: any(a.HasField("error") for a in answers), timeout=10.0, interval=0.01)
        error = next(a.error for a in answers if a.HasField("error"))
        assert (error.request_id, error.error.reason) == ("sess-1", "RATE_LIMITED")
        assert error.error.metadata["retry_after_s"] == "1.0"
        assert core.store.get("rita", "sess-1") is None
        clock.advance(1.0)
        await sent.put(spb.TradeSessionRequest(trade=trade("sess-1")))
        await sent.put(None)
        await asyncio.wait_for(running, 30)
        final = [a.status for a in answers if a.HasField("status") and a.status.terminal]
        assert [s.result.status for s in final] == [pb.TRADE_STATUS_FILLED]
        assert core.store.get("rita", "sess-1").result == final[0].result


# -- bucket arithmetic ------------------------------------------------------------------------


def test_a_caller_at_exactly_the_sustained_rate_is_never_refused_over_a_long_run():
    """Rate 3/s (a third of a second is no binary fraction), a clock far from zero, 100,000
    calls paced at exactly the rate: every one passes, and one more at any moment is refused."""
    clock = FakeClock(10_000_000.0)
    limiter = TokenBucketLimiter(rate_per_s=3, burst=1, clock=clock)
    start = clock.now
    for i in range(100_000):
        clock.now = start + i / 3
        assert limiter.acquire("pacer").allowed, i
        if i % 9973 == 0:
            assert not limiter.acquire("pacer").allowed, i


def test_a_clock_that_steps_back_does_not_lock_a_caller_out():
    """(Redis's clock is a wall clock, and the in-process bucket takes any clock.) A caller
    refused after the clock stepped back an hour is let in once the wait it was told has passed,
    not an hour later."""
    clock = FakeClock(10_000.0)
    limiter = TokenBucketLimiter(rate_per_s=10, burst=1, clock=clock)
    assert limiter.acquire("k").allowed
    clock.advance(-3600)
    refused = limiter.acquire("k")
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.1)
    clock.advance(refused.retry_after_s)
    assert limiter.acquire("k").allowed


class _OtherReplicaTakesTheLast(TokenBucketLimiter):
    """The caller's bucket, shared: another replica takes its last token right after this one
    peeked (for the LIVE race the other way round see test_auth_limits_edges.py)."""

    def peek(self, key: str, cost: float = 1) -> RateDecision:
        decision = super().peek(key, cost)
        super().acquire(key, cost)
        return decision


def test_a_live_trade_refused_by_the_caller_s_bucket_gives_its_live_token_back():
    clock = FakeClock(100.0)

    def factory(name: str, rate: float, burst: int) -> TokenBucketLimiter:
        return (_OtherReplicaTakesTheLast if name == "principal" else TokenBucketLimiter)(rate, burst, clock)

    limits = RateLimits(RateLimitConfig(principal_burst=1, principal_rate_per_s=0.01, live_burst=1,
                                        live_rate_per_s=0.01), limiter_factory=factory)
    with pytest.raises(TradewireError) as refused:
        limits.check_call("alice", "ExecuteTrade", "LIVE")
    assert refused.value.metadata["subject"] == "principal:alice"
    assert limits.live.peek("live:alice").allowed  # both or neither: the LIVE token is whole


def test_a_tiny_rate_is_a_refusal_with_a_bounded_delay_not_an_internal_error():
    """(The configuration refuses rates under 0.001/s; the limiter bounds the delay it names
    anyway: at 1e-300/s RetryInfo failed to build, a bare INTERNAL.)"""
    limiter = TokenBucketLimiter(rate_per_s=1e-300, burst=1)
    assert limiter.acquire("principal:rita").allowed
    decision = limiter.acquire("principal:rita")
    with pytest.raises(TradewireError) as refused:
        raise_if_limited(decision, "principal:rita")
    error = refused.value
    assert error.reason == "RATE_LIMITED" and error.retry_after_s == MAX_WAIT_S
    retry = error_details_pb2.RetryInfo()
    next(d for d in error.details() if d.Is(retry.DESCRIPTOR)).Unpack(retry)
    assert retry.retry_delay.seconds == int(MAX_WAIT_S)
    assert decision.headers()["retry-after"] == decision.headers()["ratelimit-reset"] == "315576000000"


# -- the Redis bucket ---------------------------------------------------------------------------


@pytest.fixture
def redis_db(redis_server) -> Iterator[redis.Redis]:
    """Database 14 of the session's Redis (the others are other tests')."""
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/14")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_redis_bucket_refills_after_redis_s_clock_stepped_back(redis_db):
    limiter = RedisTokenBucketLimiter(redis_db, "qa", rate_per_s=50, burst=1)
    key = uuid.uuid4().hex
    seconds, micros = redis_db.time()
    # the bucket as a take an hour ahead of Redis's clock left it (NTP stepped it back since,
    # or a failover moved it to a host whose clock is behind)
    redis_db.hset(f"tw:rl:qa:{key}", mapping={"tokens": "0", "at": f"{seconds + 3600}.{micros:06d}"})
    refused = limiter.acquire(key)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(1 / 50)
    wait_until(lambda: limiter.acquire(key).allowed, timeout_s=2.0, interval_s=0.005)  # not in an hour


def test_redis_bucket_is_stamped_to_the_microsecond(redis_db):
    """tostring() kept 14 digits of the Unix time, 100 µs: a refill of up to 0.01 token per call
    at 200/s went missing or was given, so a caller pacing at its rate was refused by turns."""
    limiter = RedisTokenBucketLimiter(redis_db, "qa", rate_per_s=200, burst=5)
    for _ in range(20):
        key = uuid.uuid4().hex
        before = redis_db.time()
        limiter.acquire(key)
        after = redis_db.time()
        stamp = redis_db.hget(f"tw:rl:qa:{key}", "at").decode()
        seconds, _, micros = stamp.partition(".")
        assert len(micros) == 6, stamp
        assert before <= (int(seconds), int(micros)) <= after, (before, stamp, after)


def test_redis_bucket_with_a_tiny_rate_refuses_instead_of_failing(redis_db):
    limiter = RedisTokenBucketLimiter(redis_db, "qa", rate_per_s=1e-300, burst=1)
    key = uuid.uuid4().hex
    assert limiter.acquire(key).allowed  # (its expiry was inf: PEXPIRE refused it, an error per call)
    refused = limiter.acquire(key)
    assert not refused.allowed
    assert refused.headers()["retry-after"] == "315576000000"
    assert 0 < redis_db.pttl(f"tw:rl:qa:{key}") <= MAX_WAIT_S * 1000


def test_redis_live_trade_refused_by_the_caller_s_bucket_gives_its_live_token_back(redis_db):
    """Two replicas: between this one's peek and its take, the other takes the caller's last
    token; the LIVE token this one took already goes back."""
    class Raced(RedisTokenBucketLimiter):
        def peek(self, key: str, cost: float = 1) -> RateDecision:
            decision = super().peek(key, cost)
            other_replica.acquire(key, cost)
            return decision

    other_replica = RedisTokenBucketLimiter(redis_db, "principal", 0.01, 1)

    def factory(name: str, rate: float, burst: int) -> RedisTokenBucketLimiter:
        return (Raced if name == "principal" else RedisTokenBucketLimiter)(redis_db, name, rate, burst)

    limits = RateLimits(RateLimitConfig(principal_burst=1, principal_rate_per_s=0.01, live_burst=1,
                                        live_rate_per_s=0.01), limiter_factory=factory)
    with pytest.raises(TradewireError) as refused:
        limits.check_call("alice", "ExecuteTrade", "LIVE")
    assert refused.value.metadata["subject"] == "principal:alice"
    assert limits.live.peek("live:alice").allowed


async def test_two_replicas_on_redis_share_a_caller_s_bucket_whatever_the_protocol(tmp_path, redis_db, redis_server):
    url = redis_server.url.rsplit("/", 1)[0] + "/14"
    limits = {"requests_per_s": NEVER_REFILLS, "burst": 3}
    async with core_with_key(tmp_path / "a", KEY, "rita", limits=limits, shared={"redis_url": url,
                                                                               "replica_id": "qa-a"}) as a, \
            core_with_key(tmp_path / "b", KEY, "rita", limits=limits, shared={"redis_url": url,
                                                                             "replica_id": "qa-b"}) as b:
        calls = [(a, Protocol.GRPC), (b, Protocol.HTTP_JSON), (a, Protocol.CONNECT), (b, Protocol.GRPC_WEB)]
        answers = [await outcome(core.service.GetTradeHistory(spb.GetTradeHistoryRequest(),
                                                              call_with(KEY, "GetTradeHistory", protocol)))
                   for core, protocol in calls]
        assert answers == ["ok", "ok", "ok", "RATE_LIMITED"]


# -- de-duplication ------------------------------------------------------------------------------


async def test_a_request_id_is_one_trade_across_a_restart_and_another_body_is_refused_naming_the_field(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita") as core:
        first = await core.service.ExecuteTrade(trade("kept"), call_with_key(KEY, "ExecuteTrade"))
    async with core_with_key(tmp_path, KEY, "rita") as core:  # the same SQLite file
        again = await core.service.ExecuteTrade(trade("kept", amount="0.0100"), call_with_key(KEY, "ExecuteTrade"))
        assert again.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)
        with pytest.raises(TradewireError) as refused:
            await core.service.ExecuteTrade(trade("kept", slippage_bps=99), call_with_key(KEY, "ExecuteTrade"))
        assert (refused.value.code, refused.value.reason) == (Code.ALREADY_EXISTS, "DUPLICATE_REQUEST_MISMATCH")
        assert "(slippage_bps differs)" in refused.value.message
        assert [v.field for v in refused.value.field_violations] == ["request_id"]


async def test_a_trade_cut_by_a_restart_resumes_and_a_retry_of_its_id_gets_that_trade(tmp_path):
    async with core_with_key(tmp_path, KEY, "rita", paper={"realtime": True, "latency_ms": 2000}) as core:
        call = asyncio.create_task(core.service.ExecuteTrade(trade("cut"), call_with_key(KEY, "ExecuteTrade")))
        await eventually(lambda: core.runner.inflight.get(("rita", "cut")) is not None, timeout=10.0, interval=0.01)
        trade_id = core.runner.inflight.get(("rita", "cut")).result.trade_id
        core.service.begin_drain()
        assert await core.runner.interrupt_all() == 1
        assert await outcome(call) == "SHUTTING_DOWN"
    async with core_with_key(tmp_path, KEY, "rita", paper={"realtime": True, "latency_ms": 200}) as core:
        retried = await core.service.ExecuteTrade(trade("cut"), call_with_key(KEY, "ExecuteTrade"))
        assert retried.status == pb.TRADE_STATUS_FILLED and retried.trade_id == trade_id
        history = await core.service.GetTradeHistory(spb.GetTradeHistoryRequest(),
                                                     call_with_key(KEY, "GetTradeHistory"))
        assert [t.request_id for t in history.trades] == ["cut"]  # one trade, not two


async def test_a_request_id_is_each_caller_s_own_and_case_sensitive(tmp_path):
    auth = {"api_keys": [key_entry(KEY, "rita"), key_entry(OTHER_KEY, "omar")]}
    async with core_with_key(tmp_path, KEY, "rita", auth=auth) as core:
        mine = await core.service.ExecuteTrade(trade("Order:1", amount="0.01"), call_with_key(KEY, "ExecuteTrade"))
        theirs = await core.service.ExecuteTrade(trade("Order:1", amount="0.02"),
                                                 call_with_key(OTHER_KEY, "ExecuteTrade"))
        lower = await core.service.ExecuteTrade(trade("order:1", amount="0.03"), call_with_key(KEY, "ExecuteTrade"))
        assert len({mine.trade_id, theirs.trade_id, lower.trade_id}) == 3
        assert (mine.requested_amount, theirs.requested_amount) == ("0.01", "0.02")


@pytest.mark.parametrize("request_id", ["order-1 ", " order-1", "order-1\n", "ordér-1", "ｏrder-1", "order\u200b-1"],
                         ids=["trailing-space", "leading-space", "newline", "accent", "fullwidth", "zero-width"])
async def test_a_request_id_that_only_looks_like_another_is_refused_naming_it(tmp_path, request_id):
    async with core_with_key(tmp_path, KEY, "rita") as core:
        await core.service.ExecuteTrade(trade("order-1"), call_with_key(KEY, "ExecuteTrade"))
        with pytest.raises(TradewireError) as refused:
            await core.service.ExecuteTrade(trade(request_id), call_with_key(KEY, "ExecuteTrade"))
        assert refused.value.code is Code.INVALID_ARGUMENT
        assert {v.field for v in refused.value.field_violations} == {"request_id"}
        assert core.store.get("rita", request_id) is None


@pytest.mark.parametrize("error", [
    TradewireError("STORE_UNAVAILABLE", "the gateway's shared store is unreachable"),  # (UNAVAILABLE: a default delay)
    TradewireError("TOO_MANY_IN_FLIGHT", "3 trades of this caller are running", retry_after_s=0.5),
])
def test_every_retryable_error_of_a_batch_item_or_session_trade_says_when_to_retry(error):
    """A TradeError has no RetryInfo: the delay a unary call's refusal gives goes in its metadata."""
    assert float(trade_error(error).metadata["retry_after_s"]) == error.retry_after_s > 0
