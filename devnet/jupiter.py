"""Jupiter-compatible Swap API v1 (``GET /swap/v1/quote``, ``POST /swap/v1/swap``).

Quotes come from the devnet's constant-product pools (direct, or two hops through an
intermediate token). A swap is ONE transaction: compute budget, optional wSOL wrap,
create-idempotent ATA for the output when missing, the guard instruction (see
``guard_program``), ``TransferChecked`` user→pool for the input, pool→(next pool|user) for
each hop's output, optional unwrap, optional Jito tip. The pool authority co-signs; the
user's signature slot is left empty (all zeros) for the client to fill.

Amounts are fixed when ``/swap`` builds the transaction (recomputed from the reserves at
that moment, never trusted from the client's quoteResponse). The guard then makes the
transaction fail on-chain with custom error 6001 when, at execution time, the pools have
moved so far that the fill would fall below ``otherAmountThreshold`` (ExactIn) or the
input needed would exceed it (ExactOut). Fees are still charged, as on mainnet.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.message import Message, MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from starlette.requests import Request
from starlette.responses import JSONResponse

from . import pools as pricing
from .chain import Chain
from .constants import JITO_TIP_ACCOUNTS, MAX_COMPUTE_UNIT_LIMIT, MICRO_LAMPORTS_PER_LAMPORT, U64_MAX, WSOL_MINT
from .guard_program import guard_instruction
from .seed import Market, MintInfo, Pool
from .spl_token import ata, close_account, create_associated_token_account_idempotent, sync_native, transfer_checked
from .txutil import custom_error_code, err_json, err_message

AUTO_MAX_LAMPORTS = 5_000_000
_LEVEL_PERCENTILE = {"medium": 50, "high": 75, "veryHigh": 90}


class JupiterError(Exception):
    """An API error answered as ``{"error": message, "errorCode": code}`` with an HTTP status."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "errorCode": self.code}, status_code=self.status)


@dataclass(frozen=True)
class Leg:
    pool: Pool
    input: MintInfo
    output: MintInfo
    amount_in: int
    amount_out: int
    reserves: pricing.Reserves

    @property
    def fee(self) -> int:
        return pricing.fee_amount(self.amount_in, self.pool.fee_bps)


@dataclass(frozen=True)
class Route:
    legs: list[Leg]
    mode: str

    @property
    def in_amount(self) -> int:
        return self.legs[0].amount_in

    @property
    def out_amount(self) -> int:
        return self.legs[-1].amount_out

    @property
    def price_impact(self) -> Fraction:
        return pricing.combine_impacts([pricing.price_impact(l.reserves, l.amount_in) for l in self.legs])


def _price_exact_in(market: Market, path: list[tuple[Pool, MintInfo, MintInfo]], amount: int) -> Route | None:
    legs = []
    current = amount
    for pool, src, dst in path:
        res = market.reserves(pool, src.address)
        out = pricing.amount_out(res, current)
        if out <= 0:
            return None
        legs.append(Leg(pool, src, dst, current, out, res))
        current = out
    return Route(legs, "ExactIn")


def _price_exact_out(market: Market, path: list[tuple[Pool, MintInfo, MintInfo]], amount: int) -> Route | None:
    legs: list[Leg] = []
    current = amount
    for pool, src, dst in reversed(path):
        res = market.reserves(pool, src.address)
        try:
            need = pricing.amount_in_for_out(res, current)
        except pricing.NoLiquidity:
            return None
        if need > U64_MAX:
            return None
        legs.insert(0, Leg(pool, src, dst, need, current, res))
        current = need
    return Route(legs, "ExactOut")


