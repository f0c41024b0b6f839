"""gRPC server reflection, both versions clients ask for: ``grpc.reflection.v1`` (what current
grpcurl, buf curl and Postman try first) and ``grpc.reflection.v1alpha`` (what older ones know).

grpcio-reflection ships only v1alpha. v1 is the same protocol — the same messages and fields
under another package — so one servicer answers both, and v1's descriptor is v1alpha's with
its package renamed (so ``describe grpc.reflection.v1.ServerReflection`` works too)."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1ALPHA_PACKAGE, _V1_PACKAGE = "grpc.reflection.v1alpha", "grpc.reflection.v1"


def enable_reflection(server: grpc.aio.Server, service_names: tuple[str, ...], pool) -> None:
    """Serve reflection v1 and v1alpha on ``server`` for ``service_names`` (both reflection
    services are added to the list), from ``pool``."""
    _add_v1_descriptor(descriptor_pool.Default())
    names = (*service_names, V1_SERVICE_NAME, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME, {"ServerReflectionInfo": v1}),))


def _add_v1_descriptor(pool) -> None:
    """grpc/reflection/v1/reflection.proto in ``pool``, made from the v1alpha file (once)."""
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = _V1_PACKAGE
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old):]
    for method in proto.service[0].method:
        method.input_type = new + method.input_type[len(old):]
        method.output_type = new + method.output_type[len(old):]
    pool.Add(proto)
