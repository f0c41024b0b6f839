"""A self-contained API reference page rendered server-side from the OpenAPI document.

No scripts, fonts or styles from a CDN (the gateway may run with no internet): one HTML
string with inline CSS, built once at start-up.
"""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin-top:40px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{margin:0;font-size:16px;font-weight:600}
.op{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:16px 0;padding:14px 16px}
.m{display:inline-block;min-width:56px;text-align:center;border-radius:4px;color:#fff;font:600 12px/22px monospace;
margin-right:8px}
.get{background:#2f7bd3}.post{background:#2b9a5a}.put{background:#b8860b}.delete{background:#c0392b}
.patch{background:#8e44ad}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
pre{background:#f0f2f5;padding:8px 10px;border-radius:4px;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;vertical-align:top;border-bottom:1px solid #e6e8ec;padding:4px 8px}
th{font-size:12px;text-transform:uppercase;color:#5b6475}
.d{white-space:pre-line}.muted{color:#5b6475}nav a{margin-right:12px}
"""


def _text(value: str | None) -> str:
    return f'<div class="d">{escape(value)}</div>' if value else ""


def _anchor(name: str) -> str:
    return "schema-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def type_label(schema: dict[str, Any] | None) -> str:
    """A short HTML type for a schema, linking component references."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#{_anchor(name)}">{escape(name.rsplit(".", 1)[-1])}</a>'
    t = schema.get("type")
    if t == "array":
        return "array of " + type_label(schema.get("items"))
    if t == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map&lt;string, " + type_label(schema["additionalProperties"]) + "&gt;"
    if isinstance(t, list):
        t = " | ".join(t)
    label = escape(str(t or "any"))
    if schema.get("format"):
        label += f" <span class=muted>({escape(str(schema['format']))})</span>"
    return label


def _constraints(schema: dict[str, Any]) -> str:
    keys = ("minLength", "maxLength", "pattern", "minimum", "maximum", "minItems", "maxItems", "maxProperties")
    parts = [f"{k}: {schema[k]}" for k in keys if k in schema and not (k == "minimum" and schema[k] == 0)]
    items = schema.get("items")
    if isinstance(items, dict):
        parts += [f"{k}: {items[k]}" for k in keys if k in items]
    return f'<div class="muted"><code>{escape(", ".join(parts))}</code></div>' if parts else ""


def _example_curl(method: str, path: str, op: dict[str, Any]) -> str:
    url = "http://localhost:8080" + path
    parts = [f"curl -X {method.upper()} '{url}'", '-H "authorization: Bearer $TOKEN"']  # (double: $TOKEN expands)
    if "requestBody" in op:
        parts.append("-H 'content-type: application/json' -d '{...}'")
    content = op.get("responses", {}).get("200", {}).get("content", {})
    if "text/event-stream" in content:
        parts.append("-N -H 'accept: text/event-stream'")
    return "<pre>" + escape(" \\\n  ".join(parts)) + "</pre>"


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    out = [f'<section class="op" id="{escape(op.get("operationId", ""))}">']
    out.append(f'<h3><span class="m {escape(method)}">{escape(method.upper())}</span><code>{escape(path)}</code></h3>')
    out.append(f'<p class=muted>{escape(op.get("x-rpc", ""))}</p>')
    out.append(_text(op.get("description") or op.get("summary")))
    params = op.get("parameters", [])
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>")
        for p in params:
            req = " <b>required</b>" if p.get("required") else ""
            out.append(
                f"<tr><td><code>{escape(p['name'])}</code>{req}</td><td>{escape(p['in'])}</td>"
                f"<td>{type_label(p.get('schema'))}{_constraints(p.get('schema', {}))}</td>"
                f"<td>{_text(p.get('description'))}</td></tr>"
            )
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        out.append(f"<p><b>Request body</b> (application/json): {type_label(schema)}</p>")
        if "properties" in schema and "$ref" not in schema:
            out.append(_properties(schema))
    out.append("<table><tr><th>status</th><th>content</th><th>description</th></tr>")
    for status, resp in op.get("responses", {}).items():
        content = resp.get("content", {})
        kinds = "<br>".join(f"{escape(ct)}: {type_label(c.get('schema'))}" for ct, c in content.items())
        out.append(f"<tr><td>{escape(status)}</td><td>{kinds}</td><td>{_text(resp.get('description'))}</td></tr>")
    out.append("</table>")
    out.append(_example_curl(method, path, op))
    out.append("</section>")
    return "".join(out)


def _properties(schema: dict[str, Any]) -> str:
    rows = ["<table><tr><th>field</th><th>type</th><th>description</th></tr>"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td>{type_label(prop)}{_constraints(prop)}</td>"
            f"<td>{_text(prop.get('description'))}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _schema(name: str, schema: dict[str, Any]) -> str:
    out = [f'<section class="op" id="{_anchor(name)}"><h3><code>{escape(name)}</code></h3>']
    out.append(_text(schema.get("description")))
    if "enum" in schema:
        out.append("<p>" + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"]) + "</p>")
    elif schema.get("properties"):
        out.append(_properties(schema))
    out.append("</section>")
    return "".join(out)


def render_docs(document: dict[str, Any], openapi_url: str = "/openapi.json") -> str:
    info = document.get("info", {})
    title = escape(info.get("title", "API"))
    ops = [
        (path, method, op)
        for path, item in document.get("paths", {}).items()
        for method, op in item.items()
    ]
    nav = "".join(
        f'<a href="#{escape(op.get("operationId", ""))}">{escape(op.get("x-rpc", "").rsplit("/", 1)[-1])}</a>'
        for _, _, op in ops
    )
    body = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{title}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{title}</h1><p class=muted>version {escape(str(info.get('version', '')))} · "
        f'OpenAPI {escape(document.get("openapi", ""))}: <a href="{escape(openapi_url)}">{escape(openapi_url)}</a></p>',
        _text(info.get("description")),
        "<p>Errors are <code>google.rpc.Status</code> JSON with the HTTP status of their canonical code. "
        "Server streams are Server-Sent Events with <code>Accept: text/event-stream</code>, newline-delimited "
        "JSON otherwise.</p>",
        f"<nav>{nav}</nav><h2>Operations</h2>",
        *(_operation(path, method, op) for path, method, op in ops),
        "<h2>Schemas</h2>",
        *(_schema(name, schema) for name, schema in document.get("components", {}).get("schemas", {}).items()),
        "</main></body></html>",
    ]
    return "".join(body)
