"""Client addresses behind trusted proxies in rate limits, lockout and audit."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from sealmail.api.models import ApiToken
from sealmail.contacts.models import AuditEvent, PendingChange
from sealmail.project.proxies import client_address, parse_address
from tests.contacts.conftest import PASSWORD

PROXY = "10.0.0.5"


def networks(*entries: str) -> list:
    return [ipaddress.ip_network(entry) for entry in entries]


@pytest.fixture
def behind_proxy(settings) -> None:
    settings.SEALMAIL_TRUSTED_PROXIES = networks(PROXY, "10.1.0.0/24", "fd00::/8")


def address_of(remote_addr: str, forwarded_for: str | None = None) -> str | None:
    headers = {} if forwarded_for is None else {"HTTP_X_FORWARDED_FOR": forwarded_for}
    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)
    return client_address(request)


def test_forwarded_for_ignored_by_default(settings) -> None:
    settings.SEALMAIL_TRUSTED_PROXIES = []
    assert address_of(PROXY, "203.0.113.5") == PROXY


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        # The peer is no trusted proxy, so a client cannot choose its address.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # One trusted proxy: the entry it appended.
        (PROXY, "203.0.113.5", "203.0.113.5"),
        # Entries left of the client's are written by the client and skipped.
        (PROXY, "198.51.100.66, 203.0.113.5", "203.0.113.5"),
        # Two trusted proxies in a row, the outer one in a trusted network.
        (PROXY, "203.0.113.5, 10.1.0.7", "203.0.113.5"),
        # Only trusted proxies: the leftmost, farthest hop.
        (PROXY, "10.1.0.8, 10.1.0.7", "10.1.0.8"),
        # Several X-Forwarded-For headers, which Django joins with commas.
        (PROXY, "198.51.100.66,203.0.113.5 ,  ", "203.0.113.5"),
        # A trusted proxy that sent no header is itself the client.
        (PROXY, None, PROXY),
        (PROXY, "", PROXY),
        # Ports and brackets, as some proxies write them.
        (PROXY, "203.0.113.5:51234", "203.0.113.5"),
        (PROXY, "[2001:db8::7]:443", "2001:db8::7"),
        (PROXY, "2001:db8::7", "2001:db8::7"),
        # IPv6 proxies and an IPv4-mapped peer of a dual-stack listener.
        ("fd00::1", "2001:db8::7", "2001:db8::7"),
        ("::ffff:10.0.0.5", "203.0.113.5", "203.0.113.5"),
        # An entry that is no address ends the walk at the proxy that sent it.
        (PROXY, "203.0.113.5, unknown", PROXY),
        (PROXY, "unknown, 10.1.0.7", "10.1.0.7"),
    ],
)
def test_client_address_behind_proxy(
    behind_proxy, remote_addr: str, forwarded_for: str | None, expected: str
) -> None:
    assert address_of(remote_addr, forwarded_for) == expected


def test_missing_peer_address_is_unknown(behind_proxy) -> None:
    assert address_of("", "203.0.113.5") is None
    assert address_of("not-an-address") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1:80 ", "192.0.2.1"),
        ("[::1]", "::1"),
        ("[2001:db8::1]:8443", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("192.0.2.300", None),
        ("example.net", None),
        ("", None),
    ],
)
def test_parse_address_forms(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == expected


def login(client: Client, password: str):
    return client.post(reverse("login"), {"username": "alice", "password": password})


def via_proxy(client_ip: str) -> Client:
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=client_ip)


def test_lockout_counts_clients_behind_proxy_apart(
    world: dict[str, Any], settings, behind_proxy
) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 2
    attacker = via_proxy("203.0.113.5")
    for _ in range(2):
        login(attacker, "wrong password")
    assert b"Too many failed logins" in login(attacker, PASSWORD).content
    assert login(via_proxy("203.0.113.6"), PASSWORD).status_code == 302


def test_lockout_without_trusted_proxy_counts_proxy(
    world: dict[str, Any], settings
) -> None:
    settings.SEALMAIL_TRUSTED_PROXIES = []
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        login(via_proxy("203.0.113.5"), "wrong password")
    locked = login(via_proxy("203.0.113.6"), PASSWORD)
    assert b"Too many failed logins" in locked.content


def test_spoofed_header_cannot_escape_lockout(
    world: dict[str, Any], settings, behind_proxy
) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 2
    for number in range(2):
        # The client writes its own X-Forwarded-For; the proxy appends the real one.
        login(via_proxy(f"198.51.100.{number}, 203.0.113.5"), "wrong password")
    locked = login(via_proxy("198.51.100.99, 203.0.113.5"), PASSWORD)
    assert b"Too many failed logins" in locked.content


def paste(client: Client, contact, key: bytes):
    return client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_text": key.decode(),
        },
    )


def test_change_limit_and_audit_per_forwarded_client(
    world, gpg_keys, sent, settings, behind_proxy
) -> None:
    settings.SEALMAIL_CHANGE_LIMIT_CLIENT = 1
    alice = via_proxy("203.0.113.5")
    alice.force_login(world["alice"])
    bob = via_proxy("203.0.113.6")
    bob.force_login(world["bob"])
    first = paste(alice, world["acme_contact"], gpg_keys["alice_public"])
    assert first.status_code == 302
    second = paste(bob, world["beta_contact"], gpg_keys["other_public"])
    assert second.status_code == 302
    again = paste(alice, world["acme_contact"], gpg_keys["other_public"])
    assert again.status_code == 400
    assert b"network address" in again.content
    requested = AuditEvent.objects.filter(kind=AuditEvent.Kind.REQUESTED)
    assert sorted(requested.values_list("client_address", flat=True)) == [
        "203.0.113.5",
        "203.0.113.6",
    ]
    change = PendingChange.objects.get(contact=world["beta_contact"])
    assert change.client_address == "203.0.113.6"


def test_confirmation_link_audited_with_forwarded_client(
    world, gpg_keys, sent, behind_proxy
) -> None:
    alice = via_proxy("203.0.113.5")
    alice.force_login(world["alice"])
    paste(alice, world["acme_contact"], gpg_keys["alice_public"])
    path = re.search(r"/confirm/\d+/[A-Za-z0-9_-]+/", sent.last()["text"]).group(0)
    assert via_proxy("203.0.113.77").post(path).status_code == 200
    confirmed = AuditEvent.objects.get(kind=AuditEvent.Kind.CONFIRMED)
    assert confirmed.client_address == "203.0.113.77"


def test_password_reset_limit_per_forwarded_client(world, sent, behind_proxy) -> None:
    from sealmail.contacts.accounts import RESET_LIMIT_CLIENT

    for _ in range(RESET_LIMIT_CLIENT):
        via_proxy("203.0.113.5").post(
            reverse("password_reset"), {"email": "alice@customer.test"}
        )
    limited = via_proxy("203.0.113.5").post(
        reverse("password_reset"), {"email": "alice@customer.test"}
    )
    assert b"Too many reset requests" in limited.content
    other = via_proxy("203.0.113.6").post(
        reverse("password_reset"), {"email": "alice@customer.test"}
    )
    assert other.status_code == 302


def test_api_audit_uses_forwarded_client(world, gpg_keys, sent, behind_proxy) -> None:
    token = ApiToken.issue("billing")[1]
    contact = world["acme_contact"]
    response = via_proxy("198.51.100.20, 203.0.113.8").post(
        f"/api/v1/contacts/{contact.pk}/key",
        json.dumps({"key": gpg_keys["alice_public"].decode()}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 202
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.REQUESTED)
    assert event.client_address == "203.0.113.8"