class Jupiter:
    """Quote and swap-building logic over the seeded market."""

    def __init__(self, chain: Chain, market: Market) -> None:
        self.chain = chain
        self.market = market

    # ----- routing ---------------------------------------------------------------------

    def _paths(self, src: MintInfo, dst: MintInfo, only_direct: bool, restrict: bool):
        for pool in self.market.pools_between(src.address, dst.address):
            yield [(pool, src, dst)]
        if only_direct:
            return
        allowed = {self.market.mint(s).address for s in self.chain.config.intermediate_tokens if self.market.mint(s)}
        for mid in self.market.mints.values():
            if mid.address in (src.address, dst.address):
                continue
            if restrict and mid.address not in allowed:
                continue
            for first in self.market.pools_between(src.address, mid.address):
                for second in self.market.pools_between(mid.address, dst.address):
                    yield [(first, src, mid), (second, mid, dst)]

    def best_route(
        self, src: MintInfo, dst: MintInfo, amount: int, mode: str, only_direct: bool = False, restrict: bool = True
    ) -> Route:
        best: Route | None = None
        for path in self._paths(src, dst, only_direct, restrict):
            if mode == "ExactIn":
                route = _price_exact_in(self.market, path, amount)
                better = route is not None and (best is None or route.out_amount > best.out_amount)
            else:
                route = _price_exact_out(self.market, path, amount)
                better = route is not None and (best is None or route.in_amount < best.in_amount)
            if better:
                best = route
        if best is None:
            raise JupiterError("Could not find any route", "COULD_NOT_FIND_ANY_ROUTE")
        return best

    # ----- quote -----------------------------------------------------------------------

    def quote(self, params: dict[str, str]) -> dict[str, Any]:
        started = time.perf_counter()
        slot = self.chain.sync()
        src = self._mint_param(params, "inputMint")
        dst = self._mint_param(params, "outputMint")
        if src.address == dst.address:
            raise JupiterError("inputMint cannot be the same as outputMint", "CIRCULAR_ARBITRAGE_IS_DISABLED")
        amount = _int_param(params, "amount", required=True, lo=1, hi=U64_MAX)
        slippage = _int_param(params, "slippageBps", default=50, lo=0, hi=10_000)
        mode = params.get("swapMode", "ExactIn")
        if mode not in ("ExactIn", "ExactOut"):
            raise JupiterError(f"Query parameter swapMode must be ExactIn or ExactOut, got {mode!r}", "INVALID_REQUEST")
        only_direct = _bool_param(params, "onlyDirectRoutes", False)
        restrict = _bool_param(params, "restrictIntermediateTokens", True)
        route = self.best_route(src, dst, amount, mode, only_direct, restrict)
        if mode == "ExactIn":
            threshold = pricing.threshold_exact_in(route.out_amount, slippage)
        else:
            threshold = pricing.threshold_exact_out(route.in_amount, slippage)
        return {
            "inputMint": str(src.address),
            "inAmount": str(route.in_amount),
            "outputMint": str(dst.address),
            "outAmount": str(route.out_amount),
            "otherAmountThreshold": str(threshold),
            "swapMode": mode,
            "slippageBps": slippage,
            "platformFee": None,
            "priceImpactPct": pricing.fraction_str(route.price_impact),
            "routePlan": [
                {
                    "swapInfo": {
                        "ammKey": str(leg.pool.amm_key),
                        "label": leg.pool.label,
                        "inputMint": str(leg.input.address),
                        "outputMint": str(leg.output.address),
                        "inAmount": str(leg.amount_in),
                        "outAmount": str(leg.amount_out),
                        "feeAmount": str(leg.fee),
                        "feeMint": str(leg.input.address),
                    },
                    "percent": 100,
                    "bps": 10_000,
                }
                for leg in route.legs
            ],
            "contextSlot": slot,
            "timeTaken": round(time.perf_counter() - started, 6),
        }

    def _mint_param(self, params: dict[str, str], name: str) -> MintInfo:
        raw = params.get(name)
        if not raw:
            raise JupiterError(f"Query parameter {name} is required", "INVALID_REQUEST")
        try:
            address = Pubkey.from_string(raw)
        except ValueError:
            raise JupiterError(f"Query parameter {name} is not a valid public key: {raw}", "INVALID_REQUEST") from None
        info = self.market.mint(address)
        if info is None:
            raise JupiterError(f"The token {raw} is not tradable", "TOKEN_NOT_TRADABLE")
        return info

    # ----- swap ------------------------------------------------------------------------

    def swap(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise JupiterError("Request body must be a JSON object", "INVALID_REQUEST")
        user = _pubkey_field(body, "userPublicKey")
        quote = body.get("quoteResponse")
        if not isinstance(quote, dict):
            raise JupiterError("quoteResponse is required", "INVALID_REQUEST")
        route, threshold = self._route_from_quote(quote)
        wrap = bool(body.get("wrapAndUnwrapSol", True))
        legacy = bool(body.get("asLegacyTransaction", False))
        dynamic_cu = bool(body.get("dynamicComputeUnitLimit", False))
        destination = _pubkey_field(body, "destinationTokenAccount") if body.get("destinationTokenAccount") else None
        fee_spec = self._fee_spec(body)

        limit = self.chain.config.default_compute_unit_limit
        build = _Builder(self, route, threshold, user, wrap, destination, legacy)
        if dynamic_cu:
            probe = build.transaction(MAX_COMPUTE_UNIT_LIMIT, 0, fee_spec.tip)
            sim = self.chain.simulate(probe)
            if sim.err is None and sim.units_consumed:
                limit = min(MAX_COMPUTE_UNIT_LIMIT, math.ceil(sim.units_consumed * 1.2) + 1_000)
        price, estimated = fee_spec.price_for(limit)
        tx = build.transaction(limit, price, fee_spec.tip)
        sim = self.chain.simulate(tx)
        priority_lamports = -(-price * limit // MICRO_LAMPORTS_PER_LAMPORT)
        prioritization_type: dict[str, Any]
        if fee_spec.tip:
            prioritization_type = {"jito": {"lamports": fee_spec.tip}}
        else:
            prioritization_type = {"computeBudget": {"microLamports": price, "estimatedMicroLamports": estimated}}
        return {
            "swapTransaction": base64.b64encode(bytes(tx)).decode(),
            "lastValidBlockHeight": build.last_valid_block_height,
            "prioritizationFeeLamports": fee_spec.tip or priority_lamports,
            "computeUnitLimit": limit,
            "prioritizationType": prioritization_type,
            "simulationSlot": self.chain.slot,
            "dynamicSlippageReport": None,
            "simulationError": _simulation_error(sim) if sim.err is not None else None,
            "addressesByLookupTableAddress": None,
        }

    def _route_from_quote(self, quote: dict[str, Any]) -> tuple[Route, int]:
        """Re-price the quote's route at the current reserves (amounts are never trusted)."""
        try:
            src = self.market.mint(Pubkey.from_string(str(quote["inputMint"])))
            dst = self.market.mint(Pubkey.from_string(str(quote["outputMint"])))
            mode = quote.get("swapMode", "ExactIn")
            in_amount = int(quote["inAmount"])
            out_amount = int(quote["outAmount"])
            threshold = int(quote["otherAmountThreshold"])
            plan = quote["routePlan"]
            keys = [Pubkey.from_string(str(step["swapInfo"]["ammKey"])) for step in plan]
        except (KeyError, TypeError, ValueError) as exc:
            raise JupiterError(f"Invalid quoteResponse: {exc}", "INVALID_REQUEST") from None
        if src is None or dst is None:
            raise JupiterError("Invalid quoteResponse: unknown mint", "TOKEN_NOT_TRADABLE")
        if mode not in ("ExactIn", "ExactOut"):
            raise JupiterError("Invalid quoteResponse: swapMode", "INVALID_REQUEST")
        if not (0 < in_amount <= U64_MAX and 0 < out_amount <= U64_MAX and 0 <= threshold <= U64_MAX):
            raise JupiterError("Invalid quoteResponse: amounts out of range", "INVALID_REQUEST")
        if not 1 <= len(keys) <= 2:
            raise JupiterError("Invalid quoteResponse: routePlan must have 1 or 2 steps", "INVALID_REQUEST")
        path = []
        current = src
        for key in keys:
            pool = self.market.pool_by_key(key)
            if pool is None or not pool.has(current.address):
                raise JupiterError(f"Invalid quoteResponse: unknown or disconnected ammKey {key}", "INVALID_REQUEST")
            nxt = pool.other(current.address)
            path.append((pool, current, nxt))
            current = nxt
        if current.address != dst.address:
            raise JupiterError("Invalid quoteResponse: routePlan does not end at outputMint", "INVALID_REQUEST")
        if mode == "ExactIn":
            route = _price_exact_in(self.market, path, in_amount)
        else:
            route = _price_exact_out(self.market, path, out_amount)
        if route is None:
            raise JupiterError("Could not find any route", "COULD_NOT_FIND_ANY_ROUTE")
        return route, threshold

    def _fee_spec(self, body: dict[str, Any]) -> _FeeSpec:
        explicit = body.get("computeUnitPriceMicroLamports")
        if explicit is not None and body.get("prioritizationFeeLamports") is not None:
            # Jupiter refuses the pair rather than silently preferring one of them.
            raise JupiterError(
                "computeUnitPriceMicroLamports and prioritizationFeeLamports cannot both be set",
                "INVALID_COMPUTE_UNIT_PRICE_AND_PRIORITIZATION_FEE",
            )
        if explicit is not None:
            return _FeeSpec(self, price=_nonneg_int(explicit, "computeUnitPriceMicroLamports"))
        spec = body.get("prioritizationFeeLamports")
        if spec is None:
            return _FeeSpec(self, price=0)
        if spec == "auto":
            return _FeeSpec(self, level="medium", max_lamports=AUTO_MAX_LAMPORTS)
        if isinstance(spec, (int, str)) and not isinstance(spec, bool):
            return _FeeSpec(self, total_lamports=_nonneg_int(spec, "prioritizationFeeLamports"))
        if isinstance(spec, dict):
            if "jitoTipLamports" in spec:
                return _FeeSpec(self, tip=_nonneg_int(spec["jitoTipLamports"], "jitoTipLamports"))
            level = spec.get("priorityLevelWithMaxLamports")
            if isinstance(level, dict):
                name = level.get("priorityLevel", "medium")
                if name not in _LEVEL_PERCENTILE:
                    raise JupiterError(f"priorityLevel must be one of {sorted(_LEVEL_PERCENTILE)}", "INVALID_REQUEST")
                max_lamports = _nonneg_int(level.get("maxLamports", AUTO_MAX_LAMPORTS), "maxLamports")
                return _FeeSpec(self, level=name, max_lamports=max_lamports)
        raise JupiterError("Invalid prioritizationFeeLamports", "INVALID_REQUEST")

    def estimate_price(self, level: str) -> int:
        """CU price for a priority level: the configured floor or the recent percentile."""
        floor = self.chain.config.priority_levels.get(level, 0)
        observed = sorted(self.chain.recent_cu_prices())
        if not observed:
            return floor
        idx = min(len(observed) - 1, (len(observed) * _LEVEL_PERCENTILE[level]) // 100)
        return max(floor, observed[idx])


@dataclass
class _FeeSpec:
    jupiter: Jupiter
    price: int | None = None
    total_lamports: int | None = None
    level: str | None = None
    max_lamports: int | None = None
    tip: int = 0

    def price_for(self, limit: int) -> tuple[int, int]:
        """(CU price to use, estimate before capping) for a given CU limit."""
        if self.price is not None:
            return self.price, self.price
        if self.total_lamports is not None:
            price = self.total_lamports * MICRO_LAMPORTS_PER_LAMPORT // limit
            return price, price
        if self.level is not None:
            estimate = self.jupiter.estimate_price(self.level)
            price = estimate
            if self.max_lamports is not None and -(-price * limit // MICRO_LAMPORTS_PER_LAMPORT) > self.max_lamports:
                price = self.max_lamports * MICRO_LAMPORTS_PER_LAMPORT // limit
            return price, estimate
        return 0, 0


class _Builder:
    """Builds (and pool-signs) the swap transaction for one route and user."""

    def __init__(
        self,
        jupiter: Jupiter,
        route: Route,
        threshold: int,
        user: Pubkey,
        wrap: bool,
        destination: Pubkey | None,
        legacy: bool,
    ) -> None:
        self.chain = jupiter.chain
        self.market = jupiter.market
        self.route = route
        self.threshold = threshold
        self.user = user
        self.wrap = wrap
        self.destination = destination
        self.legacy = legacy
        self.blockhash: Hash
        self.blockhash, self.last_valid_block_height = self.chain.latest_blockhash()
        self.core = self._core_instructions()

    def _bounds(self) -> list[tuple[Pubkey, int, int]]:
        hops = [pricing.Hop(l.reserves, l.amount_in, l.amount_out) for l in self.route.legs]
        if self.route.mode == "ExactIn":
            boxes = pricing.guard_bounds_exact_in(hops, self.threshold)
        else:
            boxes = pricing.guard_bounds_exact_out(hops, self.threshold)
        bounds = []
        for leg, box in zip(self.route.legs, boxes):
            v_in, v_out = leg.pool.vaults(leg.input.address)
            max_in, min_out = box if box is not None else (0, U64_MAX)  # impossible: always fails
            bounds.append((v_in, 0, max_in))
            bounds.append((v_out, min_out, U64_MAX))
        return bounds

    def _core_instructions(self) -> list[Instruction]:
        route, user = self.route, self.user
        authority = self.market.pool_authority.pubkey()
        src, dst = route.legs[0].input, route.legs[-1].output
        ixs: list[Instruction] = []
        user_in = ata(user, src.address)
        if src.address == WSOL_MINT and self.wrap:
            ixs.append(create_associated_token_account_idempotent(user, user, WSOL_MINT))
            ixs.append(transfer(TransferParams(from_pubkey=user, to_pubkey=user_in, lamports=route.in_amount)))
            ixs.append(sync_native(user_in))
        user_out = self.destination or ata(user, dst.address)
        if self.destination is None and self.chain.get_account(user_out) is None:
            ixs.append(create_associated_token_account_idempotent(user, user, dst.address))
        ixs.append(guard_instruction(self._bounds()))
        first = route.legs[0]
        first_in_vault, _ = first.pool.vaults(first.input.address)
        ixs.append(transfer_checked(user_in, src.address, first_in_vault, user, first.amount_in, src.decimals))
        for i, leg in enumerate(route.legs):
            _, out_vault = leg.pool.vaults(leg.input.address)
            if i + 1 < len(route.legs):
                nxt = route.legs[i + 1]
                target, _ = nxt.pool.vaults(nxt.input.address)
            else:
                target = user_out
            ixs.append(
                transfer_checked(out_vault, leg.output.address, target, authority, leg.amount_out, leg.output.decimals)
            )
        if self.wrap and self.destination is None and dst.address == WSOL_MINT:
            ixs.append(close_account(user_out, user, user))
        elif self.wrap and src.address == WSOL_MINT:
            ixs.append(close_account(user_in, user, user))
        return ixs

    def transaction(self, limit: int, price: int, tip: int) -> VersionedTransaction:
        ixs = [set_compute_unit_limit(limit), set_compute_unit_price(price), *self.core]
        if tip:
            tip_account = Pubkey.from_string(JITO_TIP_ACCOUNTS[self.chain.slot % len(JITO_TIP_ACCOUNTS)])
            ixs.append(transfer(TransferParams(from_pubkey=self.user, to_pubkey=tip_account, lamports=tip)))
        if self.legacy:
            msg: Message | MessageV0 = Message.new_with_blockhash(ixs, self.user, self.blockhash)
        else:
            msg = MessageV0.try_compile(self.user, ixs, [], self.blockhash)
        signers = list(msg.account_keys)[: msg.header.num_required_signatures]
        authority = self.market.pool_authority
        sigs = [Signature.default()] * len(signers)
        sigs[signers.index(authority.pubkey())] = authority.sign_message(to_bytes_versioned(msg))
        return VersionedTransaction.populate(msg, sigs)


def _simulation_error(sim: Any) -> dict[str, Any]:
    code = custom_error_code(sim.err)
    if code == 6001:
        error_code = "SLIPPAGE_TOLERANCE_EXCEEDED"
    elif err_json(sim.err) in ("AccountNotFound", "InsufficientFundsForFee"):
        error_code = "INSUFFICIENT_FUNDS"
    else:
        error_code = "TRANSACTION_ERROR"
    # (the shape Jupiter documents: the RPC's err and logs are not part of it)
    return {"errorCode": error_code, "error": err_message(sim.err)}


def _int_param(params: dict[str, str], name: str, *, default: int | None = None, required: bool = False, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise JupiterError(f"Query parameter {name} is required", "INVALID_REQUEST")
        assert default is not None
        return default
    try:
        value = int(raw)
    except ValueError:
        raise JupiterError(f"Query parameter {name} cannot be parsed: {raw!r} is not an integer", "INVALID_REQUEST") from None
    if not lo <= value <= hi:
        raise JupiterError(f"Query parameter {name} must be between {lo} and {hi}", "INVALID_REQUEST")
    return value


def _bool_param(params: dict[str, str], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise JupiterError(f"Query parameter {name} must be true or false", "INVALID_REQUEST")


def _nonneg_int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise JupiterError(f"{name} must be a non-negative integer", "INVALID_REQUEST") from None
    if not 0 <= number <= U64_MAX:
        raise JupiterError(f"{name} must be a non-negative integer", "INVALID_REQUEST")
    return number


def _pubkey_field(body: dict[str, Any], name: str) -> Pubkey:
    raw = body.get(name)
    if not isinstance(raw, str):
        raise JupiterError(f"{name} is required", "INVALID_REQUEST")
    try:
        return Pubkey.from_string(raw)
    except ValueError:
        raise JupiterError(f"{name} is not a valid public key", "INVALID_REQUEST") from None


# ----- HTTP --------------------------------------------------------------------------


def routes(jupiter: Jupiter):
    """Starlette endpoints for /swap/v1/quote and /swap/v1/swap."""

    async def quote(request: Request) -> JSONResponse:
        try:
            return JSONResponse(jupiter.quote(dict(request.query_params)))
        except JupiterError as exc:
            return exc.response()

    async def swap(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # (nested too deep to parse)
            return JupiterError("Request body is not valid JSON", "INVALID_REQUEST").response()
        try:
            return JSONResponse(jupiter.swap(body))
        except JupiterError as exc:
            return exc.response()

    return quote, swap
