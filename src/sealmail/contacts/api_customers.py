"""``POST /api/v1/customers``: create or update a customer and its contacts."""

from __future__ import annotations

import logging
from typing import Literal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from sealmail.contacts.models import Contact, Customer
from sealmail.outbox.api import COMMON_ERRORS, ErrorOut

logger = logging.getLogger(__name__)

router = Router(tags=["customers"])

MAX_CONTACTS = 100

RoleName = Literal[tuple(Contact.Role.values)]  # type: ignore[valid-type]
ModeName = Literal[tuple(Contact.Mode.values)]  # type: ignore[valid-type]


class ContactIn(Schema):
    address: str = Field(..., description="email address")
    role: RoleName = Contact.Role.GENERAL
    mode: ModeName | None = Field(
        None, description="pgpmime (default for new contacts) or inline"
    )


class CustomerIn(Schema):
    """A customer by account number; listed contacts are added or updated.

    Contacts are matched by role and address. Contacts not listed stay as
    they are, and so do keys and encryption settings, which only the
    customer changes in the portal.
    """

    account_number: str = Field(..., min_length=1, max_length=64)
    name: str = Field(..., min_length=1, max_length=200)
    contacts: list[ContactIn] = Field(default_factory=list)


class ContactOut(Schema):
    id: int
    address: str
    role: str
    mode: str
    encryption: str


class CustomerOut(Schema):
    account_number: str
    name: str
    contacts: list[ContactOut]


class CustomerError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _validate(payload: CustomerIn) -> list[tuple[str, str, str | None]]:
    number = payload.account_number.strip()
    if (
        not number
        or number != payload.account_number
        or any(c.isspace() for c in number)
    ):
        raise CustomerError(
            "account_number",
            f"account number {payload.account_number!r} contains spaces; give it "
            "without spaces, like K-1001",
        )
    if not number.isprintable():
        raise CustomerError(
            "account_number",
            f"account number {payload.account_number!r} contains control "
            "characters; remove them",
        )
    if not payload.name.strip():
        raise CustomerError("name", "name is empty; give the customer's name")
    if not payload.name.isprintable():
        raise CustomerError(
            "name", f"name {payload.name!r} contains control characters; remove them"
        )
    if len(payload.contacts) > MAX_CONTACTS:
        raise CustomerError(
            "contacts",
            f"{len(payload.contacts)} contacts given; the maximum per customer is "
            f"{MAX_CONTACTS}",
        )
    rows = []
    seen = set()
    for index, item in enumerate(payload.contacts):
        address = item.address.strip()
        try:
            validate_email(address)
        except ValidationError:
            raise CustomerError(
                f"contacts[{index}].address",
                f"{item.address!r} is not an email address; give one like "
                "name@example.net",
            ) from None
        key = (item.role, address.lower())
        if key in seen:
            raise CustomerError(
                f"contacts[{index}]",
                f"{address} is listed twice with role {item.role!r}; list it once",
            )
        seen.add(key)
        rows.append((address, item.role, item.mode))
    return rows


def _out(customer: Customer) -> dict:
    return {
        "account_number": customer.account_number,
        "name": customer.name,
        "contacts": [
            {
                "id": contact.pk,
                "address": contact.address,
                "role": contact.role,
                "mode": contact.mode,
                "encryption": contact.encryption,
            }
            for contact in customer.contacts.order_by("id")
        ],
    }


def _upsert(
    payload: CustomerIn, rows: list[tuple[str, str, str | None]]
) -> tuple[Customer, bool]:
    with transaction.atomic():
        customer, created = Customer.objects.get_or_create(
            account_number=payload.account_number,
            defaults={"name": payload.name.strip()},
        )
        if not created and customer.name != payload.name.strip():
            customer.name = payload.name.strip()
            customer.save(update_fields=["name", "updated"])
        for address, role, mode in rows:
            contact = Contact.objects.filter(
                customer=customer, role=role, address__iexact=address
            ).first()
            if contact is None:
                Contact.objects.create(
                    customer=customer,
                    address=address,
                    role=role,
                    mode=mode or Contact.Mode.PGPMIME,
                )
            elif mode is not None and contact.mode != mode:
                contact.mode = mode
                contact.save(update_fields=["mode", "updated"])
    return customer, created


@router.post(
    "",
    response={200: CustomerOut, 201: CustomerOut, 400: ErrorOut, **COMMON_ERRORS},
    summary="Create or update a customer and its contacts",
)
def upsert_customer(request: HttpRequest, payload: CustomerIn):
    """Create the customer (201) or update its name and contacts (200)."""
    try:
        rows = _validate(payload)
        try:
            customer, created = _upsert(payload, rows)
        except IntegrityError:
            # A concurrent call created the same customer or contact first.
            customer, created = _upsert(payload, rows)
    except CustomerError as exc:
        return Status(400, {"detail": exc.message, "field": exc.field})
    logger.info(
        "customer %d %s by %s",
        customer.pk,
        "created" if created else "updated",
        request.auth.name,
    )
    return Status(201 if created else 200, _out(customer))


@router.get(
    "/{account_number}",
    response={200: CustomerOut, 404: ErrorOut, **COMMON_ERRORS},
    summary="A customer and its contacts",
)
def get_customer(request: HttpRequest, account_number: str):
    customer = Customer.objects.filter(account_number=account_number).first()
    if customer is None:
        return Status(
            404,
            {
                "detail": f"customer {account_number!r} not found; create it with "
                "POST /api/v1/customers",
                "field": "account_number",
            },
        )
    return Status(200, _out(customer))
