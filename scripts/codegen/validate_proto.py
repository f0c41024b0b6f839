"""Rebuild ``buf/validate/validate.proto`` from the descriptor shipped in the protovalidate wheel.

``buf dep update`` needs the network, and no package ships validate.proto as source, but
the protovalidate wheel embeds its serialized FileDescriptorProto. This prints that
descriptor back as .proto source. Field options (the built-in CEL rule annotations) are
left out: protovalidate enforces the rules from its own runtime copy, and our protos only
need the message and extension declarations to compile.

Usage: python validate_proto.py OUTPUT_PATH
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import protovalidate
from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}
_MAX_FIELD = 536870911


def embedded_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The first bytes literal passed to ``file_desc(...)`` in the wheel's generated module."""
    source = Path(protovalidate.__file__).with_name("_gen").joinpath("buf", "validate", "validate_pb.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "file_desc":
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, bytes):
                return descriptor_pb2.FileDescriptorProto.FromString(first.value)
    raise SystemExit("no embedded validate.proto descriptor found in protovalidate")


def _type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return _SCALARS.get(field.type) or field.type_name  # fully qualified ".pkg.Name" is valid


def _range(start: int, end: int) -> str:  # descriptor ranges are end-exclusive
    last = end - 1
    return str(start) if last == start else f"{start} to {'max' if last >= _MAX_FIELD else last}"


def _field(field, syntax: str, indent: str, maps: dict[str, descriptor_pb2.DescriptorProto]) -> str:
    if field.type_name in maps:
        entry = maps[field.type_name]
        key, value = entry.field[0], entry.field[1]
        return f"{indent}map<{_type_name(key)}, {_type_name(value)}> {field.name} = {field.number};"
    label = ""
    if field.label == F.LABEL_REPEATED:
        label = "repeated "
    elif syntax == "proto2":
        label = "required " if field.label == F.LABEL_REQUIRED else "optional "
    elif field.proto3_optional:
        label = "optional "
    return f"{indent}{label}{_type_name(field)} {field.name} = {field.number};"


def _enum(enum, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  {v.name} = {v.number};" for v in enum.value]
    for r in enum.reserved_range:  # enum ranges are end-inclusive
        lines.append(f"{indent}  reserved {r.start if r.start == r.end else f'{r.start} to {r.end}'};")
    lines += [f'{indent}  reserved "{name}";' for name in enum.reserved_name]
    return [*lines, f"{indent}}}"]


def _message(msg, syntax: str, package: str, indent: str) -> list[str]:
    prefix = f".{package}.{msg.name}."
    maps = {prefix + n.name: n for n in msg.nested_type if n.options.map_entry}
    lines = [f"{indent}message {msg.name} {{"]
    inner = indent + "  "
    for enum in msg.enum_type:
        lines += _enum(enum, inner)
    for nested in msg.nested_type:
        if not nested.options.map_entry:
            lines += _message(nested, syntax, f"{package}.{msg.name}", inner)
    real_oneofs = {i for i, f in enumerate(msg.field) if f.HasField("oneof_index") and not f.proto3_optional}
    emitted_oneofs: set[int] = set()
    for i, field in enumerate(msg.field):
        if i in real_oneofs:
            idx = field.oneof_index
            if idx in emitted_oneofs:
                continue
            emitted_oneofs.add(idx)
            lines.append(f"{inner}oneof {msg.oneof_decl[idx].name} {{")
            for member in msg.field:
                if member.HasField("oneof_index") and member.oneof_index == idx and not member.proto3_optional:
                    lines.append(f"{inner}  {_type_name(member)} {member.name} = {member.number};")
            lines.append(f"{inner}}}")
        else:
            lines.append(_field(field, syntax, inner, maps))
    for r in msg.extension_range:
        lines.append(f"{inner}extensions {_range(r.start, r.end)};")
    for r in msg.reserved_range:
        lines.append(f"{inner}reserved {_range(r.start, r.end)};")
    lines += [f'{inner}reserved "{name}";' for name in msg.reserved_name]
    return [*lines, f"{indent}}}"]


def render(fd: descriptor_pb2.FileDescriptorProto) -> str:
    syntax = fd.syntax or "proto2"
    lines = [
        "// Generated at build time from the descriptor embedded in the protovalidate wheel.",
        "// Rule annotations are omitted; protovalidate enforces rules from its runtime copy.",
        f'syntax = "{syntax}";',
        "",
        f"package {fd.package};",
        "",
    ]
    lines += [f'import "{dep}";' for dep in fd.dependency]
    lines.append("")
    for enum in fd.enum_type:
        lines += _enum(enum, "")
    for msg in fd.message_type:
        lines += _message(msg, syntax, fd.package, "")
    by_extendee: dict[str, list] = {}
    for ext in fd.extension:
        by_extendee.setdefault(ext.extendee, []).append(ext)
    for extendee, exts in by_extendee.items():
        lines.append(f"extend {extendee} {{")
        lines += [_field(ext, syntax, "  ", {}) for ext in exts]
        lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(embedded_descriptor()))


if __name__ == "__main__":
    main()
