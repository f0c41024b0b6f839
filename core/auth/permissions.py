"""Which scope each RPC needs (pipeline step 3), in one table.

Rules: trading methods need ``trade:paper`` for PAPER and ``trade:live`` for LIVE —
``trade:paper`` never grants LIVE, while ``trade:live`` does grant PAPER. Read methods
need ``read``, which either trade scope implies. ``admin`` grants everything (see
``Principal.has``). A method missing from the table is refused for everyone: a new RPC
must be given a rule here before anyone can call it (fail closed).

``mode`` is the plain string "PAPER" or "LIVE" (case-insensitive; a ``TRADING_MODE_``
prefix is tolerated). When a trading call's mode is not known yet (None/UNSPECIFIED, e.g.
when a TradeSession opens), the PAPER rule applies; call ``authorize`` again with the
resolved mode per trade, and for a batch with "LIVE" if any trade in it is LIVE.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tradewire.core.context import SCOPE_READ, SCOPE_TRADE_LIVE, SCOPE_TRADE_PAPER, Principal
from tradewire.core.errors import TradewireError, invalid

MODE_PAPER = "PAPER"
MODE_LIVE = "LIVE"


class Access(enum.Enum):
    PUBLIC = "public"  # no scope (HealthCheck)
    READ = "read"  # read, or any trade scope
    TRADE = "trade"  # trade:paper / trade:live by mode


METHOD_ACCESS: Mapping[str, Access] = {
    "ExecuteTrade": Access.TRADE,
    "ExecuteTradeBatch": Access.TRADE,
    "TradeSession": Access.TRADE,
    "CancelTrade": Access.TRADE,
    "GetTrade": Access.READ,
    "GetTradeHistory": Access.READ,
    "GetPositions": Access.READ,
    "GetMarket": Access.READ,
    "StreamExecutionStatus": Access.READ,
    "HealthCheck": Access.PUBLIC,
}

# For each need: the scopes that satisfy it (any one is enough), the first being the one
# named in a refusal.
_SATISFIED_BY: Mapping[tuple[Access, str | None], tuple[str, ...]] = {
    (Access.READ, None): (SCOPE_READ, SCOPE_TRADE_PAPER, SCOPE_TRADE_LIVE),
    (Access.TRADE, MODE_PAPER): (SCOPE_TRADE_PAPER, SCOPE_TRADE_LIVE),
    (Access.TRADE, MODE_LIVE): (SCOPE_TRADE_LIVE,),
}


def normalize_mode(mode: object) -> str | None:
    """"PAPER" | "LIVE" | None (unspecified). Accepts strings and enum members (by name)."""
    if mode is None:
        return None
    name = getattr(mode, "name", mode)
    if not isinstance(name, str):
        raise invalid("mode", "must be PAPER or LIVE")
    name = name.strip().upper().removeprefix("TRADING_MODE_")
    if name in ("", "UNSPECIFIED"):
        return None
    if name not in (MODE_PAPER, MODE_LIVE):
        raise invalid("mode", "must be PAPER or LIVE")
    return name


def required_scopes(method: str, mode: object = None) -> tuple[str, ...]:
    """Scopes of which any one allows the call; () for a public method."""
    access = METHOD_ACCESS.get(method)
    if access is None:
        raise TradewireError(
            "PERMISSION_DENIED", f"method {method!r} has no permission rule", metadata={"method": str(method)[:64]}
        )
    if access is Access.PUBLIC:
        return ()
    if access is Access.READ:
        return _SATISFIED_BY[(Access.READ, None)]
    return _SATISFIED_BY[(Access.TRADE, normalize_mode(mode) or MODE_PAPER)]


def authorize(principal: Principal | None, method: str, mode: object = None) -> None:
    """Return if ``principal`` may call ``method`` in ``mode``; else PERMISSION_DENIED
    naming the missing scope."""
    needed = required_scopes(method, mode)
    if not needed:
        return
    if principal is not None and any(principal.has(scope) for scope in needed):
        return
    mode_name = normalize_mode(mode) if METHOD_ACCESS[method] is Access.TRADE else None
    where = f" in {mode_name or MODE_PAPER} mode" if METHOD_ACCESS[method] is Access.TRADE else ""
    alternatives = f" (or {' / '.join(needed[1:])})" if len(needed) > 1 else ""
    raise TradewireError(
        "PERMISSION_DENIED",
        f"{method}{where} requires scope {needed[0]!r}{alternatives}",
        metadata={"method": method, "required_scope": needed[0]},
    )
