"""Structured logs: one JSON object per line, with the call's ids when there is a call.

Two paths, one format (``ts``, ``level``, ``logger``, ``msg``, then fields):
- the hot path — one line per call and per trade transition — is built as one dict and one
  ``orjson.dumps`` and flushed once per event-loop pass (bench/PROFILE.md: the logging
  module's record/handler/formatter chain cost several times more per line);
- everything else (libraries, warnings, tracebacks) goes through the standard logging module.

Both add the process's own fields (a worker's ``worker`` and ``pid``: several workers write
to one stream), bound once by configure_logging.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any

import orjson

from tradewire.core.audit.events import redacted

# The ids of the call being served (request_id, correlation_id, trace_id), added to every
# line logged while serving it, wherever in core the line comes from.
call_fields: ContextVar[dict[str, str]] = ContextVar("tradewire_call_fields", default={})

# Attributes every LogRecord has; anything else passed via ``extra=`` is a field.
# (uvicorn adds ``color_message``, the message with terminal colour codes: not for a JSON line)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName",
                                                                        "color_message"}


_second: list = [0, ""]  # the last whole second formatted, reused by every line within it


def _timestamp() -> str:
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """The standard path's lines. Their text comes from libraries too, which may quote what a
    client sent (grpcio quotes a header value it cannot decode): a message, traceback or field
    holding something shaped like a credential is written as the audit's REDACTED."""

    def __init__(self, process_fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.process_fields = dict(process_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redacted(record.getMessage()),
            **self.process_fields,
        }
        entry.update(call_fields.get())
        entry.update({k: redacted(v) if isinstance(v, str) else v for k, v in vars(record).items()
                      if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = redacted(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class _UndecodableHeaderLine(logging.Filter):
    """grpcio logs each request header value that is not UTF-8 (it then reads it as Latin-1) as
    an ERROR with a traceback, quoting the value: a client's slip, not a server fault, and the
    value may be a credential. One warning line without the value instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "grpc._cython.cygrpc" and str(record.msg).startswith("Invalid encoding on"):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a request header value that is not UTF-8 was read as Latin-1 (value not logged)", (), None, None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# Where configure_logging sends the hot lines: (write, flush, minimum level number, the
# process's fields), or None before it ran (then event loggers go through the standard
# logging module).
_hot_sink: list = [None]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_flush_pending: list = [None]  # the loop a flush is scheduled on


def _flush_soon(flush) -> None:
    """Flush once per event-loop iteration instead of once per line (a write syscall each:
    the hottest leaf of a transition). Lines reach the file before the loop runs anything
    else; outside a running loop (threads, scripts) every line is flushed at once."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    if _flush_pending[0] is loop:
        return
    _flush_pending[0] = loop  # (a loop closed with a flush pending is simply replaced)
    loop.call_soon(_do_flush, flush)


def _do_flush(flush) -> None:
    _flush_pending[0] = None
    try:
        flush()
    except (OSError, ValueError):  # a closed stream (tests, shutdown): nothing left to flush
        pass


class _EventLogger:
    """The per-call and per-transition lines (see the module docstring)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> None:
        sink = _hot_sink[0]
        if sink is None:  # logging not configured (library use, scripts): the standard path
            logging.getLogger(self.name).log(_LEVELS[level], event, extra=fields)
            return
        write, flush, minimum, process_fields = sink
        if _LEVELS[level] < minimum:
            return
        line = {"ts": _timestamp(), "level": level, "logger": self.name, "msg": event, **process_fields}
        line.update(call_fields.get())
        line.update(fields)
        try:
            write(orjson.dumps(line) + b"\n")
        except (OSError, ValueError):  # (a closed terminal or pipe) a log line never fails a call or trade
            return
        _flush_soon(flush)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)


def event_logger(name: str) -> Any:
    """A fast structured logger for per-call and per-transition lines."""
    return _EventLogger(name)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is not SystemExit:
        logging.getLogger("tradewire.errors").error(
            "uncaught exception in thread %s", args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_unraisable(unraisable) -> None:
    logging.getLogger("tradewire.errors").error(
        "%s: %r", unraisable.err_msg or "Exception ignored in", unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))


def _route_stray_output_through_logging() -> None:
    """Warnings, a thread's uncaught exception and an exception ignored in ``__del__`` are
    written by the interpreter as raw text on stderr, between the JSON lines: each becomes a
    line of its own here. (A hook someone else installed, a test runner's, is left to them.)"""
    logging.captureWarnings(True)
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _log_thread_exception
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _log_unraisable


def configure_logging(level: str = "INFO", stream=None, process_fields: dict[str, Any] | None = None) -> None:
    """JSON lines to ``stream`` (stderr); ``process_fields`` go into every line (e.g. a worker's
    ``worker`` and ``pid``), fixed here so that no line computes them."""
    stream = stream or sys.stderr
    process_fields = dict(process_fields or {})
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(process_fields))
    handler.addFilter(_UndecodableHeaderLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _route_stray_output_through_logging()
    for noisy in ("uvicorn.access",):  # tradewire writes its own access line per call
        logging.getLogger(noisy).disabled = True
    for chatty in ("httpx", "httpcore"):  # their INFO lines carry full URLs, which may hold an RPC API key
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # OpenTelemetry's W3C parsing warns about every malformed traceparent or tracestate a caller
    # sends, quoting it (up to the whole header): a line per call, written as the caller likes.
    # The header is then ignored, as it should be; nothing else logs there.
    for quoting in ("opentelemetry.trace.propagation.tracecontext", "opentelemetry.trace.span"):
        logging.getLogger(quoting).setLevel(logging.ERROR)
    binary = getattr(stream, "buffer", None)
    minimum = root.level  # the number setLevel resolved
    if binary is not None:
        _hot_sink[0] = (binary.write, binary.flush, minimum, process_fields)
    else:
        _hot_sink[0] = (lambda raw: stream.write(raw.decode()), stream.flush, minimum, process_fields)
