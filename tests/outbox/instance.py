"""Commands run inside a separate sealmail instance that the environment configures.

``python -m tests.outbox.instance setup N`` creates N customers with one
contact each (every second one with an active key), ``enqueue`` queues one
message to all of them, ``report`` prints the outbox as JSON. The worker
test and the benchmark drive real ``sealmail worker`` processes against
such an instance.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sealmail.project.settings")
django.setup()

import pysequoia
from django.db.models import Count

from sealmail.contacts.models import Contact, ContactKey, Customer
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.service import contacts_of, enqueue_bulk

SECRET = "secret body text 7d1f"


def setup(count: int, encrypted_every: int = 2) -> None:
    tsk = pysequoia.Tsk.generate(
        user_ids=["Customer <customer@customer.test>"],
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    )
    cert = tsk.extract_certificate()
    customers = Customer.objects.bulk_create(
        Customer(account_number=f"K-{number:06d}", name=f"Customer {number}")
        for number in range(count)
    )
    contacts = Contact.objects.bulk_create(
        Contact(customer=customer, address=f"c{index}@customer.test")
        for index, customer in enumerate(customers)
    )
    keys = ContactKey.objects.bulk_create(
        ContactKey(
            contact=contact,
            fingerprint=cert.fingerprint.lower(),
            certificate=bytes(cert),
            version=4,
            algorithm="ed25519/cv25519",
            user_ids=[str(uid) for uid in cert.user_ids],
            key_created=datetime.now(UTC),
            usable_until=cert.expiration,
        )
        for index, contact in enumerate(contacts)
        if index % encrypted_every == 0
    )
    for key in keys:
        Contact.objects.filter(pk=key.contact_id).update(
            active_key=key, encryption=Contact.Encryption.ACTIVE
        )
    print(json.dumps({"customers": len(customers), "encrypted": len(keys)}))


def enqueue() -> None:
    contacts = contacts_of(Customer.objects.all())
    messages = enqueue_bulk(
        contacts, category="custom", subject="Planned maintenance", text=SECRET
    )
    print(json.dumps({"enqueued": len(messages)}))


def report() -> None:
    counts = dict(OutboxMessage.objects.values_list("status").annotate(n=Count("id")))
    rows = OutboxMessage.objects.values_list("message_id", "format", "attempts")
    print(
        json.dumps(
            {
                "counts": counts,
                "formats": dict(
                    OutboxMessage.objects.values_list("format").annotate(n=Count("id"))
                ),
                "message_ids": len({row[0] for row in rows}),
                "max_attempts": max((row[2] for row in rows), default=0),
            }
        )
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"setup": setup, "enqueue": enqueue, "report": report}[command](*map(int, args))
