"""HTTP bindings from ``google.api.http`` annotations: template parsing and matching.

Templates follow google/api/http.proto (the grammar grpc-gateway and Envoy implement)::

    Template = "/" Segments [ Verb ] ;   Segment = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;   Verb = ":" LITERAL ;

Each binding compiles to one regular expression matched against the *raw* (still
percent-encoded) path, so an encoded ``%2F`` or ``%3A`` never splits a segment or fakes a
custom verb; captured values are decoded afterwards. We keep our own table (instead of
Starlette routes) so that 404 and 405 answers are ours, as google.rpc.Status JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL_BAD = re.compile(r"[{}*/]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_SLASH = re.compile(r"(%2[Ff])")


@dataclass(frozen=True)
class PathTemplate:
    """A parsed template: its regex, the field path of each variable, and a display form."""

    source: str
    regex: re.Pattern[str]
    variables: tuple[str, ...]  # field paths, in group order (g0, g1, ...)
    openapi_path: str  # "/v1/trades/{request_id}:cancel"
    variable_patterns: dict[str, str]  # field path → its segment pattern when not plain "*"
    literal_weight: int  # for ordering: more literal text = more specific
    multi_segment: frozenset[str] = frozenset()  # variables whose template spans segments ("a/*", "**")

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Decoded variable values when ``raw_path`` matches, else None.

        Raises UnicodeDecodeError when a captured value is not valid percent-encoded UTF-8.
        """
        m = self.regex.match(raw_path)
        return None if m is None else self.decode(m)

    def decode(self, m: re.Match[str]) -> dict[str, str]:
        return {var: _unescape(m.group(i + 1), var in self.multi_segment) for i, var in enumerate(self.variables)}


def _unescape(raw: str, multi_segment: bool) -> str:
    """A variable's value, percent-decoded as http.proto says: all of it for a single-segment
    variable; for a multi-segment one all but "%2F"/"%2f", which would otherwise read as a segment
    boundary (and name another resource). A '%' that starts no escape is refused, as grpc-gateway
    and Envoy refuse it, rather than reaching the field as it stands."""
    bad = _BAD_ESCAPE.search(raw)
    if bad is not None:
        raise UnicodeDecodeError("utf-8", raw.encode(), bad.start(), bad.start() + 1, "malformed percent-escape")
    if not multi_segment:
        return unquote(raw, errors="strict")
    # (a UTF-8 sequence never holds the byte 0x2F, so no character is split here)
    parts = _ENCODED_SLASH.split(raw)
    return "".join(part if i % 2 else unquote(part, errors="strict") for i, part in enumerate(parts))


def _split_verb(template: str) -> tuple[str, str | None]:
    depth = 0
    last_slash = -1
    colon = -1
    for i, ch in enumerate(template):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and ch == "/":
            last_slash = i
            colon = -1
        elif depth == 0 and ch == ":" and colon < 0 and i > last_slash:
            colon = i
    if depth != 0:
        raise ValueError(f"unbalanced braces in path template {template!r}")
    if colon < 0:
        return template, None
    verb = template[colon + 1 :]
    if not verb or _LITERAL_BAD.search(verb):
        raise ValueError(f"bad custom verb in path template {template!r}")
    return template[:colon], verb


def _split_segments(path: str) -> list[str]:
    """Split on '/' outside braces."""
    out: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(path):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "/" and depth == 0:
            out.append(path[start:i])
            start = i + 1
    out.append(path[start:])
    return out


def _segments_regex(segments: list[str], template: str) -> tuple[str, int]:
    parts: list[str] = []
    weight = 0
    for i, seg in enumerate(segments):
        if seg == "*":
            parts.append("[^/]+")
        elif seg == "**":
            if i != len(segments) - 1:
                raise ValueError(f"'**' must be the last segment in {template!r}")
            parts.append(".*")
        elif not seg or _LITERAL_BAD.search(seg):
            raise ValueError(f"bad segment {seg!r} in path template {template!r}")
        else:
            parts.append(re.escape(seg))
            weight += len(seg) + 1
    return "/".join(parts), weight


