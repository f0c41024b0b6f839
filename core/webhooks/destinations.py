"""Where per-request webhooks may go: never into the gateway's own networks.

A TradeRequest's ``webhook_url`` is chosen by the caller, so without a check any caller could
make the gateway POST to addresses it can reach and the caller cannot — loopback, private
ranges, link-local (cloud metadata at 169.254.169.254): server-side request forgery. Only
globally routable addresses are allowed, checked twice:

* when the request arrives: a literal address (in any spelling a resolver accepts, 127.1
  included) or a localhost name is refused at once (INVALID_ARGUMENT naming the field), as is
  a host that is not a valid name at all;
* before each delivery: every address the host name resolves to then must be global, else
  the delivery is dead-lettered (retrying cannot help) — and the POST goes to the address
  that was checked (:func:`pinned_request`), not to whatever a second lookup would answer,
  so a name that re-binds to an inside address between the check and the connection
  (DNS rebinding) still cannot reach it.

Endpoints from the operator's configuration are trusted and not checked;
``webhooks.allow_private_request_urls`` lifts the rule for trusted networks and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

# host, port → the addresses it resolves to (raises OSError when it does not resolve)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def non_global_kind(address: str) -> str | None:
    """What kind of non-global address ``address`` is (e.g. "loopback"), None when global unicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return None if embedded is None else non_global_kind(str(embedded))
    return ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local else
            "multicast" if ip.is_multicast else "private or reserved")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries for a translator or relay to reach — NAT64
    (64:ff9b::a.b.c.d; the local-use 64:ff9b:1::/48 as a whole: 0.0.0.0, never global),
    6to4 (2002:aabb:ccdd::), SIIT (::ffff:0:a.b.c.d) or the deprecated IPv4-compatible form
    (::a.b.c.d) — else None."""
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(0)
    return ip.sixtofour


def _ipv4_shorthand(name: str) -> str | None:
    """The dotted quad of an IPv4 address written the way resolvers also accept it (127.1,
    2130706433, 0x7f000001), else None."""
    try:
        return socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        return None


def host_refusal(host: str) -> str | None:
    """Why ``host`` is refused without resolving it (a localhost name, a non-global literal).
    Judged as a resolver reads it: in its ASCII (IDNA) form, where "１２７.０.０.１", "127。0。0。1"
    and "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ" are 127.0.0.1 and localhost."""
    name = _ascii_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is this machine"
    try:
        kind = non_global_kind(name)
    except ValueError:
        quad = _ipv4_shorthand(name) if is_host_name(name) else None
        if quad is None:
            return None  # a name: judged by what it resolves to, before each delivery
        kind = non_global_kind(quad)
    return None if kind is None else f"{host} is a {kind} address"


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


def _ascii_name(host: str) -> str:
    """``host`` lower-cased in its ASCII form (IDNA maps full-width digits, ideographic dots and
    the like); as given when it has none (an IPv6 literal, or no valid name at all)."""
    try:
        return host.rstrip(".").encode("idna").decode("ascii").rstrip(".").lower()
    except UnicodeError:
        return host.rstrip(".").lower()


def is_host_name(host: str) -> bool:
    """Whether ``host`` is a syntactically valid DNS name or IPv4 literal (IDNA names included;
    IPv6 literals are checked as addresses)."""
    try:
        ascii_name = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    return 0 < len(ascii_name) <= 253 and all(_LABEL.match(label) for label in ascii_name.split("."))


@dataclass(frozen=True)
class Destination:
    """The outcome of the check before a delivery: why not (``refusal``), or where to."""

    refusal: str | None = None
    address: str | None = None  # the checked address to connect to


async def check_destination(url: str, resolver: Resolver) -> Destination:
    """Whether ``url`` may be delivered to now, and at which checked address. Raises OSError
    when its host does not resolve (a transient failure: the delivery is retried)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    refused = host_refusal(host)
    if refused is not None:
        return Destination(refusal=refused)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolver(host, port)
    for address in addresses:
        kind = non_global_kind(address)
        if kind is not None:
            return Destination(refusal=f"{host} resolves to {address}, a {kind} address")
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    return Destination(address=addresses[0])


def pinned_request(client: httpx.AsyncClient, url: str, address: str, content: bytes,
                   headers: dict[str, str]) -> httpx.Request:
    """A POST of ``content`` to ``url`` that connects to ``address`` itself: the URL carries
    the address, while the Host header and (for https) the TLS server name — which the
    certificate is verified against — keep the URL's host name (in its ASCII form: an
    internationalized name goes on the wire as its IDNA "xn--" labels, as resolved)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    host = parts.hostname or ""
    host = host if ":" in host else host.encode("idna").decode("ascii")
    in_header = f"[{host}]" if ":" in host else host
    hostport = f"{in_header}:{parts.port}" if parts.port else in_header
    literal = f"[{address}]" if ":" in address else address
    netloc = (f"{userinfo}@" if userinfo else "") + (f"{literal}:{parts.port}" if parts.port else literal)
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return client.build_request("POST", urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")),
                                content=content, headers={**headers, "host": hostport}, extensions=extensions)
