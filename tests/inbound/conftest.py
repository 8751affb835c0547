"""Fixtures for inbound mail: provider keys, customers' peers and a live SMTP/LMTP server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pysequoia
import pytest
from aiosmtpd.controller import Controller
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from sealmail.inbound.management.commands.smtpd import LMTPController
from sealmail.inbound.smtp import RoleAddressHandler, store_raw
from sealmail.keys.store import get_keystore
from tests.inbound.peers import PEERS, Peer
from tests.support import free_port


@dataclass(frozen=True)
class ProviderKeys:
    current: bytes  # armored certificate of the newest key
    rotated: bytes  # armored certificate of a key replaced by rotation
    role: bytes  # armored certificate of the support@ role key


@pytest.fixture(scope="session")
def provider_keys() -> ProviderKeys:
    """The current provider key, an older one kept after rotation and a support role key.

    The current key is left as other tests made it, so their signing key stays.
    """
    store = get_keystore()
    if store.is_empty():
        store.generate(["<billing@provider.test>"])
    current = store.certificate()
    older = pysequoia.Tsk.generate(
        "<billing@provider.test>", cipher_suite=pysequoia.CipherSuite.Cv25519
    )
    store.import_key(bytes(older), make_current=False)
    rotated = older.extract_certificate()
    role = store.generate(["<support@provider.test>"], role="support@provider.test")
    return ProviderKeys(
        current=str(current).encode(),
        rotated=str(rotated).encode(),
        role=str(role).encode(),
    )


@pytest.fixture(scope="session")
def peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Peer]:
    by_name = {
        peer_class.name: peer_class(
            tmp_path_factory.mktemp(peer_class.name), f"{peer_class.name}@customer.test"
        )
        for peer_class in PEERS
    }
    # Sequoia rejects a signature made in the same second its key was created.
    time.sleep(1.1)
    return by_name


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Peer:
    """Someone with a valid key who is not a customer."""
    peer = PEERS[0](tmp_path_factory.mktemp("stranger"), "stranger@elsewhere.test")
    time.sleep(1.1)
    return peer


def register(peer: Peer, *, account: str | None = None, encryption: str = "active"):
    """Create a customer whose contact has ``peer``'s key as its confirmed key."""
    from sealmail.contacts.models import Contact, ContactKey, Customer

    customer = Customer.objects.create(
        account_number=account or f"ACC-{peer.name}", name=f"Customer of {peer.name}"
    )
    contact = Contact.objects.create(customer=customer, address=peer.address)
    cert = pysequoia.Cert.from_bytes(peer.certificate())
    key = ContactKey.objects.create(
        contact=contact,
        fingerprint=cert.fingerprint,
        certificate=bytes(cert),
        version=4,
        algorithm="test",
        key_created=timezone.now(),
    )
    if encryption == "active":
        contact.encryption = Contact.Encryption.ACTIVE
        contact.active_key = key
        contact.save()
    return contact


@pytest.fixture
def registered(db, peers: dict[str, Peer]) -> dict[str, object]:
    return {name: register(peer) for name, peer in peers.items()}


@pytest.fixture
def no_acknowledgement(settings) -> None:
    settings.SEALMAIL_INBOUND_ACKNOWLEDGE = False


@pytest.fixture
def immediate_queue() -> Iterator[None]:
    """Run Huey tasks inline, so storing a message also parses it."""
    from huey.contrib.djhuey import HUEY

    previous = HUEY.immediate
    HUEY.immediate = True
    yield
    HUEY.immediate = previous


def _server(protocol: str, max_bytes: int = 1024 * 1024) -> Controller:
    handler = RoleAddressHandler(settings.SEALMAIL_ROLE_ADDRESSES, store_raw, max_bytes)
    controller_class = LMTPController if protocol == "lmtp" else Controller
    return controller_class(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        data_size_limit=max_bytes,
        decode_data=False,
    )


@pytest.fixture(autouse=True)
def close_server_connections() -> Iterator[None]:
    """Close the database connection the server's store thread keeps open.

    The server stores through asgiref's shared thread, which outlives a
    test; its open connection would keep PostgreSQL from dropping the test
    database.
    """
    yield
    # A thread of its own: an earlier test (Playwright's sync API) may leave
    # an event loop running in this one, where asyncio.run() cannot start.
    closer = threading.Thread(
        target=asyncio.run,
        args=(sync_to_async(connections.close_all, thread_sensitive=True)(),),
    )
    closer.start()
    closer.join()


@pytest.fixture
def mail_server(request: pytest.FixtureRequest) -> Iterator[Controller]:
    """A live inbound server on a free loopback port; the protocol comes from ``param``."""
    controller = _server(getattr(request, "param", "smtp"))
    controller.start()
    yield controller
    controller.stop()