def parse_template(template: str) -> PathTemplate:
    """Compiles one ``google.api.http`` path template; raises ValueError when malformed."""
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template!r}")
    path, verb = _split_verb(template)
    regex_parts: list[str] = []
    openapi_parts: list[str] = []
    variables: list[str] = []
    multi: set[str] = set()
    patterns: dict[str, str] = {}
    weight = 0
    top = _split_segments(path[1:])
    flat = [sub for seg in top for sub in (_split_segments(seg[1:-1].partition("=")[2] or "*")
                                           if seg.startswith("{") else [seg])]
    if "**" in flat[:-1]:
        raise ValueError(f"'**' must be the last segment in {template!r}")
    for seg in top:
        if seg.startswith("{"):
            if not seg.endswith("}"):
                raise ValueError(f"bad variable {seg!r} in path template {template!r}")
            inner = seg[1:-1]
            name, _, sub = inner.partition("=")
            if not _IDENT.match(name):
                raise ValueError(f"bad field path {name!r} in path template {template!r}")
            if name in variables:
                raise ValueError(f"field {name!r} bound twice in {template!r}")
            sub_segments = _split_segments(sub) if sub else ["*"]
            if any(s.startswith("{") for s in sub_segments):
                raise ValueError(f"nested variable in path template {template!r}")
            sub_regex, sub_weight = _segments_regex(sub_segments, template)
            weight += sub_weight
            regex_parts.append(f"({sub_regex})")
            openapi_parts.append("{" + name + "}")
            variables.append(name)
            if sub and sub != "*":
                patterns[name] = sub
            if len(sub_segments) > 1 or "**" in sub_segments:
                multi.add(name)
        else:
            seg_regex, seg_weight = _segments_regex([seg], template)
            weight += seg_weight
            regex_parts.append(seg_regex)
            openapi_parts.append(seg)
    regex = "^/" + "/".join(regex_parts)
    display = "/" + "/".join(openapi_parts)
    if verb is not None:
        regex += ":" + re.escape(verb)
        display += ":" + verb
        weight += len(verb) + 1
    return PathTemplate(
        source=template,
        regex=re.compile(regex + "$", re.DOTALL),
        variables=tuple(variables),
        openapi_path=display,
        variable_patterns=patterns,
        literal_weight=weight,
        multi_segment=frozenset(multi),
    )


@dataclass(frozen=True)
class Binding:
    """One (HTTP method, path template) of an RPC, with its ``body`` / ``response_body``."""

    method: MethodDescriptor
    http_method: str  # upper case
    template: PathTemplate
    body: str  # "" (no body), "*" or a field path
    response_body: str
    index: int  # 0 = the main rule, 1.. = additional_bindings

    @property
    def rpc_name(self) -> str:
        return self.method.name


def _rule_pattern(rule: http_pb2.HttpRule) -> tuple[str, str] | None:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


def method_bindings(method: MethodDescriptor) -> list[Binding]:
    """The main rule plus its ``additional_bindings`` (one level deep, per http.proto)."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    out: list[Binding] = []
    for index, r in enumerate([rule, *rule.additional_bindings]):
        pattern = _rule_pattern(r)
        if pattern is None:
            continue
        http_method, path = pattern
        out.append(Binding(method, http_method, parse_template(path), r.body, r.response_body, index))
    return out


@dataclass
class RouteTable:
    """Matches (method, raw path) against every binding; distinguishes 404 from 405."""

    entries: list[tuple[PathTemplate, str, object]] = field(default_factory=list)

    @classmethod
    def build(cls, items: Iterable[tuple[PathTemplate, str, object]]) -> "RouteTable":
        # Most literal text first, so "/v1/trades:batch" wins over "/v1/{name}" style rules.
        ordered = sorted(items, key=lambda item: -item[0].literal_weight)
        return cls(entries=list(ordered))

    def match(self, http_method: str, raw_path: str) -> tuple[object | None, dict[str, str], list[str]]:
        """``(target, path_values, [])`` on a match; ``(None, {}, allowed_methods)`` otherwise
        (an empty allowed list means no binding has this path: 404)."""
        allowed: list[str] = []
        for template, method, target in self.entries:
            if method != http_method and method in allowed:
                continue
            m = template.regex.match(raw_path)
            if m is None:
                continue
            if method == http_method:
                return target, template.decode(m), []
            allowed.append(method)
        return None, {}, allowed
