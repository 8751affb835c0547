"""Events API: line status and order progress, and the line and order registries.

Every route uses the API's bearer tokens (``sealmail apitoken create NAME``).
"""

from __future__ import annotations

from typing import Literal

from django.db import transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.responses import Status
from pydantic import AwareDatetime, model_validator

from sealmail.notifications import events, registry
from sealmail.notifications.models import Line, Order

router = Router(tags=["events"])

# One event may name every line behind a failed device; the request size
# limit of the web server applies as well.
MAX_LINES_PER_EVENT = 50_000
MAX_REGISTRY_ENTRIES = 100_000


class Error(Schema):
    detail: str


class LineStatusIn(Schema):
    line_id: str | None = Field(None, max_length=128, description="one line")
    line_ids: list[str] | None = Field(
        None,
        max_length=MAX_LINES_PER_EVENT,
        description="several lines with the same change, for example an outage",
    )
    state: Literal["up", "down"]
    time: AwareDatetime | None = Field(
        None, description="when the change happened, with a UTC offset; default now"
    )
    reason: str = Field("", max_length=500)
    event_id: str = Field(
        "", max_length=128, description="the sender's id; a repeated id is ignored"
    )

    @model_validator(mode="after")
    def one_of_line_fields(self) -> LineStatusIn:
        if (self.line_id is None) == (self.line_ids is None):
            raise ValueError("give either line_id or line_ids, not both or neither")
        return self


class LineStatusOut(Schema):
    recorded: int = Field(
        description="lines whose event was stored; the worker mails them shortly"
    )
    duplicates: int = Field(description="lines that already have this event_id")
    unknown_line_ids: list[str]


class OrderProgressIn(Schema):
    order_id: str = Field(max_length=128)
    stage: str = Field(max_length=100, description="for example 'shipped'")
    text: str = Field("", max_length=10_000, description="details for the customer")
    time: AwareDatetime | None = None
    event_id: str = Field("", max_length=128)


class OrderProgressOut(Schema):
    event: int
    duplicate: bool
    messages: int


@router.post(
    "/events/line-status",
    response={202: LineStatusOut, 400: Error, 404: Error},
    summary="Report that one or many lines went up or down",
    description=(
        "Stores the event and returns 202 at once. A worker applies the flap "
        "window rules and sends the mails a few seconds later, together with "
        "the other events received meanwhile."
    ),
)
def line_status(request: HttpRequest, payload: LineStatusIn):
    line_ids = [payload.line_id] if payload.line_id is not None else payload.line_ids
    try:
        result = events.record_line_events(
            line_ids or [],
            payload.state,
            occurred=payload.time,
            reason=payload.reason,
            source_id=payload.event_id,
        )
    except events.EventError as exc:
        return Status(exc.status, {"detail": exc.message})
    return Status(
        202,
        {
            "recorded": result.recorded,
            "duplicates": result.duplicates,
            "unknown_line_ids": result.unknown_line_ids,
        },
    )


@router.post(
    "/events/order-progress",
    response={200: OrderProgressOut, 400: Error, 404: Error},
    summary="Report that an order reached a new stage",
)
def order_progress(request: HttpRequest, payload: OrderProgressIn):
    try:
        result = events.record_order_event(
            payload.order_id,
            payload.stage,
            text=payload.text,
            occurred=payload.time,
            source_id=payload.event_id,
        )
    except events.EventError as exc:
        return Status(exc.status, {"detail": exc.message})
    return Status(
        200,
        {
            "event": result.event.pk,
            "duplicate": result.duplicate,
            "messages": result.messages,
        },
    )


class LineEntry(Schema):
    line_id: str = Field(max_length=128)
    account_number: str = Field(max_length=64)
    label: str = Field("", max_length=200)


class OrderEntry(Schema):
    order_id: str = Field(max_length=128)
    account_number: str = Field(max_length=64)
    label: str = Field("", max_length=200)


class LineSyncIn(Schema):
    entries: list[LineEntry] = Field(max_length=MAX_REGISTRY_ENTRIES)
    replace: bool = Field(False, description="delete lines that are not listed")


class OrderSyncIn(Schema):
    entries: list[OrderEntry] = Field(max_length=MAX_REGISTRY_ENTRIES)
    replace: bool = Field(False, description="delete orders that are not listed")


class SyncOut(Schema):
    created: int
    updated: int
    unchanged: int
    deleted: int


class RegistryItemOut(Schema):
    id: str
    account_number: str
    label: str


def _sync(kind: str, entries: list[registry.Entry], replace: bool):
    try:
        result = registry.sync(kind, entries, replace=replace)
    except registry.RegistryError as exc:
        return Status(400, {"detail": str(exc)})
    return Status(
        200,
        {
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "deleted": result.deleted,
        },
    )


@router.put(
    "/registry/lines",
    response={200: SyncOut, 400: Error},
    tags=["registry"],
    summary="Create or update lines; with replace, the list is the whole registry",
)
def sync_lines(request: HttpRequest, payload: LineSyncIn):
    entries = [
        registry.Entry(e.line_id, e.account_number, e.label) for e in payload.entries
    ]
    return _sync("lines", entries, payload.replace)


@router.put(
    "/registry/orders",
    response={200: SyncOut, 400: Error},
    tags=["registry"],
    summary="Create or update orders; with replace, the list is the whole registry",
)
def sync_orders(request: HttpRequest, payload: OrderSyncIn):
    entries = [
        registry.Entry(e.order_id, e.account_number, e.label) for e in payload.entries
    ]
    return _sync("orders", entries, payload.replace)


def _find(model: type[Line] | type[Order], id_field: str, item_id: str):
    # PostgreSQL rejects NUL in a query, and no stored id contains one.
    if "\x00" in item_id:
        return model.objects.none()
    return model.objects.filter(**{id_field: item_id})


def _get(model: type[Line] | type[Order], id_field: str, item_id: str):
    item = _find(model, id_field, item_id).select_related("customer").first()
    if item is None:
        noun = id_field.removesuffix("_id")
        return Status(404, {"detail": f"{noun} {item_id!r} is not in the registry"})
    return Status(
        200,
        {
            "id": getattr(item, id_field),
            "account_number": item.customer.account_number,
            "label": item.label,
        },
    )


def _delete(model: type[Line] | type[Order], id_field: str, item_id: str):
    with transaction.atomic():
        _, per_model = _find(model, id_field, item_id).delete()
    if not per_model.get(model._meta.label):
        noun = id_field.removesuffix("_id")
        return Status(404, {"detail": f"{noun} {item_id!r} is not in the registry"})
    return Status(204, None)


@router.get(
    "/registry/lines/{line_id}",
    response={200: RegistryItemOut, 404: Error},
    tags=["registry"],
)
def get_line(request: HttpRequest, line_id: str):
    return _get(Line, "line_id", line_id)


@router.delete(
    "/registry/lines/{line_id}",
    response={204: None, 404: Error},
    tags=["registry"],
    summary="Remove a line and its events",
)
def delete_line(request: HttpRequest, line_id: str):
    return _delete(Line, "line_id", line_id)


@router.get(
    "/registry/orders/{order_id}",
    response={200: RegistryItemOut, 404: Error},
    tags=["registry"],
)
def get_order(request: HttpRequest, order_id: str):
    return _get(Order, "order_id", order_id)


@router.delete(
    "/registry/orders/{order_id}",
    response={204: None, 404: Error},
    tags=["registry"],
    summary="Remove an order and its events",
)
def delete_order(request: HttpRequest, order_id: str):
    return _delete(Order, "order_id", order_id)
