"""What every adapter shares: the service's RPCs as descriptors, and the call into core."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from tradewire.v1 import service_pb2

SERVICE: ServiceDescriptor = service_pb2.DESCRIPTOR.services_by_name["TradeExecutionService"]
SERVICE_NAME = SERVICE.full_name


@dataclass(frozen=True)
class Rpc:
    name: str
    descriptor: MethodDescriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{SERVICE_NAME}/{self.name}"


RPCS: tuple[Rpc, ...] = tuple(
    Rpc(m.name, m, m.client_streaming, m.server_streaming) for m in SERVICE.methods
)
