"""The client address of a request, also behind trusted reverse proxies.

Rate limits, the login lockout and the audit log all read the address
through :func:`client_address`. Behind a reverse proxy the connection's peer
(``REMOTE_ADDR``) is the proxy, so when the peer is one of
``SEALMAIL_TRUSTED_PROXIES`` the address comes from ``X-Forwarded-For``
instead. Every proxy appends the address of its own peer to that header, so
the rightmost entry that is not a trusted proxy is the first address that no
trusted proxy vouches for. Entries left of it may be forged by the client
and are never read.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from django.conf import settings
from django.http import HttpRequest

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: HttpRequest) -> str | None:
    """Return the address of the client behind ``request``, or None when unknown."""
    peer = parse_address(request.META.get("REMOTE_ADDR") or "")
    if peer is None:
        return None
    trusted = settings.SEALMAIL_TRUSTED_PROXIES
    if not _is_trusted(peer, trusted):
        return str(peer)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    return str(forwarded_client(peer, forwarded, trusted))


def forwarded_client(
    peer: IPAddress, forwarded_for: str, trusted: Sequence[IPNetwork]
) -> IPAddress:
    """Return the client address that the trusted proxy ``peer`` forwarded.

    Walks ``forwarded_for`` from the right past every trusted proxy. When
    every entry is a trusted proxy, the leftmost one is the client. An entry
    that is not an IP address ends the walk at the last trusted hop, because
    no trusted proxy wrote that entry.
    """
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        entry = entry.strip()
        if not entry:
            continue
        address = parse_address(entry)
        if address is None:
            logger.warning(
                "X-Forwarded-For entry %r from proxy %s is not an IP address; "
                "using the proxy's address as the client address",
                entry[:60],
                client,
            )
            return client
        client = address
        if not _is_trusted(address, trusted):
            return client
    return client


def parse_address(text: str) -> IPAddress | None:
    """Parse an IP address as proxies write it: bare, or with a port.

    Accepts ``192.0.2.1``, ``192.0.2.1:443``, ``2001:db8::1`` and
    ``[2001:db8::1]:443``. An IPv4-mapped IPv6 address becomes its IPv4
    address, so a dual-stack listener compares equal to IPv4 proxy entries.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)
