"""The tests' free_port never names one port twice in a process, even when the kernel offers a
port it just freed again (a gateway's gRPC and HTTP ports came out equal: a refused start)."""

from collections.abc import Iterator

from support import ports


class KernelOffering:
    """A socket whose ephemeral port comes from ``offers``."""

    offers: Iterator[int]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def bind(self, address):
        self.port = next(self.offers)

    def getsockname(self):
        return ("127.0.0.1", self.port)


def test_a_port_offered_again_is_not_handed_out_twice(monkeypatch):
    KernelOffering.offers = iter([61001, 61001, 61002])
    monkeypatch.setattr(ports.socket, "socket", KernelOffering)
    assert [ports.free_port(), ports.free_port()] == [61001, 61002]
