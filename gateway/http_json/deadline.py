"""An HTTP/JSON call's deadline: the ``X-Server-Timeout`` header, as Google's HTTP/JSON APIs
take it — a decimal number of seconds (``0.5``, ``30``), counted from the request's arrival.

It sets the call's deadline as ``grpc-timeout`` and ``connect-timeout-ms`` do on the other
protocols: core stops a trade not yet sent when it passes (the trade ends EXPIRED), and the
call is cut off and answered DEADLINE_EXCEEDED (HTTP 504, gateway/deadlines.py), as a Connect
call is. Without the header a call has no deadline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tradewire.core.errors import invalid, shortened

HEADER = "x-server-timeout"
# Positive, at most 7 digits before the point (under 10^7 s, about 115 days: the range of
# Connect's 10-digit connect-timeout-ms) and 9 after it (nanoseconds, gRPC's finest unit).
_SECONDS = re.compile(r"(?![0.]*$)[0-9]{1,7}(?:\.[0-9]{1,9})?")
_FORM = "a positive decimal number of seconds such as 0.5 or 30, at most 7 digits before the point and 9 after"


def requested_deadline(headers: Mapping[str, str], started: float) -> float | None:
    """The call's deadline (a time.monotonic() value) from its X-Server-Timeout, counted from
    ``started``; None without the header. A value not in range is refused (INVALID_ARGUMENT);
    so is the header sent twice (its values arrive joined by a comma)."""
    value = headers.get(HEADER)
    if value is None:
        return None
    if not _SECONDS.fullmatch(value):
        raise invalid(HEADER, f"must be {_FORM}; got {shortened(value)!r}", reason="MALFORMED_REQUEST")
    return started + float(value)

