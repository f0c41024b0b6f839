"""tradewire's configuration: one pydantic model, from a TOML file and TRADEWIRE_* variables.

Precedence: environment > TOML file > embedded defaults. Nested keys use ``__`` in variable
names (``TRADEWIRE_SERVER__GRPC_PORT=50052``). Every bad value is reported at once, each
with its dotted path, by :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

ENV_PREFIX = "TRADEWIRE_"


class ConfigError(Exception):
    """The configuration cannot be used; the message lists every problem."""


class _Model(BaseModel):
    # inf and nan are not settings: `requests_per_s = inf` would turn a limit off unnoticed.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # TOML's true/false is not a number; pydantic's lax mode (kept for the environment's text)
    # would read `grpc_port = true` as 1.
    @field_validator("*", mode="before")
    @classmethod
    def _no_true_or_false_for_a_number(cls, value: Any, info) -> Any:
        if value.__class__ is bool and _is_numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not true or false")
        return value


def _is_numeric(annotation: Any) -> bool:
    kinds = get_args(annotation) or (annotation,)
    return bool not in kinds and any(kind in (int, float, Decimal) for kind in kinds)


class ServerConfig(_Model):
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(50051, ge=0, le=65535)
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    # grpcio takes its limits as 32-bit ints (gateway/grpc_server.py: twice this, and the header
    # budget below): past them it cannot start, saying only "int too large to convert".
    max_body_bytes: int = Field(1 << 20, ge=1024, le=(2**31 - 1) // 2,
                                description="largest request body / message accepted")
    cors_origins: tuple[str, ...] = ("*",)
    # Only what calls still open at the listeners get once trades and streams are done (at most a
    # quarter of what is left of [shutdown] deadline_s, which bounds the whole stop).
    shutdown_grace_s: float = Field(15.0, ge=0)
    web_root: Path | None = Field(None, description="built dashboard folder served at /")
    # Serving processes on the same two ports (SO_REUSEPORT; gateway/workers.py). Each is a
    # replica, so more than one needs [shared] redis_url for the state they must share.
    workers: int = Field(1, ge=1, le=64)
    # The HTTP/1.1 listener's own limits (gateway/http_limits.py: uvicorn+httptools has none).
    # The header budget is the gRPC listener's too (gateway/grpc_server.py), so that a request
    # with the same headers is read, or refused, alike on both.
    max_header_bytes: int = Field(64 * 1024, ge=1024, le=1 << 24, description="largest request URL + header names and "
                                  "values accepted on the HTTP listener; more is answered 431 and the connection "
                                  "closed (native gRPC takes as much metadata; more is a bare RESOURCE_EXHAUSTED)")
    max_headers: int = Field(100, ge=1, le=10_000, description="most request headers accepted on the HTTP listener; "
                             "more is answered 431 and the connection closed")
    header_timeout_s: float = Field(10.0, gt=0, description="time a request's headers have to arrive, from the "
                                    "connection's opening or the previous response (408 and close; idle keep-alive "
                                    "connections are closed after at most this)")
    body_timeout_s: float = Field(30.0, gt=0, description="time a request body has to arrive after its headers "
                                  "(408 and close); responses (streams) are not limited")
    max_pipelined_requests: int = Field(16, ge=1, description="most parsed-but-unanswered requests per HTTP "
                                        "connection; beyond, the connection is not read until answers drain")
    # Whoever connects may write X-Forwarded-For: believed, it would let a caller pick the address
    # its failed authentications are counted against and the peer its audit rows name.
    trusted_proxies: tuple[str, ...] = Field((), description="IP addresses or CIDR networks of the reverse proxies "
                                             "in front of the HTTP listener, whose X-Forwarded-For (and "
                                             "X-Forwarded-Proto) is believed; empty: a caller is the connection's "
                                             "peer, whatever its headers say (the gRPC listener always uses the peer)")

    @field_validator("trusted_proxies")
    @classmethod
    def _ip_or_network(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry) if "/" in entry else ipaddress.ip_address(entry)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR network: {entry!r}{_network_hint(entry)}") from None
        return value

    @model_validator(mode="after")
    def _a_port_each(self) -> ServerConfig:
        # Else the second listener fails with "Address already in use" (its own first one), or,
        # both with SO_REUSEPORT (workers > 1), binds and takes a share of the other's connections.
        wildcards = {"", "0.0.0.0", "::"}
        same_host = self.grpc_host == self.http_host or {self.grpc_host, self.http_host} & wildcards
        if self.grpc_port and self.grpc_port == self.http_port and same_host:
            raise ValueError(f"grpc_port and http_port are both {self.grpc_port}: the gRPC and HTTP listeners "
                             "need a port each")
        return self


def _network_hint(entry: str) -> str:
    """For a network written with host bits (10.1.2.3/8): the network it would be."""
    try:
        return f" (host bits set: did you mean {ipaddress.ip_network(entry, strict=False)}?)"
    except ValueError:
        return ""


class ApiKeyEntry(_Model):
    """An API key given in configuration: only its prefix and SHA-256 are stored."""

    prefix: str = Field(min_length=4, max_length=32)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    owner: str = Field(min_length=1, max_length=128)
    scopes: tuple[str, ...] = ("read", "trade:paper")

    # Checked here, as `tradewire keys create` checks them, not at start-up by the key store
    # (which named no setting, and took a key with no scope that could call nothing).
    @field_validator("prefix")
    @classmethod
    def _a_key_prefix(cls, value: str) -> str:
        from tradewire.core.auth.api_keys import normalize_prefix

        normalize_prefix(value)  # (its refusal does not echo the value)
        return value

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from tradewire.core.context import ALL_SCOPES

        unknown = sorted(set(value) - ALL_SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_SCOPES))}")
        if not value:
            raise ValueError("a key needs at least one scope")
        return value


class AuthConfig(_Model):
    api_keys: tuple[ApiKeyEntry, ...] = ()
    api_key_db: Path | None = Field(None, description="SQLite file of keys made with `tradewire keys` "
                                                       "(default: <data_dir>/auth.db, where `tradewire keys` writes)")
    # JWT verification (core.auth.jwt_verifier.JwtConfig's shape: issuer, audience, keys or
    # jwks_path, leeway_s, scope_claims, ...); None: JWTs are not accepted.
    jwt: dict[str, Any] | None = None

    @field_validator("jwt")
    @classmethod
    def _jwt(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from tradewire.core.auth.jwt_verifier import JwtConfig

            from tradewire.core.auth.verification_keys import load_config_key

            value = _typed_jwt_scalars(value)
            try:  # the one definition of what a JWT config may hold
                config = JwtConfig.from_mapping(value)
            except TypeError as exc:  # a missing field
                raise ValueError(str(exc).replace("JwtConfig.__init__() ", "")) from None
            # Each key too (an unknown algorithm, a short HS256 secret): at start-up it named no
            # setting, and `tradewire keys` took the configuration. (Messages name the kid only.)
            kids = [load_config_key(key).kid for key in config.keys]
            twice = sorted({kid for kid in kids if kids.count(kid) > 1})
            if twice:
                raise ValueError(f"keys: kid {', '.join(map(repr, twice))} given to more than one key")
        return value

    @model_validator(mode="after")
    def _owners_outside_the_token_namespace(self) -> AuthConfig:
        from tradewire.core.auth.jwt_verifier import token_namespace

        for entry in self.api_keys:  # (as `tradewire keys create` refuses them)
            prefix = token_namespace(entry.owner, self.jwt)
            if prefix:
                raise ValueError(f"api_keys: owner {entry.owner!r} is a JWT caller's name (principal_prefix "
                                 f"{prefix!r}): the key would act for that token's subject")
        seen: set[str] = set()
        for entry in self.api_keys:
            prefix = entry.prefix.removeprefix("tw_")
            if prefix in seen:
                raise ValueError(f"api_keys: tw_{prefix} is configured twice")
            seen.add(prefix)
        return self


class _JwtScalars(BaseModel):
    """The types of [auth.jwt]'s scalar settings. JwtConfig (a dataclass) takes what it is given,
    and a TRADEWIRE_AUTH__JWT__* variable is text: "false" left require_kid on, "30" made
    leeway_s a string no comparison takes (refused, or a start-up that failed unexplained)."""

    model_config = ConfigDict(extra="ignore")
    jwks_path: str | None = None
    jwks_check_interval_s: float = 5.0
    leeway_s: float = 30.0
    require_kid: bool = True
    principal_prefix: str = "jwt:"
    max_token_bytes: int = 8192


def _typed_jwt_scalars(value: dict[str, Any]) -> dict[str, Any]:
    try:
        typed = _JwtScalars.model_validate(value)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    return {**value, **{name: getattr(typed, name) for name in value if name in _JwtScalars.model_fields}}


class MintConfig(_Model):
    symbol: str = Field(min_length=1, max_length=16)
    address: str
    decimals: int = Field(ge=0, le=12)
    # Accepted trade size in token units (decimal strings keep them exact).
    min_amount: Decimal = Decimal("0")
    max_amount: Decimal = Decimal("1000000000")

    @field_validator("address")
    @classmethod
    def _pubkey(cls, v: str) -> str:
        from solders.pubkey import Pubkey

        try:
            Pubkey.from_string(v)
        except ValueError as exc:
            raise ValueError(f"not a base58 32-byte public key: {v!r}") from exc
        return v


# Real mainnet addresses and decimals.
DEFAULT_MINTS = (
    MintConfig(symbol="SOL", address="So11111111111111111111111111111111111111112", decimals=9, max_amount=Decimal("100000")),
    MintConfig(symbol="USDC", address="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", decimals=6, max_amount=Decimal("10000000")),
    MintConfig(symbol="USDT", address="Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", decimals=6, max_amount=Decimal("10000000")),
    MintConfig(symbol="JUP", address="JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", decimals=6, max_amount=Decimal("10000000")),
    MintConfig(symbol="BONK", address="DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", decimals=5, max_amount=Decimal("100000000000")),
)


class PoolConfig(_Model):
    """A tradable pair and the depth the price-table quote model assumes for it."""

    base: str  # symbol
    quote: str  # symbol
    # Reserves in token units of a constant-product pool at the reference price.
    base_reserve: Decimal = Field(gt=0)
    fee_bps: int = Field(25, ge=0, le=1000)


DEFAULT_POOLS = (
    PoolConfig(base="SOL", quote="USDC", base_reserve=Decimal("200000")),
    PoolConfig(base="SOL", quote="USDT", base_reserve=Decimal("100000")),
    PoolConfig(base="USDT", quote="USDC", base_reserve=Decimal("50000000"), fee_bps=1),
    PoolConfig(base="JUP", quote="USDC", base_reserve=Decimal("20000000")),
    PoolConfig(base="BONK", quote="USDC", base_reserve=Decimal("500000000000")),
    PoolConfig(base="SOL", quote="JUP", base_reserve=Decimal("50000")),
)

# Reference prices in USD per token unit (the price-table quote model's market).
DEFAULT_PRICES: dict[str, Decimal] = {
    "SOL": Decimal("150"),
    "USDC": Decimal("1"),
    "USDT": Decimal("1"),
    "JUP": Decimal("0.8"),
    "BONK": Decimal("0.00002"),
}


class MarketConfig(_Model):
    mints: tuple[MintConfig, ...] = DEFAULT_MINTS
    pools: tuple[PoolConfig, ...] = DEFAULT_POOLS
    prices_usd: dict[str, Annotated[Decimal, Field(gt=0)]] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    valuation_symbol: str = "USDC"

    @model_validator(mode="after")
    def _consistent(self) -> MarketConfig:
        symbols = {m.symbol for m in self.mints}
        problems = [f"pool {p.base}/{p.quote} names an unknown mint" for p in self.pools if {p.base, p.quote} - symbols]
        problems += [f"no price for mint {s}" for s in symbols if s not in self.prices_usd]
        # (a price for no mint is a misspelt one: the mint it meant kept its old price)
        problems += [f"prices_usd: {_not_a_mint(s, symbols)}" for s in self.prices_usd if s not in symbols]
        if self.valuation_symbol not in symbols:
            problems.append(f"valuation_symbol {self.valuation_symbol!r} is not a configured mint")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PaperConfig(_Model):
    # Simulated time from quote to landing; the price drifts over it.
    latency_ms: int = Field(400, ge=0, le=60000)
    # Standard deviation of the drift per second of latency, in basis points.
    drift_bps_per_s: Decimal = Field(Decimal("5"), ge=0)
    # Deterministic drift for reproducible runs (None: a fresh random drift per trade).
    seed: int | None = None
    # Starting paper wallet of every principal, token units per symbol.
    starting_balances: dict[str, Annotated[Decimal, Field(ge=0)]] = Field(
        default_factory=lambda: {"SOL": Decimal("100"), "USDC": Decimal("100000")})
    # Whether the trader's output token account already exists (else ATA rent is charged).
    assume_accounts_exist: bool = False
    # The price-impact bound of a request that sets none (the contract's "configured default").
    max_price_impact_bps: int = Field(0, ge=0, le=10_000, description="when the request sets none; 0: no bound")
    # Take the modelled latency in wall-clock time too (half building, half landing), so
    # streams and dashboards show a paper trade progressing as a live one would.
    realtime: bool = False


class StorageConfig(_Model):
    data_dir: Path = Path("tradewire-data")
    # A fill's id and receipt are what settles its trade after a crash or a handover, minutes
    # later at most; after this long they are forgotten (else they are kept forever). A trade
    # still unsettled then (its replica was down longer than this) could book its fill twice.
    fill_ids_keep_s: float = Field(30 * 86400, ge=86400)


# A bucket refills at least this fast (one request per ~17 minutes) and holds at most this many:
# slower rates name retry delays of years, and HealthCheck reports a bucket in a uint32.
_MIN_RATE_PER_S = 0.001
_MAX_BURST = 1_000_000_000
_MAX_HOLDING_UNITS = 2**63 - 1  # what the embedded store's INTEGER holds


class LimitsConfig(_Model):
    requests_per_s: float = Field(200.0, ge=_MIN_RATE_PER_S)
    burst: int = Field(400, ge=1, le=_MAX_BURST)
    live_requests_per_s: float = Field(5.0, ge=_MIN_RATE_PER_S)
    live_burst: int = Field(10, ge=1, le=_MAX_BURST)
    stream_opens_per_s: float = Field(5.0, ge=_MIN_RATE_PER_S)
    stream_burst: int = Field(50, ge=1, le=_MAX_BURST)
    # Failed authentications per peer address, before further attempts are refused.
    auth_failures_per_s: float = Field(0.2, ge=_MIN_RATE_PER_S)
    auth_failure_burst: int = Field(10, ge=1, le=_MAX_BURST)
    max_batch_items: int = Field(100, ge=1, le=100)


HTTP_URL = r"^https?://[^\s/?#]+(/\S*)?$"  # what an http(s) client can call: a scheme, a host, no spaces


class AuditConfig(_Model):
    """Where the audit trail goes: QuestDB when ``questdb_conf`` is set, else a local journal."""

    # Off only to measure what auditing costs (bench/); a gateway in service keeps it on.
    enabled: bool = True
    questdb_conf: str | None = Field(None, description="ILP client conf, e.g. 'http::addr=127.0.0.1:9000;'")
    questdb_http_url: str | None = Field(None, pattern=HTTP_URL, description="for table creation (/exec); "
                                                                           "default from addr")
    journal_path: Path | None = Field(None, description="default: <data_dir>/audit.jsonl")
    # Rows of `tradewire keys` / `kill-switch` that QuestDB did not take; the gateway sends them.
    admin_spool_path: Path | None = Field(None, description="default: <data_dir>/admin-audit.spool.jsonl")
    # Rows go out every flush_interval_s, one QuestDB transaction per table, or sooner once
    # batch_size rows wait. Each transaction costs the server more than its rows do: 1,000-row
    # batches at 12,000 rows/s kept QuestDB ~1 core busy, 0.25 s batches ~0.5 (bench/PROFILE.md).
    batch_size: int = Field(10_000, ge=1)
    flush_interval_s: float = Field(0.25, gt=0)
    queue_max: int = Field(100_000, ge=1)
    # The rows waiting for their batch also go to a write-ahead file (core/audit/write_ahead.py): a
    # killed process loses its last 20 ms of rows instead of flush_interval_s.
    write_ahead: bool = True

    @field_validator("questdb_conf")
    @classmethod
    def _an_ilp_http_conf(cls, value: str | None) -> str | None:
        # Checked at load: a conf the server cannot take (a password without its username) was a
        # gateway that started and spooled every row for good, saying only "unavailable". (It
        # may hold a password or a token: not echoed.)
        if value:
            from tradewire.core.audit.questdb_sink import parse_conf

            try:
                schema, params = parse_conf(value)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            if schema not in ("http", "https"):
                raise ValueError("ILP over HTTP is needed: start it with http:: or https::")
            if "addr" not in params:
                raise ValueError("no addr= (e.g. 'http::addr=127.0.0.1:9000;')")
            if ("username" in params) != ("password" in params):
                raise ValueError("username= and password= go together")
        return value



class TracingConfig(_Model):
    """OpenTelemetry spans; off unless enabled (then exported over OTLP/HTTP when an endpoint is set)."""

    enabled: bool = False
    otlp_endpoint: str | None = Field(None, pattern=HTTP_URL, description="e.g. http://127.0.0.1:4318/v1/traces")
    service_name: str = "tradewire"


class MarketDataConfig(_Model):
    """Where quotes come from: a Jupiter-compatible Swap API, or the configured price table."""

    jupiter_url: str | None = Field(None, pattern=HTTP_URL,
                                    description="base URL of /swap/v1 (the devnet's or Jupiter's)")
    quote_timeout_s: float = Field(2.0, gt=0)
    # Valuation quotes (positions, PnL) are cached this long; fills invalidate them.
    valuation_cache_s: float = Field(2.0, ge=0)


from pydantic import SecretStr  # noqa: E402 - kept with the sections below that use it


class RetryConfig(_Model):
    """Bounded exponential backoff with jitter: delay n = min(max, initial × multiplier^(n-1)) ± jitter."""

    max_attempts: int = Field(3, ge=1, le=100, description="attempts in all, the first included")
    initial_backoff_s: float = Field(0.05, ge=0)
    max_backoff_s: float = Field(1.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1, description="each delay is scaled by a random factor in 1 ± jitter")


class ExecutionConfig(_Model):
    """Running trades: in-flight limits, batch concurrency, retries of transient executor errors."""

    max_in_flight_per_principal: int = Field(64, ge=1, description="running trades of one principal")
    max_in_flight_total: int = Field(1024, ge=1, description="running trades of the whole process")
    batch_concurrency: int = Field(8, ge=1, le=100, description="items of one ExecuteTradeBatch run at once")
    # Transient executor errors (quote API unreachable, ...) before the trade is sent.
    retry: RetryConfig = RetryConfig()


class StreamsConfig(_Model):
    """StreamExecutionStatus and TradeSession streams."""

    heartbeat_s: float = Field(15.0, gt=0, description="a keep-alive is sent after this long without events")
    await_trade_s: float = Field(10.0, ge=0, description="a stream opened before its trade exists waits this long")
    slow_consumer_s: float = Field(30.0, gt=0, description="a stream whose transport accepts nothing for this "
                                                            "long while a message waits is dropped")
    # Each trade a session follows keeps room for its 9 statuses: past max_lag / 9 trades running,
    # a session reads its next request only as its reader catches up (the caller's sends wait).
    session_max_lag: int = Field(1024, ge=16, description="messages a TradeSession may queue for its reader; "
                                                          "past it, the session reads no more requests until "
                                                          "the reader catches up")
    # An open stream holds a task and memory until its caller closes it (a session never ends
    # by itself): one caller must not be able to hold them without bound.
    max_open_per_caller: int = Field(2_000, ge=1, description="status streams and TradeSessions one caller may "
                                                             "have open at once (more: RESOURCE_EXHAUSTED "
                                                             "TOO_MANY_STREAMS)")
    max_open_total: int = Field(20_000, ge=1, description="status streams and TradeSessions open on this "
                                                          "gateway at once")
    # Older finished trades are replayed from the store. Each kept one is ~13 objects the
    # garbage collector scans on every full collection, so this bounds those pauses too.
    keep_finished: int = Field(1_000, ge=0, description="finished trades whose events stay in memory")


class WebhookEndpointConfig(_Model):
    """Where a principal's terminal trade statuses are POSTed."""

    principal: str = Field(min_length=1, max_length=256, description="principal id (API key owner, JWT subject)")
    url: str = Field(pattern=HTTP_URL)  # (a space or no host: every delivery would fail, dead-lettered)
    secret: SecretStr | None = Field(None, description="signing secret for this endpoint (default: webhooks.secret)")


