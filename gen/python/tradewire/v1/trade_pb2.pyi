import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TradingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADING_MODE_UNSPECIFIED: _ClassVar[TradingMode]
    TRADING_MODE_PAPER: _ClassVar[TradingMode]
    TRADING_MODE_LIVE: _ClassVar[TradingMode]

class SwapMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWAP_MODE_UNSPECIFIED: _ClassVar[SwapMode]
    SWAP_MODE_EXACT_IN: _ClassVar[SwapMode]
    SWAP_MODE_EXACT_OUT: _ClassVar[SwapMode]

class MevStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEV_STRATEGY_UNSPECIFIED: _ClassVar[MevStrategy]
    MEV_STRATEGY_NONE: _ClassVar[MevStrategy]
    MEV_STRATEGY_PRIORITY_FEE: _ClassVar[MevStrategy]
    MEV_STRATEGY_JITO_BUNDLE: _ClassVar[MevStrategy]
    MEV_STRATEGY_JITO_DONT_FRONT: _ClassVar[MevStrategy]

class TradeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADE_STATUS_UNSPECIFIED: _ClassVar[TradeStatus]
    TRADE_STATUS_RECEIVED: _ClassVar[TradeStatus]
    TRADE_STATUS_VALIDATED: _ClassVar[TradeStatus]
    TRADE_STATUS_ROUTED: _ClassVar[TradeStatus]
    TRADE_STATUS_QUOTED: _ClassVar[TradeStatus]
    TRADE_STATUS_SIGNED: _ClassVar[TradeStatus]
    TRADE_STATUS_SIMULATED: _ClassVar[TradeStatus]
    TRADE_STATUS_SUBMITTED: _ClassVar[TradeStatus]
    TRADE_STATUS_CONFIRMED: _ClassVar[TradeStatus]
    TRADE_STATUS_FILLED: _ClassVar[TradeStatus]
    TRADE_STATUS_REJECTED: _ClassVar[TradeStatus]
    TRADE_STATUS_FAILED: _ClassVar[TradeStatus]
    TRADE_STATUS_CANCELLED: _ClassVar[TradeStatus]
    TRADE_STATUS_EXPIRED: _ClassVar[TradeStatus]

class StatusKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_KIND_UNSPECIFIED: _ClassVar[StatusKind]
    STATUS_KIND_TRANSITION: _ClassVar[StatusKind]
    STATUS_KIND_HEARTBEAT: _ClassVar[StatusKind]
    STATUS_KIND_SHUTDOWN: _ClassVar[StatusKind]
TRADING_MODE_UNSPECIFIED: TradingMode
TRADING_MODE_PAPER: TradingMode
TRADING_MODE_LIVE: TradingMode
SWAP_MODE_UNSPECIFIED: SwapMode
SWAP_MODE_EXACT_IN: SwapMode
SWAP_MODE_EXACT_OUT: SwapMode
MEV_STRATEGY_UNSPECIFIED: MevStrategy
MEV_STRATEGY_NONE: MevStrategy
MEV_STRATEGY_PRIORITY_FEE: MevStrategy
MEV_STRATEGY_JITO_BUNDLE: MevStrategy
MEV_STRATEGY_JITO_DONT_FRONT: MevStrategy
TRADE_STATUS_UNSPECIFIED: TradeStatus
TRADE_STATUS_RECEIVED: TradeStatus
TRADE_STATUS_VALIDATED: TradeStatus
TRADE_STATUS_ROUTED: TradeStatus
TRADE_STATUS_QUOTED: TradeStatus
TRADE_STATUS_SIGNED: TradeStatus
TRADE_STATUS_SIMULATED: TradeStatus
TRADE_STATUS_SUBMITTED: TradeStatus
TRADE_STATUS_CONFIRMED: TradeStatus
TRADE_STATUS_FILLED: TradeStatus
TRADE_STATUS_REJECTED: TradeStatus
TRADE_STATUS_FAILED: TradeStatus
TRADE_STATUS_CANCELLED: TradeStatus
TRADE_STATUS_EXPIRED: TradeStatus
STATUS_KIND_UNSPECIFIED: StatusKind
STATUS_KIND_TRANSITION: StatusKind
STATUS_KIND_HEARTBEAT: StatusKind
STATUS_KIND_SHUTDOWN: StatusKind

class MevProtection(_message.Message):
    __slots__ = ("strategy", "compute_unit_price_micro_lamports", "compute_unit_limit", "max_priority_fee_lamports", "jito_tip_lamports")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_UNIT_PRICE_MICRO_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_UNIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FEE_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    JITO_TIP_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    strategy: MevStrategy
    compute_unit_price_micro_lamports: int
    compute_unit_limit: int
    max_priority_fee_lamports: int
    jito_tip_lamports: int
    def __init__(self, strategy: _Optional[_Union[MevStrategy, str]] = ..., compute_unit_price_micro_lamports: _Optional[int] = ..., compute_unit_limit: _Optional[int] = ..., max_priority_fee_lamports: _Optional[int] = ..., jito_tip_lamports: _Optional[int] = ...) -> None: ...

