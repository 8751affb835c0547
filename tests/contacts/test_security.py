"""Secret keys, tokens and key text stay out of the database and the logs; logins lock."""

from __future__ import annotations

import base64
import logging
import re
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse

from sealmail.contacts.models import Contact, ContactKey, PendingChange
from tests.contacts.conftest import PASSWORD


def database_text() -> str:
    """Return every stored value of every model as one string."""
    parts = []
    for model in apps.get_models():
        for row in model.objects.all().values_list():
            for value in row:
                if isinstance(value, (bytes, memoryview)):
                    parts.append(base64.b64encode(bytes(value)).decode())
                    parts.append(bytes(value).hex())
                else:
                    parts.append(str(value))
    return "\n".join(parts)


def armor_body(armored: bytes) -> list[str]:
    """Return the base64 lines of an armored block, without headers and checksum."""
    lines = armored.decode().splitlines()
    start = lines.index("") + 1
    return [
        line for line in lines[start:] if line and not line.startswith(("=", "-----"))
    ]


def test_pasted_secret_key_not_stored(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    secret = gpg_keys["alice_secret"]
    response = alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_text": secret.decode(),
        },
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "secret" in body
    assert "BEGIN PGP PRIVATE KEY BLOCK" not in body
    for line in armor_body(secret)[-10:]:
        assert line not in body
    assert not ContactKey.objects.exists()
    assert not PendingChange.objects.exists()
    assert sent.calls == []
    stored = database_text()
    assert "PRIVATE KEY" not in stored
    # Lines of the secret key's armor after the public part carry the secret material.
    for line in armor_body(secret)[-10:]:
        assert line not in stored
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.NONE


def test_uploaded_secret_key_not_stored(alice_client, world, gpg_keys, sent) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    contact = world["acme_contact"]
    upload = SimpleUploadedFile(
        "key.asc", gpg_keys["alice_secret"], "application/pgp-keys"
    )
    response = alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_file": upload,
        },
    )
    assert response.status_code == 200
    assert b"secret" in response.content
    assert not ContactKey.objects.exists()
    assert "PRIVATE KEY" not in database_text()


def test_key_text_and_token_not_logged(
    alice_client, world, gpg_keys, sent, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    contact = world["acme_contact"]
    public = gpg_keys["alice_public"].decode()
    alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_text": public,
        },
    )
    alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_text": gpg_keys["alice_secret"].decode(),
        },
    )
    token = re.search(r"/confirm/\d+/([A-Za-z0-9_-]+)/", sent.last()["text"]).group(1)
    path = re.search(r"/confirm/\d+/[A-Za-z0-9_-]+/", sent.last()["text"]).group(0)
    Client().post(path)
    Client().post(path)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records, "the flow logged nothing at all"
    assert token not in logged
    assert "PGP" not in logged
    for line in armor_body(gpg_keys["alice_public"])[:3]:
        assert line not in logged
    assert "alice@customer.test" not in logged


def test_confirmation_pages_not_cached(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_text": gpg_keys["alice_public"].decode(),
        },
    )
    path = re.search(r"/confirm/\d+/[A-Za-z0-9_-]+/", sent.last()["text"]).group(0)
    response = Client().get(path)
    assert "no-store" in response["Cache-Control"]


def test_confirm_post_needs_csrf(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "key_text": gpg_keys["alice_public"].decode(),
        },
    )
    path = re.search(r"/confirm/\d+/[A-Za-z0-9_-]+/", sent.last()["text"]).group(0)
    response = Client(enforce_csrf_checks=True).post(path)
    assert response.status_code == 403
    contact.refresh_from_db()
    assert contact.active_key is None


def login(client: Client, password: str):
    return client.post(reverse("login"), {"username": "alice", "password": password})


def test_login_locks_after_failures(world: dict[str, Any], settings) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 3
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(3):
        response = login(client, "wrong password")
        assert response.status_code == 200
        assert b"correct username and password" in response.content
    locked = login(client, PASSWORD)
    assert locked.status_code == 200
    assert b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session
    other = Client(REMOTE_ADDR="203.0.113.6")
    assert login(other, PASSWORD).status_code == 302


def test_admin_login_locks_after_failures(settings, django_user_model) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 2
    django_user_model.objects.create_superuser("staff", "staff@provider.test", PASSWORD)
    client = Client(REMOTE_ADDR="203.0.113.9")
    admin_login = reverse("admin:login")
    for _ in range(2):
        client.post(admin_login, {"username": "staff", "password": "wrong password"})
    locked = client.post(admin_login, {"username": "staff", "password": PASSWORD})
    assert locked.status_code == 200
    assert b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session