class WebhooksConfig(_Model):
    """Signed webhooks on terminal status, delivered from a durable outbox (README: Webhooks)."""

    enabled: bool = True
    endpoints: tuple[WebhookEndpointConfig, ...] = ()
    request_urls: bool = Field(True, description="honour TradeRequest.webhook_url")
    allowed_schemes: tuple[Literal["http", "https"], ...] = ("https",)
    # Callers choose request URLs: by default only global addresses (core/webhooks/destinations.py).
    allow_private_request_urls: bool = Field(False, description="let TradeRequest.webhook_url reach loopback, "
                                                                "private and link-local addresses (trusted networks)")
    keep_delivered_s: float = Field(7 * 86400, ge=0, description="delivered outbox entries are deleted after this; "
                                                                 "dead-lettered ones are kept")
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key; default: generated once into "
                                                       "<data_dir>/webhook-secret, or into Redis with "
                                                       "[shared] redis_url (one key for every replica)")
    # Bounded so an attempt's latency stays inside the histogram's buckets (core/metrics.py), and
    # a stalled receiver holds a delivery slot for a minute at most.
    timeout_s: float = Field(5.0, gt=0, le=60, description="bounds a whole delivery attempt")
    concurrency: int = Field(8, ge=1, le=256)
    # One stalled receiver must not hold every delivery slot: what is due for a receiver at its
    # bound waits, without counting as an attempt, while other receivers' webhooks go.
    max_in_flight_per_receiver: int = Field(4, ge=1, le=256, description="deliveries in flight at once to one "
                                                                         "receiver (a URL's scheme, host and "
                                                                         "port), per replica")
    idle_poll_s: float = Field(10.0, gt=0, description="look at the outbox at least this often: on a shared "
                                                       "store, entries another replica left fall due silently")
    retry: RetryConfig = RetryConfig(max_attempts=10, initial_backoff_s=1.0, max_backoff_s=600.0)