class TradeRequest(_message.Message):
    __slots__ = ("request_id", "mode", "input_mint", "output_mint", "amount", "swap_mode", "slippage_bps", "mev_protection", "deadline", "client_metadata", "max_price_impact_bps", "webhook_url")
    class ClientMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INPUT_MINT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MINT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SWAP_MODE_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_BPS_FIELD_NUMBER: _ClassVar[int]
    MEV_PROTECTION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_METADATA_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_IMPACT_BPS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    mode: TradingMode
    input_mint: str
    output_mint: str
    amount: str
    swap_mode: SwapMode
    slippage_bps: int
    mev_protection: MevProtection
    deadline: _timestamp_pb2.Timestamp
    client_metadata: _containers.ScalarMap[str, str]
    max_price_impact_bps: int
    webhook_url: str
    def __init__(self, request_id: _Optional[str] = ..., mode: _Optional[_Union[TradingMode, str]] = ..., input_mint: _Optional[str] = ..., output_mint: _Optional[str] = ..., amount: _Optional[str] = ..., swap_mode: _Optional[_Union[SwapMode, str]] = ..., slippage_bps: _Optional[int] = ..., mev_protection: _Optional[_Union[MevProtection, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., client_metadata: _Optional[_Mapping[str, str]] = ..., max_price_impact_bps: _Optional[int] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class Fees(_message.Message):
    __slots__ = ("base_fee_lamports", "priority_fee_lamports", "jito_tip_lamports", "ata_rent_lamports", "total_lamports", "rent_refunded_lamports")
    BASE_FEE_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FEE_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    JITO_TIP_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    ATA_RENT_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    RENT_REFUNDED_LAMPORTS_FIELD_NUMBER: _ClassVar[int]
    base_fee_lamports: int
    priority_fee_lamports: int
    jito_tip_lamports: int
    ata_rent_lamports: int
    total_lamports: int
    rent_refunded_lamports: int
    def __init__(self, base_fee_lamports: _Optional[int] = ..., priority_fee_lamports: _Optional[int] = ..., jito_tip_lamports: _Optional[int] = ..., ata_rent_lamports: _Optional[int] = ..., total_lamports: _Optional[int] = ..., rent_refunded_lamports: _Optional[int] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class TradeError(_message.Message):
    __slots__ = ("code", "reason", "message", "field_violations", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TradeResult(_message.Message):
    __slots__ = ("request_id", "trade_id", "mode", "status", "input_mint", "output_mint", "swap_mode", "amount_in", "amount_out", "quoted_amount_out", "other_amount_threshold", "executed_price", "price_impact_pct", "realized_slippage_bps", "fees", "signature", "slot", "created_at", "updated_at", "error", "client_metadata", "requested_amount")
    class ClientMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_MINT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MINT_FIELD_NUMBER: _ClassVar[int]
    SWAP_MODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IN_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_OUT_FIELD_NUMBER: _ClassVar[int]
    QUOTED_AMOUNT_OUT_FIELD_NUMBER: _ClassVar[int]
    OTHER_AMOUNT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_IMPACT_PCT_FIELD_NUMBER: _ClassVar[int]
    REALIZED_SLIPPAGE_BPS_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    trade_id: str
    mode: TradingMode
    status: TradeStatus
    input_mint: str
    output_mint: str
    swap_mode: SwapMode
    amount_in: str
    amount_out: str
    quoted_amount_out: str
    other_amount_threshold: str
    executed_price: str
    price_impact_pct: str
    realized_slippage_bps: int
    fees: Fees
    signature: str
    slot: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    error: TradeError
    client_metadata: _containers.ScalarMap[str, str]
    requested_amount: str
    def __init__(self, request_id: _Optional[str] = ..., trade_id: _Optional[str] = ..., mode: _Optional[_Union[TradingMode, str]] = ..., status: _Optional[_Union[TradeStatus, str]] = ..., input_mint: _Optional[str] = ..., output_mint: _Optional[str] = ..., swap_mode: _Optional[_Union[SwapMode, str]] = ..., amount_in: _Optional[str] = ..., amount_out: _Optional[str] = ..., quoted_amount_out: _Optional[str] = ..., other_amount_threshold: _Optional[str] = ..., executed_price: _Optional[str] = ..., price_impact_pct: _Optional[str] = ..., realized_slippage_bps: _Optional[int] = ..., fees: _Optional[_Union[Fees, _Mapping]] = ..., signature: _Optional[str] = ..., slot: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[TradeError, _Mapping]] = ..., client_metadata: _Optional[_Mapping[str, str]] = ..., requested_amount: _Optional[str] = ...) -> None: ...

class ExecutionStatus(_message.Message):
    __slots__ = ("request_id", "sequence", "stage", "percent_complete", "message", "timestamp", "terminal", "result", "kind")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sequence: int
    stage: TradeStatus
    percent_complete: int
    message: str
    timestamp: _timestamp_pb2.Timestamp
    terminal: bool
    result: TradeResult
    kind: StatusKind
    def __init__(self, request_id: _Optional[str] = ..., sequence: _Optional[int] = ..., stage: _Optional[_Union[TradeStatus, str]] = ..., percent_complete: _Optional[int] = ..., message: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., terminal: _Optional[bool] = ..., result: _Optional[_Union[TradeResult, _Mapping]] = ..., kind: _Optional[_Union[StatusKind, str]] = ...) -> None: ...
