"""Public views of the provider keys: the key page, downloads and Web Key Directory."""

from __future__ import annotations

import logging
import re

import pysequoia
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from sealmail.core.errors import KeyStoreError
from sealmail.core.pgp.packets import PacketError
from sealmail.keys import wkd
from sealmail.keys.store import get_keystore

logger = logging.getLogger(__name__)

WKD_DIGEST = re.compile(r"^[ybndrfg8ejkmcpqxot1uwisza345h769]{32}$")


def _certificates() -> list[pysequoia.Cert]:
    try:
        return get_keystore().certificates()
    except KeyStoreError:
        logger.exception("reading the provider keys failed")
        return []


def _groups(fingerprint: str) -> str:
    upper = fingerprint.upper()
    return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


@require_safe
def provider_keys(request: HttpRequest) -> HttpResponse:
    """List the provider's public keys with fingerprints and download links."""
    keys = [
        {
            "fingerprint": cert.fingerprint.upper(),
            "fingerprint_groups": _groups(cert.fingerprint),
            "user_ids": [str(user_id) for user_id in cert.user_ids],
            "expiration": cert.expiration,
            "current": index == 0,
        }
        for index, cert in enumerate(_certificates())
    ]
    return render(
        request,
        "keys/provider_keys.html",
        {"keys": keys, "domains": settings.SEALMAIL_WKD_DOMAINS},
    )


@require_safe
def provider_key_download(
    request: HttpRequest, fingerprint: str, extension: str
) -> HttpResponse:
    """Return one provider certificate, ASCII-armored (.asc) or binary (.pgp)."""
    wanted = fingerprint.lower()
    for cert in _certificates():
        if cert.fingerprint.lower() == wanted:
            if extension == "asc":
                response = HttpResponse(str(cert), content_type="application/pgp-keys")
            else:
                response = HttpResponse(
                    bytes(cert), content_type="application/octet-stream"
                )
            filename = f"{cert.fingerprint.upper()}.{extension}"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            response["Access-Control-Allow-Origin"] = "*"
            return response
    raise Http404(f"no provider key with fingerprint {fingerprint}")


def _host_domain(request: HttpRequest) -> str:
    host = request.get_host().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0]


def _wkd_domain(domain: str) -> str:
    domain = domain.lower()
    if domain not in settings.SEALMAIL_WKD_DOMAINS:
        raise Http404(f"no Web Key Directory for {domain}")
    return domain


@require_safe
def wkd_key(
    request: HttpRequest, digest: str, domain: str | None = None
) -> HttpResponse:
    """Return the provider certificates for a WKD hash, in the direct or advanced layout.

    The advanced layout names the domain in the path; the direct layout takes
    it from the Host header. The ``l`` parameter is not needed, because the
    hash identifies the address. Each certificate carries only the user IDs
    of the address looked up (see :func:`wkd.published_certificate`). A key
    whose copy cannot be made is left out, and when no key is left the
    response is 503.
    """
    domain = _wkd_domain(domain if domain is not None else _host_domain(request))
    if not WKD_DIGEST.match(digest):
        raise Http404("not a WKD hash")
    certs = wkd.certificates_for(_certificates(), domain, digest)
    if not certs:
        raise Http404("no key for this address")
    copies = []
    for cert in certs:
        try:
            copies.append(wkd.published_certificate(cert, domain, digest))
        except PacketError:
            # published_certificate has logged the reason. The other keys are
            # still served.
            continue
    if not copies:
        return HttpResponse(
            "The key for this address cannot be served. "
            "The server log has the reason.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    response = HttpResponse(b"".join(copies), content_type="application/octet-stream")
    response["Access-Control-Allow-Origin"] = "*"
    return response


@require_safe
def wkd_policy(request: HttpRequest, domain: str | None = None) -> HttpResponse:
    """Return the WKD policy file; an empty one means no special policy flags."""
    _wkd_domain(domain if domain is not None else _host_domain(request))
    response = HttpResponse(b"", content_type="text/plain")
    response["Access-Control-Allow-Origin"] = "*"
    return response