class ShutdownConfig(_Model):
    """SIGTERM/SIGINT/SIGHUP: stop admitting, let running trades finish, close streams, flush, exit 0."""

    deadline_s: float = Field(30.0, gt=0, description="signal → exit, at most")
    final_s: float = Field(3.0, gt=0, description="of deadline_s, kept for closing streams and flushing "
                                                   "webhooks and audit after the trades")

    @model_validator(mode="after")
    def _fits(self) -> ShutdownConfig:
        if self.final_s >= self.deadline_s:
            raise ValueError("final_s must be smaller than deadline_s")
        return self


class SharedConfig(_Model):
    """Scale-out: with a Redis URL, idempotency keys, trades, positions, history, rate-limit
    buckets, per-caller in-flight counts, status events and the webhook outbox are shared by
    every replica; without one, all stays local."""

    redis_url: str | None = Field(None, description="e.g. redis://127.0.0.1:6379/0")
    # Identifies this replica's unfinished trades across restarts (default: from data_dir).
    replica_id: str | None = None
    events_retain_s: int = Field(3600, ge=60)
    # A replica's hold on a caller's in-flight slot (execution.max_in_flight_per_principal, then
    # counted across replicas) and on a LIVE trade's reservation of the wallet; renewed every
    # third of it, so a replica that dies frees its slots and reservations this long after.
    inflight_lease_s: float = Field(30.0, ge=1, le=3600)
    # A replica beats every third of this; one silent this long is presumed dead, and the others
    # take over its unfinished trades not yet past the point of no return.
    replica_ttl_s: float = Field(10.0, ge=1, le=3600)
    # Store calls run on the event loop: each waits at most this long for Redis, and after one
    # went unanswered the others fail at once (STORE_UNAVAILABLE) for store_cooldown_s.
    store_timeout_s: float = Field(1.0, gt=0, le=60)
    store_cooldown_s: float = Field(1.0, ge=0, le=60)

    @field_validator("redis_url")
    @classmethod
    def _a_redis_url(cls, value: str | None) -> str | None:
        # Checked here, not first by redis-py: its error named no setting ("Invalid IPv6 URL"), was
        # a traceback in `tradewire keys` and `kill-switch`, and a database that is not a number
        # (/O for /0) it silently read as database 0. (The URL may hold a password: not echoed.)
        if value:
            from urllib.parse import urlsplit

            from redis.connection import parse_url

            try:
                parse_url(value)
                database = urlsplit(value).path.strip("/")
            except ValueError:
                raise ValueError("not a Redis URL (redis://[[user]:password@]host[:port][/db], rediss://... "
                                 "or unix:///path)") from None
            if not value.startswith("unix://") and database and not database.isdigit():
                raise ValueError("the Redis URL's database (its path) is not a number, as in redis://host:6379/0")
        return value


