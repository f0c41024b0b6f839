"""OpenAPI 3.1 document built from the same descriptors the routes come from.

Structure (paths, parameters, bodies, schemas) comes from the runtime descriptors; the
human text comes from the proto comments kept in the FileDescriptorSet that
``scripts/buf.sh generate`` writes with source_code_info (gen/descriptors/tradewire.binpb),
because runtime descriptors carry no comments. Schemas follow proto3 JSON: camelCase
names, 64-bit integers as strings, enums by name (numbers accepted on input), Timestamp/Duration
as strings. Security follows core.auth.permissions: credentials are optional on public methods.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor
from google.rpc import status_pb2

from tradewire.core.auth.permissions import METHOD_ACCESS, Access

from .fields import INT32_TYPES, INT64_TYPES, UINT32_TYPES, UINT64_TYPES, is_map, resolve_field_path
from .query import QueryBinder
from .routes import Binding, method_bindings

try:  # constraints documented from protovalidate rules when their descriptors are present
    from buf.validate import validate_pb2 as _validate
except ImportError:  # pragma: no cover
    _validate = None

log = logging.getLogger("tradewire.gateway")
F = FieldDescriptor
STATUS = "google.rpc.Status"
ANY = "google.protobuf.Any"


def default_descriptor_set_path() -> Path:
    """gen/descriptors/tradewire.binpb next to the generated Python package."""
    from tradewire.v1 import service_pb2

    return Path(service_pb2.__file__).resolve().parents[3] / "descriptors" / "tradewire.binpb"


# --- comments ------------------------------------------------------------------------------


def _clean(text: str) -> str:
    lines = [line.strip() for line in text.strip("\n").splitlines()]
    return "\n".join(lines).strip()


def load_comments(descriptor_set_path: str | Path | None) -> dict[str, str]:
    """Element name → comment, from a FileDescriptorSet with source_code_info.

    Keys: ``pkg.Message``, ``pkg.Message.field``, ``pkg.Enum``, ``pkg.Enum.VALUE``,
    ``pkg.Service``, ``pkg.Service.Method``.
    """
    if descriptor_set_path is None:
        return {}
    try:
        data = Path(descriptor_set_path).read_bytes()
    except OSError as exc:
        log.warning("OpenAPI: no proto comments, cannot read %s: %s", descriptor_set_path, exc)
        return {}
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    out: dict[str, str] = {}
    for file in fds.file:
        by_path: dict[tuple[int, ...], str] = {}
        for loc in file.source_code_info.location:
            text = _clean("\n".join(filter(None, [loc.leading_comments, loc.trailing_comments])))
            if text:
                by_path[tuple(loc.path)] = text
        prefix = f"{file.package}." if file.package else ""

        def put(name: str, path: tuple[int, ...]) -> None:
            if path in by_path:
                out[name] = by_path[path]

        def enum(e, name: str, path: tuple[int, ...]) -> None:
            put(name, path)
            for i, v in enumerate(e.value):
                put(f"{name}.{v.name}", (*path, 2, i))

        def message(m, name: str, path: tuple[int, ...]) -> None:
            put(name, path)
            for i, f in enumerate(m.field):
                put(f"{name}.{f.name}", (*path, 2, i))
            for i, n in enumerate(m.nested_type):
                message(n, f"{name}.{n.name}", (*path, 3, i))
            for i, e in enumerate(m.enum_type):
                enum(e, f"{name}.{e.name}", (*path, 4, i))

        for i, m in enumerate(file.message_type):
            message(m, prefix + m.name, (4, i))
        for i, e in enumerate(file.enum_type):
            enum(e, prefix + e.name, (5, i))
        for i, s in enumerate(file.service):
            put(prefix + s.name, (6, i))
            for j, m in enumerate(s.method):
                put(f"{prefix}{s.name}.{m.name}", (6, i, 2, j))
    return out


# --- schemas -------------------------------------------------------------------------------

_WKT_SCHEMAS: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "examples": ["1.5s"]},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.DoubleValue": {"type": ["number", "null"], "format": "double"},
    "google.protobuf.FloatValue": {"type": ["number", "null"], "format": "float"},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}


def ref(full_name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{full_name}"}


def _scalar_schema(fd: FieldDescriptor) -> dict[str, Any]:
    t = fd.type
    if t in INT32_TYPES:
        return {"type": "integer", "format": "int32"}
    if t in UINT32_TYPES:
        return {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
    if t in INT64_TYPES:
        return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    if t in UINT64_TYPES:
        return {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
    if t == F.TYPE_DOUBLE:
        return {"type": "number", "format": "double"}
    if t == F.TYPE_FLOAT:
        return {"type": "number", "format": "float"}
    if t == F.TYPE_BOOL:
        return {"type": "boolean"}
    if t == F.TYPE_BYTES:
        return {"type": "string", "format": "byte", "contentEncoding": "base64"}
    return {"type": "string"}


def _constraints(fd: FieldDescriptor, item: dict[str, Any], outer: dict[str, Any]) -> None:
    """protovalidate rules that JSON Schema can say (lengths, patterns, bounds, sizes)."""
    if _validate is None or not fd.GetOptions().HasExtension(_validate.field):
        return
    rules = fd.GetOptions().Extensions[_validate.field]
    kind = rules.WhichOneof("type")
    if kind == "string":
        s = rules.string
        if s.HasField("min_len"):
            item["minLength"] = s.min_len
        if s.HasField("max_len"):
            item["maxLength"] = s.max_len
        if s.HasField("pattern"):
            item["pattern"] = s.pattern
    elif kind in ("uint32", "int32", "sint32", "fixed32", "sfixed32", "double", "float"):
        r = getattr(rules, kind)
        for proto_name, schema_name in (("lte", "maximum"), ("gte", "minimum"), ("lt", "exclusiveMaximum"),
                                        ("gt", "exclusiveMinimum")):
            if r.HasField(proto_name):
                item[schema_name] = getattr(r, proto_name)
    elif kind == "repeated":
        r = rules.repeated
        if r.HasField("min_items"):
            outer["minItems"] = r.min_items
        if r.HasField("max_items"):
            outer["maxItems"] = r.max_items
    elif kind == "map":
        r = rules.map
        if r.HasField("min_pairs"):
            outer["minProperties"] = r.min_pairs
        if r.HasField("max_pairs"):
            outer["maxProperties"] = r.max_pairs


def value_schema(fd: FieldDescriptor) -> dict[str, Any]:
    """Schema of one value of ``fd`` (an element, for repeated fields)."""
    if fd.type == F.TYPE_MESSAGE:
        wkt = _WKT_SCHEMAS.get(fd.message_type.full_name)
        return dict(wkt) if wkt is not None else ref(fd.message_type.full_name)
    if fd.type == F.TYPE_ENUM:
        return ref(fd.enum_type.full_name)
    return _scalar_schema(fd)


def field_schema(fd: FieldDescriptor, comments: dict[str, str]) -> dict[str, Any]:
    if is_map(fd):
        value_fd = fd.message_type.fields_by_name["value"]
        schema: dict[str, Any] = {"type": "object", "additionalProperties": value_schema(value_fd)}
        _constraints(fd, schema, schema)
    elif fd.is_repeated:
        item = value_schema(fd)
        schema = {"type": "array", "items": item}
        _constraints(fd, item, schema)
    else:
        schema = value_schema(fd)
        _constraints(fd, schema, schema)
    description = comments.get(f"{fd.containing_type.full_name}.{fd.name}", "")
    oneof = fd.containing_oneof
    if oneof is not None and len(oneof.fields) > 1:
        others = ", ".join(f.json_name for f in oneof.fields if f is not fd)
        description = (description + "\n\n" if description else "") + f"Oneof `{oneof.name}`: not with {others}."
    if description:
        schema["description"] = description
    return schema


def message_schema(desc: Descriptor, comments: dict[str, str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "title": desc.name}
    if desc.full_name in comments:
        schema["description"] = comments[desc.full_name]
    schema["properties"] = {fd.json_name: field_schema(fd, comments) for fd in desc.fields}
    schema["additionalProperties"] = False
    return schema


def enum_schema(desc: EnumDescriptor, comments: dict[str, str]) -> dict[str, Any]:
    lines = []
    if desc.full_name in comments:
        lines.append(comments[desc.full_name])
    values = []
    for v in desc.values:
        text = comments.get(f"{desc.full_name}.{v.name}")
        values.append(f"- `{v.name}` ({v.number}){': ' + text if text else ''}")
    lines.append("\n".join(values))
    # proto3 JSON: responses carry the name, requests may give the name or the number.
    return {
        "title": desc.name,
        "anyOf": [
            {"type": "string", "enum": [v.name for v in desc.values]},
            {"type": "integer", "format": "int32", "enum": list(dict.fromkeys(v.number for v in desc.values))},
        ],
        "description": "\n\n".join(lines) + "\n\nResponses carry the name; requests may give the number instead.",
    }


def _collect(desc: Descriptor, messages: dict[str, Descriptor], enums: dict[str, EnumDescriptor]) -> None:
    if desc.full_name in messages or desc.full_name in _WKT_SCHEMAS or desc.GetOptions().map_entry:
        return
    messages[desc.full_name] = desc
    for nested in desc.nested_types:
        _collect(nested, messages, enums)
    for nested_enum in desc.enum_types:
        enums.setdefault(nested_enum.full_name, nested_enum)
    for fd in desc.fields:
        if fd.type == F.TYPE_ENUM:
            enums.setdefault(fd.enum_type.full_name, fd.enum_type)
        elif fd.type == F.TYPE_MESSAGE:
            target = fd.message_type
            if target.GetOptions().map_entry:
                value_fd = target.fields_by_name["value"]
                if value_fd.type == F.TYPE_ENUM:
                    enums.setdefault(value_fd.enum_type.full_name, value_fd.enum_type)
                elif value_fd.type == F.TYPE_MESSAGE:
                    _collect(value_fd.message_type, messages, enums)
            else:
                _collect(target, messages, enums)


def _status_schemas(comments: dict[str, str]) -> dict[str, Any]:
    status = message_schema(status_pb2.Status.DESCRIPTOR, comments)
    status["description"] = (
        "google.rpc.Status: every error body. `code` is the canonical gRPC code number; "
        "`details` carry google.rpc.ErrorInfo (with the machine-readable `reason`), "
        "BadRequest field violations, RetryInfo and QuotaFailure."
    )
    status["properties"]["code"]["description"] = "Canonical status code (google.rpc.Code)."
    status["properties"]["message"]["description"] = "Human-readable explanation."
    any_schema = {
        "type": "object",
        "title": "Any",
        "description": "A typed detail message: `@type` names it, its fields follow.",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    }
    return {STATUS: status, ANY: any_schema}


# --- operations ----------------------------------------------------------------------------


def _json_path(chain: tuple[FieldDescriptor, ...]) -> str:
    return ".".join(fd.json_name for fd in chain)


def _parameters(b: Binding, comments: dict[str, str]) -> list[dict[str, Any]]:
    desc = b.method.input_type
    params: list[dict[str, Any]] = []
    for var in b.template.variables:
        chain = resolve_field_path(desc, var)
        schema = value_schema(chain[-1])
        _constraints(chain[-1], schema, schema)
        p: dict[str, Any] = {"name": var, "in": "path", "required": True, "schema": schema}
        text = comments.get(f"{chain[-1].containing_type.full_name}.{chain[-1].name}")
        pattern = b.template.variable_patterns.get(var)
        if pattern:
            text = (text + " " if text else "") + f"Matches `{pattern}`."
        if text:
            p["description"] = text
        params.append(p)
    binder = QueryBinder(desc, set(b.template.variables), b.body)
    done: set[str] = set()
    for qf in binder.fields.values():
        if qf.path in done:
            continue
        done.add(qf.path)
        schema = field_schema(qf.leaf, comments)
        description = schema.pop("description", None)
        p = {"name": _json_path(qf.chain), "in": "query", "required": False, "schema": schema}
        if is_map(qf.leaf):
            p["style"] = "deepObject"
            p["explode"] = True
        elif qf.leaf.is_repeated:
            p["style"] = "form"
            p["explode"] = True
        if description:
            p["description"] = description
        params.append(p)
    return params


def _request_body(b: Binding, comments: dict[str, str]) -> dict[str, Any] | None:
    desc = b.method.input_type
    if not b.body:
        return None
    if b.body == "*":
        path_fields = {v.split(".")[0] for v in b.template.variables}
        if not path_fields:
            schema = ref(desc.full_name)
        else:
            schema = {
                "type": "object",
                "description": f"{desc.full_name} without the fields bound by the path "
                f"({', '.join(sorted(path_fields))}).",
                "properties": {
                    fd.json_name: field_schema(fd, comments) for fd in desc.fields if fd.name not in path_fields
                },
                "additionalProperties": False,
            }
    else:
        schema = field_schema(desc.fields_by_name[b.body], comments)
    # A rule that binds a body expects the request (or its ``body`` field) there.
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _error_response(description: str = "An error: google.rpc.Status JSON.") -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying (rate limits, unavailable executors).",
                "schema": {"type": "integer"},
            }
        },
        "content": {"application/json": {"schema": ref(STATUS)}},
    }


def _security(optional: bool = False) -> list[dict[str, list]]:
    """Either scheme authenticates; ``optional`` adds {}: no credentials at all."""
    return ([{}] if optional else []) + [{"bearerAuth": []}, {"apiKey": []}]


def _responses(b: Binding) -> dict[str, Any]:
    m = b.method
    out_desc = m.output_type
    if m.client_streaming:
        return {
            "501": _error_response(
                "Always: a client or bidirectional stream needs a full-duplex transport "
                "(native gRPC); reason DUPLEX_UNSUPPORTED."
            ),
            "default": _error_response(),
        }
    # response_body: the answer (each message of a stream) is that field of the response
    item = field_schema(out_desc.fields_by_name[b.response_body], {}) if b.response_body else ref(out_desc.full_name)
    if m.server_streaming:
        ok = {
            "description": (
                "A stream. With `Accept: text/event-stream`: Server-Sent Events, one `data:` per message "
                "(with `id:` = its sequence when present), `event: error` with a google.rpc.Status for a "
                "mid-stream error, and a final `event: end`. Otherwise newline-delimited JSON: one "
                '`{"result": message}` per line, `{"error": Status}` for a mid-stream error.'
            ),
            "content": {
                "text/event-stream": {"schema": item},
                "application/x-ndjson": {
                    "schema": {
                        "type": "object",
                        "properties": {"result": item, "error": ref(STATUS)},
                    }
                },
            },
        }
    else:
        ok = {"description": "OK", "content": {"application/json": {"schema": item}}}
    return {"200": ok, "default": _error_response()}


def openapi_document(service_descriptor: ServiceDescriptor, descriptor_set_path: str | Path | None) -> dict:
    """The OpenAPI 3.1 document for every ``google.api.http`` binding of the service."""
    comments = load_comments(descriptor_set_path)
    service = service_descriptor
    messages: dict[str, Descriptor] = {}
    enums: dict[str, EnumDescriptor] = {}
    paths: dict[str, dict[str, Any]] = {}
    op_ids: set[str] = set()
    for method in service.methods:
        _collect(method.input_type, messages, enums)
        _collect(method.output_type, messages, enums)
        comment = comments.get(f"{service.full_name}.{method.name}", "")
        for b in method_bindings(method):
            op_id = f"{service.name}_{method.name}" + (f"_{b.index + 1}" if b.index else "")
            while op_id in op_ids:
                op_id += "_"
            op_ids.add(op_id)
            op: dict[str, Any] = {
                "operationId": op_id,
                "tags": [service.name],
                "summary": comment.split("\n")[0] if comment else method.name,
            }
            if comment:
                op["description"] = comment
            if METHOD_ACCESS.get(method.name) is Access.PUBLIC:
                # The pipeline skips auth without credentials and uses them when given.
                op["security"] = _security(optional=True)
            params = _parameters(b, comments)
            if method.server_streaming and not method.client_streaming and any(
                f.name == "from_sequence" for f in method.input_type.fields
            ):
                params.append({
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "SSE resume: events after this sequence (fromSequence, when later than the one given).",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                })
            if params:
                op["parameters"] = params
            body = _request_body(b, comments)
            if body is not None:
                op["requestBody"] = body
            op["responses"] = _responses(b)
            op["x-rpc"] = f"{service.full_name}/{method.name}"
            paths.setdefault(b.template.openapi_path, {})[b.http_method.lower()] = op
    # Every message and enum of the contract's files, not only those reachable from RPCs.
    files = [service.file, *service.file.dependencies]
    for f in files:
        if f.package.startswith("google.") or f.package.startswith("buf."):
            continue
        for d in f.message_types_by_name.values():
            _collect(d, messages, enums)
        for e in f.enum_types_by_name.values():
            enums.setdefault(e.full_name, e)
    schemas: dict[str, Any] = {}
    for name in sorted(messages):
        schemas[name] = message_schema(messages[name], comments)
    for name in sorted(enums):
        schemas[name] = enum_schema(enums[name], comments)
    schemas.update(_status_schemas(comments))
    try:
        from importlib.metadata import version

        api_version = version("tradewire")
    except Exception:  # not installed as a distribution
        api_version = "0.0.0"
    info: dict[str, Any] = {"title": f"tradewire {service.name} (HTTP/JSON)", "version": api_version}
    if service.full_name in comments:
        info["description"] = comments[service.full_name]
    return {
        "openapi": "3.1.0",
        "info": info,
        "tags": [{"name": service.name, "description": comments.get(service.full_name, service.full_name)}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A JWT or an API key."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": _security(),
    }
