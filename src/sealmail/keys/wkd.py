"""OpenPGP Web Key Directory (draft-koch-openpgp-webkey-service): URLs, server side
lookups and a client.

A key for ``local@domain`` lives at one of two URLs, where HASH is the
z-base-32 encoded SHA-1 digest of the local part in lower case:

- advanced layout: ``https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH``
- direct layout: ``https://DOMAIN/.well-known/openpgpkey/hu/HASH``

Both carry ``?l=LOCAL`` with the unchanged local part. The client asks the
advanced layout first and falls back to the direct one only when the
``openpgpkey`` host does not resolve, as the draft prescribes.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import pysequoia

from sealmail.core.pgp.certfilter import keep_user_ids
from sealmail.core.pgp.packets import PacketError
from sealmail.core.pgp.userid import user_id_address

logger = logging.getLogger(__name__)

ZBASE32_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"

# Top-level and second-level names reserved by RFC 2606 and RFC 6761; they
# never resolve, so the client rejects them without a network request.
RESERVED_SUFFIXES = (
    ".test",
    ".example",
    ".invalid",
    ".localhost",
    ".example.com",
    ".example.net",
    ".example.org",
)

DEFAULT_TIMEOUT = 10.0
# Larger than any sane public certificate; the intake accepts at most 1 MiB.
MAX_RESPONSE_BYTES = 1024 * 1024


class WkdError(Exception):
    """A WKD lookup failed; ``reason`` is ``not_found``, ``invalid_address``,
    ``reserved_domain``, ``network``, ``http``, ``too_large`` or ``malformed``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def zbase32(data: bytes) -> str:
    """Encode ``data`` in z-base-32, five bits per character, most significant first."""
    bits = int.from_bytes(data, "big")
    length = len(data) * 8
    chars = []
    for shift in range(length - 5, -5, -5):
        if shift >= 0:
            index = (bits >> shift) & 0x1F
        else:
            index = (bits << -shift) & 0x1F
        chars.append(ZBASE32_ALPHABET[index])
    return "".join(chars)


def local_part_hash(local: str) -> str:
    """Return the WKD hash of a local part: only ASCII letters are lower-cased."""
    lowered = "".join(char.lower() if "A" <= char <= "Z" else char for char in local)
    return zbase32(hashlib.sha1(lowered.encode("utf-8")).digest())


def split_address(address: str) -> tuple[str, str]:
    """Split an address into its local part and its IDNA-encoded, lower-case domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or "/" in domain or " " in domain:
        raise WkdError(
            "invalid_address",
            f"{address!r} is not an email address; give one like name@example.net",
        )
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise WkdError(
            "invalid_address", f"the domain of {address!r} is not a valid host name"
        ) from exc
    return local, ascii_domain


@dataclass(frozen=True)
class WkdPaths:
    """The request paths of one address in both layouts, without scheme and host."""

    domain: str
    advanced: str
    direct: str


def wkd_paths(address: str) -> WkdPaths:
    local, domain = split_address(address)
    digest = local_part_hash(local)
    query = "?l=" + quote(local, safe="")
    return WkdPaths(
        domain=domain,
        advanced=f"/.well-known/openpgpkey/{domain}/hu/{digest}{query}",
        direct=f"/.well-known/openpgpkey/hu/{digest}{query}",
    )


def addresses_of(cert: pysequoia.Cert) -> list[str]:
    """Return the addresses of ``cert``'s user IDs, read by :func:`user_id_address`."""
    addresses = (user_id_address(str(user_id)) for user_id in cert.user_ids)
    return [address for address in addresses if address is not None]


def _matches(address: str | None, domain: str, digest: str) -> bool:
    if address is None:
        return False
    local, _, address_domain = address.rpartition("@")
    return address_domain.lower() == domain.lower() and local_part_hash(local) == digest


def certificates_for(
    certs: Iterable[pysequoia.Cert], domain: str, digest: str
) -> list[pysequoia.Cert]:
    """Select the certificates with a user ID whose address hashes to ``digest`` at ``domain``."""
    return [
        cert
        for cert in certs
        if any(_matches(address, domain, digest) for address in addresses_of(cert))
    ]


# Copies made by published_certificate: bytes, or the message of the failure.
_published: dict[tuple[str, str, str], tuple[pysequoia.Cert, bytes | str]] = {}
_PUBLISHED_CACHE_SIZE = 64