class MetricsConfig(_Model):
    # Prometheus metrics at /metrics; off only to measure what they cost (bench/).
    enabled: bool = True


KillSwitch = Literal["off", "reduce_only", "halt"]  # from the least to the most strict
KILL_SWITCH_STATES: tuple[str, ...] = get_args(KillSwitch)


class LiveConfig(_Model):
    """LIVE trading: real Solana swaps through Jupiter, sent by RPC or as Jito bundles.

    Off unless ``enabled``; until then LIVE trades are refused with LIVE_NOT_CONFIGURED.
    Money amounts of the safety limits are in units of the valuation mint (USDC by default),
    valued with the gateway's QuoteSource. The keypair itself never enters Settings: only
    where to read it from (``wallet_path``, else the environment variable ``wallet_env``).
    """

    enabled: bool = False
    rpc_url: str = Field("http://127.0.0.1:8899", pattern=HTTP_URL, description="Solana JSON-RPC endpoint")
    jupiter_url: str = Field("http://127.0.0.1:8899", pattern=HTTP_URL,
                             description="base URL of /swap/v1 (Jupiter's or the devnet's)")
    jito_url: str | None = Field("http://127.0.0.1:8899", pattern=HTTP_URL,
                                 description="block engine base URL; unset: Jito refused")
    wallet_path: Path | None = Field(None, description="Solana CLI keypair file (JSON array of 64 bytes) or base58")
    wallet_env: str = Field("LIVE_WALLET_KEYPAIR", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="environment variable holding the keypair when wallet_path is unset")
    orders_db: Path | None = Field(None, description="sent-transaction journal; default <data_dir>/live_orders.db")
    # One pooled keep-alive HTTP client per upstream (quote API, RPC, block engine).
    http_timeout_s: float = Field(5.0, gt=0)
    connect_timeout_s: float = Field(2.0, gt=0)
    max_connections: int = Field(16, ge=1, le=1024)
    # Transient upstream errors are retried with backoff before send only.
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_backoff_s: float = Field(0.1, ge=0)
    retry_max_backoff_s: float = Field(1.0, ge=0)
    # A circuit breaker per upstream: opens after this many consecutive failures.
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(10.0, gt=0)
    # Confirmation: one poller for every in-flight signature; the same signed bytes are
    # re-broadcast until confirmed or the block height passes lastValidBlockHeight.
    commitment: Literal["confirmed", "finalized"] = "confirmed"
    poll_interval_s: float = Field(0.4, gt=0)
    rebroadcast_interval_s: float = Field(2.0, gt=0)
    skip_preflight: bool = Field(True, description="the executor simulates right before the first send")
    stalled_after_s: float = Field(120.0, gt=0, description="health warns about trades unconfirmed this long")
    # Fees.
    priority_level: Literal["medium", "high", "veryHigh"] = "high"
    max_priority_fee_lamports: int = Field(5_000_000, ge=0, description="gateway-wide cap (requests may lower it)")
    # Safety checks, each refusal REJECTED with its reason.
    kill_switch: KillSwitch = "off"
    kill_switch_file: Path | None = Field(None, description="if the file exists it engages the switch: 'halt' "
                                                             "or 'reduce_only' (anything else halts)")
    # Mints are named by their configured symbol (exactly) or their address; each must be a
    # configured mint (Settings checks it), else a limit keyed by it would silently never apply.
    reduce_only_outputs: tuple[str, ...] = Field((), description="mints a reduce-only trade may buy (symbols or "
                                                                 "addresses); default: the valuation mint")
    allowed_mints: tuple[str, ...] = Field((), description="symbols or addresses; empty: every configured mint")
    max_notional: Decimal | None = Field(Decimal("1000"), ge=0, description="per trade (ExactOut: the most it may "
                                                                            "pay)")
    max_mint_exposure: Decimal | None = Field(Decimal("10000"), ge=0, description="wallet holding of a bought mint, "
                                                                               "after the trade")
    mint_exposure_caps: dict[str, Decimal] = Field(default_factory=dict, description="per symbol or address, "
                                                                                     "overrides max_mint_exposure")
    daily_loss_limit: Decimal | None = Field(Decimal("500"), ge=0, description="realised loss of LIVE trades since "
                                                                               "00:00 UTC, fees included")
    min_sol_reserve: Decimal = Field(Decimal("0.05"), ge=0, description="SOL the wallet keeps for fees")
    max_price_impact_bps: int = Field(100, ge=0, le=10_000, description="when the request sets none")
    health_refresh_s: float = Field(10.0, gt=0, description="wallet balance read for the health check")

    @field_validator("wallet_env")
    @classmethod
    def _not_a_config_variable(cls, v: str) -> str:
        if v.upper().startswith(ENV_PREFIX):
            raise ValueError(f"must not start with {ENV_PREFIX} (those variables are configuration overrides)")
        return v

    def unknown_mints(self, market: MarketConfig) -> list[tuple[str, str]]:
        """(setting, problem) for each mint named here that is not one of the market's: a limit
        keyed by a name that matches no mint would never apply."""
        named = [("allowed_mints", self.allowed_mints), ("reduce_only_outputs", self.reduce_only_outputs),
                 ("mint_exposure_caps", tuple(self.mint_exposure_caps))]
        symbols = ", ".join(sorted(m.symbol for m in market.mints))
        problems = []
        for setting, refs in named:
            for ref in refs:
                if resolve_mint(market, ref) is None:
                    near = [m.symbol for m in market.mints if m.symbol.lower() == ref.lower()]
                    hint = f" (did you mean {near[0]!r}?)" if near else ""
                    problems.append((setting, f"{ref!r} is not a configured mint{hint}: name one by its symbol, "
                                              f"as configured ({symbols}), or by its mint address"))
        return problems


