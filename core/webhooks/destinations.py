"""Where per-request webhooks may go: never into the gateway's own networks.

A TradeRequest's ``webhook_url`` is chosen by the caller, so without a check any caller could
make the gateway POST to addresses it can reach and the caller cannot — loopback, private
ranges, link-local (cloud metadata at 169.254.169.254): server-side request forgery. Only
globally routable addresses are allowed, checked twice:

* when the request arrives: a literal address or a localhost name is refused at once
  (INVALID_ARGUMENT naming the field);
* before each delivery: every address the host name resolves to then must be global, else
  the delivery is dead-lettered (retrying cannot help).

Endpoints from the operator's configuration are trusted and not checked;
``webhooks.allow_private_request_urls`` lifts the rule for trusted networks and tests.
Not covered: a DNS answer that changes between this check and httpx's own lookup
(rebinding) — closing that needs connecting to the checked address itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

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
        return None
    return ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local else
            "multicast" if ip.is_multicast else "private or reserved")


def host_refusal(host: str) -> str | None:
    """Why ``host`` is refused without resolving it (a localhost name, a non-global literal)."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is this machine"
    try:
        kind = non_global_kind(name)
    except ValueError:
        return None  # a name: judged by what it resolves to, before each delivery
    return None if kind is None else f"{host} is a {kind} address"


async def delivery_refusal(url: str, resolver: Resolver) -> str | None:
    """Why ``url`` may not be delivered to now, or None. Raises OSError when its host does
    not resolve (a transient failure: the delivery is retried)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    refused = host_refusal(host)
    if refused is not None:
        return refused
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in await resolver(host, port):
        kind = non_global_kind(address)
        if kind is not None:
            return f"{host} resolves to {address}, a {kind} address"
    return None