def published_certificate(cert: pysequoia.Cert, domain: str, digest: str) -> bytes:
    """Return binary ``cert`` as WKD publishes it for the address of ``digest``.

    The copy has only the user IDs of the looked-up address, so a lookup for
    one address does not reveal the provider's other addresses on the same
    key. It has no third-party certifications, which WKD clients do not use
    and which anyone can add to a key on a keyserver. The keys, subkeys and
    binding signatures stay, and so do the self-signatures and revocations
    of the key, its subkeys and the kept user IDs, so the copy verifies.

    Raises :class:`~sealmail.core.pgp.packets.PacketError` when no user ID
    of ``cert`` matches or the copy cannot be made, and logs the reason the
    first time. The copy, or the failure, is kept while the caller passes the
    same ``cert`` object: the key store returns the same objects until its
    directory changes.
    """
    cache_key = (cert.fingerprint, domain.lower(), digest)
    cached = _published.get(cache_key)
    if cached is not None and cached[0] is cert:
        result = cached[1]
    else:
        result = _filter_for_wkd(cert, domain, digest)
        if len(_published) >= _PUBLISHED_CACHE_SIZE:
            _published.clear()
        _published[cache_key] = (cert, result)
    if isinstance(result, str):
        raise PacketError(result)
    return result


def _filter_for_wkd(cert: pysequoia.Cert, domain: str, digest: str) -> bytes | str:
    try:
        return keep_user_ids(
            bytes(cert),
            lambda user_id: _matches(user_id_address(user_id), domain, digest),
            third_party_certifications=False,
        )
    except PacketError as exc:
        logger.error(
            "provider key %s is not published by WKD for hash %s at %s, because "
            "its WKD copy cannot be made: %s",
            cert.fingerprint.upper(),
            digest,
            domain,
            exc,
        )
        return str(exc)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # NOTE: redirects are refused, so a key served only behind a redirect is
    # reported as an HTTP error rather than fetched from another host.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        raise urllib.error.HTTPError(
            req.full_url, code, f"redirect to {newurl} refused", headers, fp
        )


def _is_reserved(domain: str) -> bool:
    dotted = "." + domain
    return domain in {"localhost"} or any(
        dotted.endswith(suffix) or domain == suffix[1:] for suffix in RESERVED_SUFFIXES
    )


class WkdClient:
    """Fetch certificates from a domain's Web Key Directory over HTTPS.

    ``base_urls`` maps a domain to a base URL (``https://host:port``) that
    serves both layouts for that domain, such as an internal mirror or a
    test server. ``ssl_context`` sets the trusted CAs. Domains reserved for
    documentation and testing are never looked up on the network.
    """

    def __init__(
        self,
        *,
        base_urls: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_urls = {
            domain.lower(): url.rstrip("/") for domain, url in (base_urls or {}).items()
        }
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(
                context=ssl_context or ssl.create_default_context()
            ),
            _NoRedirect(),
        )

    def urls(self, address: str) -> list[str]:
        """Return the URLs to try for ``address``, advanced layout first."""
        paths = wkd_paths(address)
        base = self.base_urls.get(paths.domain)
        if base is not None:
            return [base + paths.advanced, base + paths.direct]
        if _is_reserved(paths.domain):
            raise WkdError(
                "reserved_domain",
                f"{paths.domain} is reserved for documentation and tests and has no "
                "WKD; map it to a test server with SEALMAIL_WKD_URLS",
            )
        return [
            f"https://openpgpkey.{paths.domain}{paths.advanced}",
            f"https://{paths.domain}{paths.direct}",
        ]

    def lookup(self, address: str) -> list[pysequoia.Cert]:
        """Return the certificates published for ``address``; raise WkdError otherwise."""
        advanced, direct = self.urls(address)
        mirrored = wkd_paths(address).domain in self.base_urls
        try:
            data = self._get(advanced)
        except _HostNotFound:
            data = self._get_direct(direct, address)
        except WkdError as exc:
            # A mirror serves both layouts from one host, so a miss in the
            # advanced layout does not rule out the direct one.
            if not (mirrored and exc.reason == "not_found"):
                raise
            data = self._get_direct(direct, address)
        try:
            certs = pysequoia.Cert.split_bytes(data)
        except Exception as exc:  # pysequoia raises plain Exception
            raise WkdError(
                "malformed", f"the WKD response is not OpenPGP data: {exc}"
            ) from exc
        certs = [cert for cert in certs if not cert.has_secret_keys]
        if not certs:
            raise WkdError("malformed", "the WKD response contains no public key")
        return certs

    def _get_direct(self, url: str, address: str) -> bytes:
        try:
            return self._get(url)
        except _HostNotFound as exc:
            raise WkdError(
                "network", f"no WKD host for {address.rpartition('@')[2]}: {exc}"
            ) from None

    def _get(self, url: str) -> bytes:
        request = urllib.request.Request(
            url, headers={"Accept": "application/octet-stream"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                data = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise WkdError("not_found", f"no key published at {url}") from None
            raise WkdError("http", f"{url} returned HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, socket.gaierror):
                raise _HostNotFound(str(exc.reason)) from None
            raise WkdError("network", f"fetching {url} failed: {exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise WkdError("network", f"fetching {url} failed: {exc}") from None
        if len(data) > self.max_bytes:
            raise WkdError(
                "too_large", f"{url} returned more than {self.max_bytes} bytes"
            )
        return data


class _HostNotFound(Exception):
    pass
