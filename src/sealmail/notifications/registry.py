"""The registry that maps the provider's line and order ids to customers.

The monitoring and ordering systems keep it in sync through the API, or an
operator imports a CSV file. :func:`sync` validates the whole batch before
it writes anything, so a bad row never leaves the registry half updated.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from sealmail.contacts.models import Customer
from sealmail.notifications.mail import chunks
from sealmail.notifications.models import Line, Order

logger = logging.getLogger(__name__)

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 200


class RegistryError(ValueError):
    """A registry entry is invalid; the message names the entry and the fix."""


@dataclass(frozen=True)
class Entry:
    """One line or order: its id, its customer's account number and a label."""

    item_id: str
    account_number: str
    label: str = ""


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)


KINDS: dict[str, tuple[type[Line] | type[Order], str]] = {
    "lines": (Line, "line_id"),
    "orders": (Order, "order_id"),
}


def _model(kind: str) -> tuple[type[Line] | type[Order], str]:
    try:
        return KINDS[kind]
    except KeyError:
        raise RegistryError(
            f"registry {kind!r} is unknown; use 'lines' or 'orders'"
        ) from None


def _validate(entries: Sequence[Entry], noun: str) -> list[str]:
    errors = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"entry {index}"
        if not entry.item_id:
            errors.append(f"{where}: the {noun} id is empty")
        elif len(entry.item_id) > MAX_ID_CHARS or not entry.item_id.isprintable():
            errors.append(
                f"{where}: {noun} id {entry.item_id[:40]!r} is invalid; use at most "
                f"{MAX_ID_CHARS} printable characters"
            )
        elif entry.item_id in seen:
            errors.append(f"{where}: {noun} id {entry.item_id!r} is listed twice")
        seen.add(entry.item_id)
        if not entry.account_number:
            errors.append(
                f"{where}: the account number of {noun} {entry.item_id!r} is empty"
            )
        elif not entry.account_number.isprintable():
            errors.append(f"{where}: the account number contains a control character")
        if not entry.label.isprintable():
            errors.append(
                f"{where}: the label contains a line break or control character"
            )
        if len(entry.label) > MAX_LABEL_CHARS:
            errors.append(
                f"{where}: the label of {noun} {entry.item_id!r} has {len(entry.label)} "
                f"characters; the maximum is {MAX_LABEL_CHARS}"
            )
    return errors


def sync(
    kind: str,
    entries: Iterable[Entry],
    *,
    replace: bool = False,
    dry_run: bool = False,
) -> SyncResult:
    """Create or update the ``kind`` registry ("lines" or "orders") from ``entries``.

    With ``replace`` every entry of that registry not in ``entries`` is
    deleted, with its events. Raises :class:`RegistryError` listing every
    invalid entry and unknown account number; nothing is written then.
    """
    model, id_field = _model(kind)
    noun = kind[:-1]
    entries = [
        Entry(e.item_id.strip(), e.account_number.strip(), e.label.strip())
        for e in entries
    ]
    errors = _validate(entries, noun)
    numbers = {entry.account_number for entry in entries}
    customers: dict[str, int] = {}
    for chunk in chunks(sorted(numbers)):
        for pk, number in Customer.objects.filter(account_number__in=chunk).values_list(
            "pk", "account_number"
        ):
            customers[number] = pk
    unknown = sorted(number for number in numbers if number and number not in customers)
    if unknown:
        shown = ", ".join(repr(number) for number in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        errors.append(
            f"unknown account number {shown}{more}; create the customer first "
            "(POST /api/v1/customers)"
        )
    if errors:
        raise RegistryError("; ".join(errors[:50]))

    result = SyncResult()
    now = timezone.now()
    with transaction.atomic():
        existing = {}
        for chunk in chunks([entry.item_id for entry in entries]):
            for item in model.objects.filter(**{f"{id_field}__in": chunk}):
                existing[getattr(item, id_field)] = item
        to_create = []
        to_update = []
        for entry in entries:
            customer_id = customers[entry.account_number]
            item = existing.get(entry.item_id)
            if item is None:
                to_create.append(
                    model(
                        **{id_field: entry.item_id},
                        customer_id=customer_id,
                        label=entry.label,
                    )
                )
            elif item.customer_id != customer_id or item.label != entry.label:
                item.customer_id = customer_id
                item.label = entry.label
                item.updated = now  # bulk_update skips auto_now
                to_update.append(item)
            else:
                result.unchanged += 1
        model.objects.bulk_create(to_create, batch_size=500)
        model.objects.bulk_update(
            to_update, ["customer", "label", "updated"], batch_size=500
        )
        result.created = len(to_create)
        result.updated = len(to_update)
        if replace:
            keep = {entry.item_id for entry in entries}
            stale = [
                pk
                for pk, item_id in model.objects.values_list("pk", id_field)
                if item_id not in keep
            ]
            for chunk in chunks(stale):
                _, per_model = model.objects.filter(pk__in=chunk).delete()
                # delete() also counts the cascaded events; count the registry rows.
                result.deleted += per_model.get(model._meta.label, 0)
        if dry_run:
            transaction.set_rollback(True)
    logger.info(
        "%s registry sync%s: %d created, %d updated, %d unchanged, %d deleted",
        noun,
        " (dry run)" if dry_run else "",
        result.created,
        result.updated,
        result.unchanged,
        result.deleted,
    )
    return result


def parse_csv(text: str, kind: str) -> list[Entry]:
    """Parse a registry CSV with a header row: ``id,account_number,label``.

    ``line_id`` or ``order_id`` may stand for ``id``, and ``label`` may be
    missing. Raises :class:`RegistryError` naming the row and the fix.
    """
    _model(kind)
    noun = kind[:-1]
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    if not header:
        raise RegistryError(
            "the CSV file is empty; give a header row id,account_number,label"
        )
    reader.fieldnames = header
    id_column = f"{noun}_id" if f"{noun}_id" in header else "id"
    missing = [name for name in (id_column, "account_number") if name not in header]
    if missing:
        raise RegistryError(
            f"the CSV header {','.join(header)!r} is missing {', '.join(missing)}; "
            f"use the columns {noun}_id,account_number,label"
        )
    entries = []
    for row in reader:
        if None in row:
            raise RegistryError(
                f"CSV line {reader.line_num} has more fields than the header; "
                "quote values that contain commas"
            )
        values = {key: (value or "").strip() for key, value in row.items()}
        if not any(values.values()):
            continue
        entries.append(
            Entry(values[id_column], values["account_number"], values.get("label", ""))
        )
    return entries
