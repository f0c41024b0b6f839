import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tradewire.v1 import trade_pb2 as _trade_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVING_STATUS_UNSPECIFIED: _ClassVar[ServingStatus]
    SERVING_STATUS_SERVING: _ClassVar[ServingStatus]
    SERVING_STATUS_DEGRADED: _ClassVar[ServingStatus]
    SERVING_STATUS_NOT_SERVING: _ClassVar[ServingStatus]
SERVING_STATUS_UNSPECIFIED: ServingStatus
SERVING_STATUS_SERVING: ServingStatus
SERVING_STATUS_DEGRADED: ServingStatus
SERVING_STATUS_NOT_SERVING: ServingStatus

class StreamExecutionStatusRequest(_message.Message):
    __slots__ = ("request_id", "from_sequence")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    from_sequence: int
    def __init__(self, request_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class GetTradeRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class CancelTradeRequest(_message.Message):
    __slots__ = ("request_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTradeResponse(_message.Message):
    __slots__ = ("request_id", "status")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    status: _trade_pb2.TradeStatus
    def __init__(self, request_id: _Optional[str] = ..., status: _Optional[_Union[_trade_pb2.TradeStatus, str]] = ...) -> None: ...

class ExecuteTradeBatchRequest(_message.Message):
    __slots__ = ("trades", "atomic_validation")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_VALIDATION_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[_trade_pb2.TradeRequest]
    atomic_validation: bool
    def __init__(self, trades: _Optional[_Iterable[_Union[_trade_pb2.TradeRequest, _Mapping]]] = ..., atomic_validation: _Optional[bool] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("index", "result", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    result: _trade_pb2.TradeResult
    error: _trade_pb2.TradeError
    def __init__(self, index: _Optional[int] = ..., result: _Optional[_Union[_trade_pb2.TradeResult, _Mapping]] = ..., error: _Optional[_Union[_trade_pb2.TradeError, _Mapping]] = ...) -> None: ...

class ExecuteTradeBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ...) -> None: ...

class TradeSessionRequest(_message.Message):
    __slots__ = ("trade", "cancel")
    TRADE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    trade: _trade_pb2.TradeRequest
    cancel: CancelTradeRequest
    def __init__(self, trade: _Optional[_Union[_trade_pb2.TradeRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelTradeRequest, _Mapping]] = ...) -> None: ...

class TradeSessionResponse(_message.Message):
    __slots__ = ("status", "error", "cancelled")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    status: _trade_pb2.ExecutionStatus
    error: SessionError
    cancelled: CancelTradeResponse
    def __init__(self, status: _Optional[_Union[_trade_pb2.ExecutionStatus, _Mapping]] = ..., error: _Optional[_Union[SessionError, _Mapping]] = ..., cancelled: _Optional[_Union[CancelTradeResponse, _Mapping]] = ...) -> None: ...

class SessionError(_message.Message):
    __slots__ = ("request_id", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    error: _trade_pb2.TradeError
    def __init__(self, request_id: _Optional[str] = ..., error: _Optional[_Union[_trade_pb2.TradeError, _Mapping]] = ...) -> None: ...

class GetTradeHistoryRequest(_message.Message):
    __slots__ = ("mode", "mint", "statuses", "start_time", "end_time", "page_size", "page_token")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MINT_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    mode: _trade_pb2.TradingMode
    mint: str
    statuses: _containers.RepeatedScalarFieldContainer[_trade_pb2.TradeStatus]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, mode: _Optional[_Union[_trade_pb2.TradingMode, str]] = ..., mint: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_trade_pb2.TradeStatus, str]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetTradeHistoryResponse(_message.Message):
    __slots__ = ("trades", "next_page_token")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[_trade_pb2.TradeResult]
    next_page_token: str
    def __init__(self, trades: _Optional[_Iterable[_Union[_trade_pb2.TradeResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetPositionsRequest(_message.Message):
    __slots__ = ("mode", "mint")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MINT_FIELD_NUMBER: _ClassVar[int]
    mode: _trade_pb2.TradingMode
    mint: str
    def __init__(self, mode: _Optional[_Union[_trade_pb2.TradingMode, str]] = ..., mint: _Optional[str] = ...) -> None: ...

class GetMarketRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarketMint(_message.Message):
    __slots__ = ("symbol", "address", "decimals", "min_amount", "max_amount")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DECIMALS_FIELD_NUMBER: _ClassVar[int]
    MIN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    address: str
    decimals: int
    min_amount: str
    max_amount: str
    def __init__(self, symbol: _Optional[str] = ..., address: _Optional[str] = ..., decimals: _Optional[int] = ..., min_amount: _Optional[str] = ..., max_amount: _Optional[str] = ...) -> None: ...

class MarketPair(_message.Message):
    __slots__ = ("base_mint", "quote_mint")
    BASE_MINT_FIELD_NUMBER: _ClassVar[int]
    QUOTE_MINT_FIELD_NUMBER: _ClassVar[int]
    base_mint: str
    quote_mint: str
    def __init__(self, base_mint: _Optional[str] = ..., quote_mint: _Optional[str] = ...) -> None: ...

class GetMarketResponse(_message.Message):
    __slots__ = ("mints", "pairs", "valuation_mint")
    MINTS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    VALUATION_MINT_FIELD_NUMBER: _ClassVar[int]
    mints: _containers.RepeatedCompositeFieldContainer[MarketMint]
    pairs: _containers.RepeatedCompositeFieldContainer[MarketPair]
    valuation_mint: str
    def __init__(self, mints: _Optional[_Iterable[_Union[MarketMint, _Mapping]]] = ..., pairs: _Optional[_Iterable[_Union[MarketPair, _Mapping]]] = ..., valuation_mint: _Optional[str] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("mode", "mint", "symbol", "amount", "average_cost", "cost_basis", "market_price", "market_value", "realized_pnl", "unrealized_pnl", "updated_at", "valuation_error")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MINT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_COST_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_FIELD_NUMBER: _ClassVar[int]
    MARKET_PRICE_FIELD_NUMBER: _ClassVar[int]
    MARKET_VALUE_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VALUATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    mode: _trade_pb2.TradingMode
    mint: str
    symbol: str
    amount: str
    average_cost: str
    cost_basis: str
    market_price: str
    market_value: str
    realized_pnl: str
    unrealized_pnl: str
    updated_at: _timestamp_pb2.Timestamp
    valuation_error: str
    def __init__(self, mode: _Optional[_Union[_trade_pb2.TradingMode, str]] = ..., mint: _Optional[str] = ..., symbol: _Optional[str] = ..., amount: _Optional[str] = ..., average_cost: _Optional[str] = ..., cost_basis: _Optional[str] = ..., market_price: _Optional[str] = ..., market_value: _Optional[str] = ..., realized_pnl: _Optional[str] = ..., unrealized_pnl: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valuation_error: _Optional[str] = ...) -> None: ...

class GetPositionsResponse(_message.Message):
    __slots__ = ("positions", "valuation_mint", "total_market_value", "total_pnl", "unvalued_positions")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    VALUATION_MINT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MARKET_VALUE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PNL_FIELD_NUMBER: _ClassVar[int]
    UNVALUED_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    valuation_mint: str
    total_market_value: str
    total_pnl: str
    unvalued_positions: int
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., valuation_mint: _Optional[str] = ..., total_market_value: _Optional[str] = ..., total_pnl: _Optional[str] = ..., unvalued_positions: _Optional[int] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ComponentHealth(_message.Message):
    __slots__ = ("name", "status", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: ServingStatus
    message: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[ServingStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class CallerStatus(_message.Message):
    __slots__ = ("principal", "scopes", "rate_limit_remaining", "rate_limit_limit", "in_flight", "owner")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_REMAINING_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    principal: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    rate_limit_remaining: int
    rate_limit_limit: int
    in_flight: int
    owner: str
    def __init__(self, principal: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., rate_limit_remaining: _Optional[int] = ..., rate_limit_limit: _Optional[int] = ..., in_flight: _Optional[int] = ..., owner: _Optional[str] = ...) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("status", "components", "version", "server_time", "caller", "credentials_refused")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    status: ServingStatus
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    version: str
    server_time: _timestamp_pb2.Timestamp
    caller: CallerStatus
    credentials_refused: str
    def __init__(self, status: _Optional[_Union[ServingStatus, str]] = ..., components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ..., version: _Optional[str] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., caller: _Optional[_Union[CallerStatus, _Mapping]] = ..., credentials_refused: _Optional[str] = ...) -> None: ...
