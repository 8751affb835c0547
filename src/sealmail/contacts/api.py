"""Contacts API: read a contact and register a key through the confirmation flow.

Calling systems authenticate with an API token and may reach every contact.
A logged-in portal user (session cookie and CSRF token) reaches only the
contacts of that user's customers; any other contact is a 404.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from ninja.security import django_auth
from pydantic import Field

from sealmail.api.auth import TokenAuth
from sealmail.api.models import ApiToken
from sealmail.contacts import changes
from sealmail.contacts.changes import Actor, ChangeError, RateLimited
from sealmail.contacts.forms import KEY_MAX_BYTES
from sealmail.contacts.mail import fingerprint_groups
from sealmail.contacts.models import Contact, PendingChange
from sealmail.core.errors import KeyRejected
from sealmail.core.pgp.inspect import inspect_key
from sealmail.project.proxies import client_address

logger = logging.getLogger(__name__)

router = Router(auth=[TokenAuth(), django_auth], tags=["contacts"])


class PendingOut(Schema):
    id: int
    sent_to: str
    encrypted_to: str | None
    expires: datetime


class ContactOut(Schema):
    id: int
    account_number: str
    address: str
    role: str
    mode: str
    encryption: str
    active_key_fingerprint: str | None
    pending_change: PendingOut | None


class KeyIn(Schema):
    key: str = Field(
        description="the ASCII-armored public key", max_length=KEY_MAX_BYTES
    )
    address: str | None = Field(
        default=None, description="new contact address; the current one if left out"
    )


class KeyReportOut(Schema):
    fingerprint: str
    fingerprint_groups: str
    version: int
    algorithm: str
    user_ids: list[str]
    expires: datetime | None
    warnings: list[str]


class KeyAccepted(Schema):
    change: PendingOut
    key: KeyReportOut


class Problem(Schema):
    """An error body: ``detail`` for people, ``reason`` as a stable code.

    A body that is not JSON at all gets ninja's own 400 without a reason.
    """

    detail: str
    reason: str | None = None


class DetailOut(Schema):
    detail: str


class ValidationErrorOut(Schema):
    """The body of a 422 response: where the request did not match the schema."""

    detail: list[dict[str, Any]]


# Responses every route may give besides its own: a missing token or CSRF
# token, an unknown or foreign contact, a body over the size limit, and a
# request that does not match the schema.
COMMON_ERRORS: dict[int, type[Schema]] = {
    401: DetailOut,
    403: DetailOut,
    404: DetailOut,
    413: DetailOut,
    422: ValidationErrorOut,
}


def _contact_for(request: HttpRequest, contact_id: int) -> Contact:
    contacts = Contact.objects.select_related("customer", "active_key")
    if not isinstance(request.auth, ApiToken):
        contacts = contacts.filter(customer__users=request.auth)
    contact = contacts.filter(pk=contact_id).first()
    if contact is None:
        raise HttpError(404, f"contact {contact_id} not found")
    return contact


def _actor(request: HttpRequest) -> Actor:
    if isinstance(request.auth, ApiToken):
        return Actor(
            f"api:{request.auth.name}", client_address(request), api_client=True
        )
    return Actor(request.auth.get_username(), client_address(request), request.auth.pk)


def _pending_out(change: PendingChange | None) -> dict | None:
    if change is None:
        return None
    return {
        "id": change.pk,
        "sent_to": change.sent_to,
        "encrypted_to": change.sent_encrypted_to or None,
        "expires": change.expires,
    }


@router.get("/{contact_id}", response={200: ContactOut, **COMMON_ERRORS})
def get_contact(request: HttpRequest, contact_id: int) -> dict:
    """Return a contact's address, role, mode, encryption status and active key."""
    contact = _contact_for(request, contact_id)
    pending = contact.changes.filter(state=PendingChange.State.PENDING).first()
    return {
        "id": contact.pk,
        "account_number": contact.customer.account_number,
        "address": contact.address,
        "role": contact.role,
        "mode": contact.mode,
        "encryption": contact.encryption,
        "active_key_fingerprint": (
            contact.active_key.fingerprint.upper() if contact.active_key else None
        ),
        "pending_change": _pending_out(pending),
    }


@router.post(
    "/{contact_id}/key",
    response={202: KeyAccepted, 400: Problem, 429: Problem, **COMMON_ERRORS},
)
def register_key(
    request: HttpRequest, contact_id: int, body: KeyIn
) -> tuple[int, dict]:
    """Start the key confirmation: the new key is active only once the contact confirms.

    The confirmation mail goes to ``address`` (or the current address),
    encrypted to the new key.
    """
    contact = _contact_for(request, contact_id)
    address = (body.address or contact.address).strip()
    try:
        validate_email(address)
    except ValidationError:
        return Status(
            400,
            {
                "reason": "invalid_address",
                "detail": f"{address!r} is not a valid email address; "
                "give one like name@example.net",
            },
        )
    try:
        report = inspect_key(body.key)
    except KeyRejected as exc:
        logger.info("API key for contact %s rejected: %s", contact.pk, exc.reason)
        return Status(400, {"reason": exc.reason, "detail": exc.message})
    try:
        change = changes.request_change(
            contact,
            address=address,
            mode=contact.mode,
            report=report,
            remove_key=False,
            actor=_actor(request),
        )
    except RateLimited as exc:
        return Status(429, {"reason": "rate_limited", "detail": str(exc)})
    except ChangeError as exc:
        return Status(400, {"reason": "change_rejected", "detail": str(exc)})
    return Status(
        202,
        {
            "change": _pending_out(change),
            "key": {
                "fingerprint": report.fingerprint.upper(),
                "fingerprint_groups": fingerprint_groups(report.fingerprint),
                "version": report.version,
                "algorithm": report.algorithm,
                "user_ids": list(report.user_ids),
                "expires": report.expires,
                "warnings": list(report.warnings),
            },
        },
    )
