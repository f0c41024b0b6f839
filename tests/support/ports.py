import socket
import time
from collections.abc import Callable


# Ports handed out in this test process: the kernel may give a port it just freed again, and two
# calls in a row (a gateway's gRPC and HTTP ports) then named one port twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, not handed out before in this process."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            break
    _handed_out.add(port)
    return port


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0, interval_s: float = 0.05,
               what: str = "condition") -> None:
    """Poll ``predicate`` until it is true or the deadline passes (never a blind sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