def _not_a_mint(symbol: str, symbols: set[str]) -> str:
    near = [s for s in symbols if s.lower() == symbol.lower()]
    return f"{symbol!r} is not a configured mint" + (f" (did you mean {near[0]!r}?)" if near else "")


def resolve_mint(market: MarketConfig, ref: str) -> str | None:
    """The address of the configured mint ``ref`` names (its symbol, exactly, or its address)."""
    for mint in market.mints:
        if ref in (mint.symbol, mint.address):
            return mint.address
    return None


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One JSON line per request, and per trade transition; off only to measure their cost.
    access_log: bool = True
    transition_log: bool = True


class Settings(_Model):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    market: MarketConfig = MarketConfig()
    paper: PaperConfig = PaperConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    audit: AuditConfig = AuditConfig()
    tracing: TracingConfig = TracingConfig()
    market_data: MarketDataConfig = MarketDataConfig()
    shared: SharedConfig = SharedConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    live: LiveConfig = LiveConfig()
    execution: ExecutionConfig = ExecutionConfig()
    streams: StreamsConfig = StreamsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    shutdown: ShutdownConfig = ShutdownConfig()

    @model_validator(mode="after")
    def _live_mints_are_the_markets(self) -> Settings:
        problems = self.live.unknown_mints(self.market)
        if problems:  # reported at each setting's own path, like any other bad value
            raise ValidationError.from_exception_data("Settings", [InitErrorDetails(
                type=PydanticCustomError("unknown_mint", "{problem}", {"problem": problem}), loc=("live", setting),
                input=None) for setting, problem in problems])
        return self

    @model_validator(mode="after")
    def _paper_balances_are_the_markets(self) -> Settings:
        # A balance of a symbol the market lacks failed every paper trade (KeyError) at its first
        # one, after the gateway had started fine.
        decimals = {m.symbol: m.decimals for m in self.market.mints}
        problems = [_not_a_mint(s, set(decimals)) for s in self.paper.starting_balances if s not in decimals]
        # A store keeps a holding in signed 64-bit smallest units: a larger starting balance failed
        # every caller's first call (INTERNAL), after the gateway had started fine.
        problems += [f"{s} {amount} is more than a wallet holds ({_MAX_HOLDING_UNITS} smallest units)"
                     for s, amount in self.paper.starting_balances.items()
                     if s in decimals and amount.scaleb(decimals[s]) > _MAX_HOLDING_UNITS]
        if problems:
            raise ValidationError.from_exception_data("Settings", [InitErrorDetails(
                type=PydanticCustomError("unknown_mint", "{problem}", {"problem": "; ".join(problems)}),
                loc=("paper", "starting_balances"), input=None)])
        return self

    @model_validator(mode="after")
    def _workers_share_state(self) -> Settings:
        server = self.server
        if server.workers > 1 and not self.shared.redis_url:
            raise ValueError(f"server.workers = {server.workers} needs shared.redis_url: every worker is a "
                             "replica, and idempotency keys, limits and positions must be shared")
        if server.workers > 1 and 0 in (server.grpc_port, server.http_port):
            raise ValueError("server.workers > 1 needs fixed server.grpc_port and server.http_port (not 0)")
        return self