def test_login_success_resets_count(world: dict[str, Any], settings) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 2
    client = Client(REMOTE_ADDR="203.0.113.7")
    login(client, "wrong password")
    assert login(client, PASSWORD).status_code == 302
    client.logout()
    login(client, "wrong password")
    assert login(client, PASSWORD).status_code == 302


def test_password_reset_goes_through_outbox(world, sent) -> None:
    response = Client().post(
        reverse("password_reset"), {"email": "alice@customer.test"}
    )
    assert response.status_code == 302
    call = sent.last()
    assert len(sent.calls) == 1
    assert call["contact"] == world["acme_contact"]
    assert "/accounts/reset/" in call["text"]
    assert call["category"] == "account_notice"
    assert "to_address" not in call
    assert "recipient_key" not in call


def test_password_reset_unknown_address(world, sent) -> None:
    response = Client().post(
        reverse("password_reset"), {"email": "nobody@nowhere.test"}
    )
    assert response.status_code == 302
    assert sent.calls == []


@pytest.mark.parametrize("page", ["login", "password_reset"])
def test_auth_pages_render(page: str, db) -> None:
    assert Client().get(reverse(page)).status_code == 200


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Gone: /confirm/12/abcDEF_-123/", "Gone: /confirm/12/[token]/"),
        (
            '"POST /cancel/3/xyz-9/ HTTP/1.1" 410',
            '"POST /cancel/3/[token]/ HTTP/1.1" 410',
        ),
        ("GET /accounts/reset/MQ/cl9f4k-0a1b2c/", "GET /accounts/reset/MQ/[token]/"),
        ("GET /contacts/3/", "GET /contacts/3/"),
    ],
)
def test_redact_link_tokens(path: str, expected: str) -> None:
    from sealmail.contacts.logfilters import redact

    assert redact(path) == expected


def test_login_locks_across_addresses(world: dict[str, Any], settings) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 1
    for number in range(4):
        login(Client(REMOTE_ADDR=f"203.0.113.{20 + number}"), "wrong password")
    locked = login(Client(REMOTE_ADDR="203.0.113.99"), PASSWORD)
    assert b"Too many failed logins" in locked.content


def test_purge_drops_old_hits(db) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from sealmail.contacts import ratelimit
    from sealmail.contacts.models import RateLimitHit

    RateLimitHit.objects.create(bucket="old", time=timezone.now() - timedelta(days=2))
    RateLimitHit.objects.create(bucket="new", time=timezone.now())
    assert ratelimit.purge(timedelta(days=1)) == 1
    assert list(RateLimitHit.objects.values_list("bucket", flat=True)) == ["new"]


@pytest.mark.parametrize(
    "path",
    ["/accounts/login/", "/accounts/password_reset/", "/accounts/password_reset/done/"],
)
def test_auth_pages_use_portal_layout(path: str, db) -> None:
    body = Client().get(path).content.decode()
    assert "sealmail/site.css" in body
    assert "Django administration" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/keys/",
        "/provider-keys.asc",
        "/accounts/login/",
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/bad-token/",
        "/confirm/1/not-a-token/",
        "/no-such-page/",
    ],
)
def test_public_pages_send_portal_policy(path: str, db) -> None:
    from sealmail.project.csp import PORTAL_POLICY

    response = Client().get(path)
    assert response["Content-Security-Policy"] == PORTAL_POLICY


def test_logged_in_pages_send_portal_policy(alice_client, world) -> None:
    from sealmail.project.csp import PORTAL_POLICY

    contact = world["acme_contact"]
    for path in ["/", reverse("contacts:update", args=[contact.pk])]:
        response = alice_client.get(path)
        assert response.status_code == 200
        assert response["Content-Security-Policy"] == PORTAL_POLICY
    foreign = reverse("contacts:update", args=[world["beta_contact"].pk])
    other = alice_client.get(foreign)
    assert other.status_code == 404
    assert other["Content-Security-Policy"] == PORTAL_POLICY


def test_portal_policy_is_strict() -> None:
    from sealmail.project.csp import PORTAL_POLICY

    directives = dict(
        directive.strip().split(" ", 1) for directive in PORTAL_POLICY.split(";")
    )
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert "script-src" not in directives  # falls back to default-src 'self'
    assert "unsafe" not in PORTAL_POLICY


def test_staff_pages_keep_own_policy(
    alice_client, world, django_user_model
) -> None:
    from sealmail.inbound.views import CONTENT_SECURITY_POLICY

    staff = django_user_model.objects.create_user(
        "agent", password=PASSWORD, is_staff=True
    )
    client = Client()
    client.force_login(staff)
    response = client.get(reverse("staff:tickets"))
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    denied = alice_client.get(reverse("staff:tickets"))
    assert denied.status_code == 403
    assert denied["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