def key_db_path(settings: Settings) -> Path:
    """The API-key database the gateway reads and ``tradewire keys`` writes."""
    return settings.auth.api_key_db or settings.storage.data_dir / "auth.db"


def admin_spool_path(settings: Settings) -> Path:
    """Where administration commands keep the audit rows QuestDB did not take, and the gateway
    looks for them (core/audit/foreign_spool.py)."""
    return settings.audit.admin_spool_path or settings.storage.data_dir / "admin-audit.spool.jsonl"


def misspelled_settings(env: Mapping[str, str]) -> dict[str, str]:
    """TRADEWIRE_ variables without ``__`` that name a setting with one ``_`` where ``__``
    belongs (TRADEWIRE_LIVE_KILL_SWITCH), each with the name it would need: they are not read
    (other tools' variables have no ``__`` either), so a start-up warns of them."""
    found: dict[str, str] = {}
    for name in env:
        if not name.startswith(ENV_PREFIX) or "__" in name:
            continue
        words = name[len(ENV_PREFIX):].lower().split("_")
        for cut in range(1, len(words)):
            section, key = "_".join(words[:cut]), "_".join(words[cut:])
            model = Settings.model_fields.get(section)
            fields = getattr(model.annotation, "model_fields", {}) if model is not None else {}
            if key in fields:
                found[name] = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
    return found


def misspelled_settings_said(env: Mapping[str, str]) -> list[str]:
    """What to tell of each variable :func:`misspelled_settings` finds (serve logs it, the admin
    commands print it)."""
    return [f"{name} is not read: settings are SECTION__KEY variables (did you mean {meant}?)"
            for name, meant in misspelled_settings(env).items()]


# Settings whose keys are mint symbols or addresses, which have a case: below them a variable's
# name is kept as written (TRADEWIRE_MARKET__PRICES_USD__SOL), not lowercased as setting names are.
_KEYED_BY_MINT = {("market", "prices_usd"), ("paper", "starting_balances"), ("live", "mint_exposure_caps")}


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """TRADEWIRE_A__B=v → {"a": {"b": v}}; values that look like JSON lists/objects are parsed."""
    import json

    tree: dict[str, Any] = {}
    for name, raw in env.items():
        # Every setting is in a section: a name without "__" is some other tool's (e.g. scripts').
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = name[len(ENV_PREFIX):].split("__")
        path = [part.lower() for part in parts]
        if tuple(path[:2]) in _KEYED_BY_MINT:
            path[2:] = parts[2:]
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                pass
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: conflicts with another TRADEWIRE_ variable")
        # Met after a variable naming a setting inside this one: (the order of the environment
        # decided) a value for it dropped that variable unsaid, a JSON table replaced it.
        inside = node.get(path[-1])
        if isinstance(inside, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: conflicts with another TRADEWIRE_ variable")
            value = _merge(value, inside)
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``path`` (or $TRADEWIRE_CONFIG) and the environment; ConfigError lists every problem."""
    env = os.environ if env is None else env
    path = path or env.get(f"{ENV_PREFIX}CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    overrides = _env_overrides(env)
    for section, key in _KEYED_BY_MINT:
        # A variable naming one mint's entry (TRADEWIRE_PAPER__STARTING_BALANCES__SOL) changes that
        # entry, of the file's table or else of the default one, which it would otherwise replace
        # whole (every other starting balance gone). A JSON value for the setting still replaces it.
        amended = any(name.upper().startswith(f"{ENV_PREFIX}{section}__{key}__".upper()) for name in env)
        in_file = data.get(section)
        if amended and (not isinstance(in_file, dict) or key not in in_file):
            data = _merge(data, {section: {key: dict(getattr(Settings.model_fields[section].default, key))}})
    data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {_where(err['loc'], overrides)}: {_problem(err)}" for err in exc.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


def _where(loc: tuple, overrides: Mapping[str, Any]) -> str:
    """The setting's dotted name, and the environment variable that set it when one did."""
    if not loc:  # a check across settings (a model validator): no one variable set it
        return "(settings)"
    name = ".".join(str(p) for p in loc)
    node: Any = overrides
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return name
        node = node[part]
    variable = ENV_PREFIX + "__".join(str(p).upper() for p in loc) + ("__*" if isinstance(node, dict) else "")
    return f"{name} (from {variable})"


_EXPECTED_NOT_TEXT = {"tuple_type": 'a list (in a variable, as JSON: ["a", "b"])',
                      "list_type": 'a list (in a variable, as JSON: ["a", "b"])',
                      "dict_type": 'a table (in a variable, as JSON: {"key": "value"})',
                      "model_type": 'a table (in a variable, as JSON: {"key": "value"})'}


def _problem(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown setting"
    if err["type"] in _EXPECTED_NOT_TEXT and isinstance(err.get("input"), str):
        # (a variable's value is JSON only when it starts with [ or { and parses: say so)
        return f"expected {_EXPECTED_NOT_TEXT[err['type']]}, not text"
    if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == HTTP_URL:
        return "not an http(s) URL (a scheme http or https, a host, no spaces)"  # (not echoed: it may hold a key)
    return str(err["msg"]).removeprefix("Value error, ")
