"""Inbound mail written by OpenPGP.js, sqop and pgpainless-cli, in every shape.

tests/inbound covers GnuPG, sq, RNP and gosop as senders; this module adds
the remaining engines of the matrix. Each one encrypts and signs the shapes
customers' clients send (PGP/MIME combined and nested, inline PGP with damaged
armor, an encrypted attachment, the Exchange "mixed-up" form, signed-only and
cleartext-signed), and each stored message must carry the right status.

pgpainless-cli writes only the combined, inline and attachment shapes,
because each of its calls starts a JVM (2 to 5 s here). Those three shapes
exercise its encryption output, and the other shapes repeat the same
signing code.
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import LazySettings

from sealmail.inbound.management.commands.smtpd import LMTPController
from sealmail.inbound.models import InboundMessage
from sealmail.inbound.smtp import RoleAddressHandler, store_raw
from sealmail.keys.store import get_keystore
from tests.inbound import shapes
from tests.inbound.conftest import register
from tests.peers.openpgpjs import OpenPgpJsSender
from tests.peers.sop import SopSender
from tests.support import free_port

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Grüße aus Köln: my line is down since 9:00.\n"
ATTACHMENT = bytes(range(256)) * 40

# Shape -> (message encryption, whether the customer's signature covers the
# whole message). An attachment encrypted on its own is signed separately
# from the text, so neither signature covers the whole message.
EXPECTED_STATUS = {
    "combined": ("full", True),
    "nested": ("full", True),
    "inline": ("full", True),
    "attachment": ("full", False),
    "mixed_up": ("full", True),
    "signed": ("none", True),
    "clearsigned": ("none", True),
}
SHAPES_BY_SENDER = {
    "openpgpjs": list(EXPECTED_STATUS),
    "sqop": list(EXPECTED_STATUS),
    "pgpainless-cli": ["combined", "inline", "attachment"],
}


class Sender:
    """A customer in the form tests/inbound's shapes and register() expect."""

    can_clearsign = True

    def __init__(self, name: str, engine: Any, address: str) -> None:
        self.name = name
        self.engine = engine
        self.address = address

    def certificate(self) -> bytes:
        return self.engine.certificate()

    def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
        return self.engine.encrypt(data, recipient, sign=sign)

    def sign_detached(self, data: bytes) -> bytes:
        return self.engine.sign_detached(data)

    def clearsign(self, data: bytes) -> bytes:
        return self.engine.clearsign(data)


def make_sender(name: str, home: Path) -> Sender:
    address = f"{name}@customer.test"
    if name == "openpgpjs":
        engine: Any = OpenPgpJsSender(f"Customer {name}", address)
    else:
        engine = SopSender(name, home, f"Customer {name} <{address}>")
    # Sequoia rejects a signature made in the same second as its key.
    time.sleep(1.1)
    return Sender(name, engine, address)


def build(shape: str, sender: Sender, provider: bytes) -> bytes:
    if shape == "combined":
        return shapes.combined(
            sender,
            provider,
            "...",
            TEXT,
            protected_subject=f"Line down ({sender.name})",
        )
    if shape == "nested":
        return shapes.nested(sender, provider, "nested", TEXT)
    if shape == "inline":
        return shapes.inline(sender, provider, "inline", TEXT)
    if shape == "attachment":
        return shapes.attachment(
            sender, provider, "attachment", TEXT, ATTACHMENT, "report.pdf"
        )
    if shape == "mixed_up":
        return shapes.mixed_up(sender, provider, "mixed up", TEXT)
    if shape == "signed":
        return shapes.signed_only(sender, "signed only", TEXT)
    return shapes.clearsigned(sender, "clearsigned", TEXT)


@pytest.fixture
def lmtp_server(settings: LazySettings) -> Iterator[LMTPController]:
    handler = RoleAddressHandler(
        settings.SEALMAIL_ROLE_ADDRESSES, store_raw, 1024 * 1024
    )
    controller = LMTPController(
        handler, hostname="127.0.0.1", port=free_port(), decode_data=False
    )
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def immediate_parsing(settings: LazySettings) -> Iterator[None]:
    settings.SEALMAIL_INBOUND_ACKNOWLEDGE = False
    huey = settings.HUEY
    previous = huey.immediate
    huey.immediate = True
    yield
    huey.immediate = previous


@pytest.fixture
def role_certificate() -> bytes:
    store = get_keystore()
    if store.is_empty():
        store.generate(["<billing@provider.test>", "<support@provider.test>"])
    return str(store.certificates()[0]).encode()


def texts(message: InboundMessage) -> list[str]:
    return [
        part.text.replace("\r\n", "\n")
        for part in message.parts.all()
        if part.text.strip()
    ]


@pytest.fixture(scope="module")
def senders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sender]:
    """One sender per engine, made on first use and shared by the module's tests."""

    class Senders(dict):
        def __missing__(self, name: str) -> Sender:
            sender = make_sender(name, tmp_path_factory.mktemp(name))
            self[name] = sender
            return sender

    return Senders()


def shape_cells() -> Iterator[Any]:
    for sender_name, shape_names in SHAPES_BY_SENDER.items():
        for shape in shape_names:
            yield pytest.param(sender_name, shape, id=f"{sender_name}-{shape}")


@pytest.mark.parametrize(("sender_name", "shape"), list(shape_cells()))
def test_shape_gets_right_status(
    sender_name: str,
    shape: str,
    senders: dict[str, Sender],
    lmtp_server: LMTPController,
    immediate_parsing: None,
    role_certificate: bytes,
) -> None:
    sender = senders[sender_name]
    contact = register(sender)
    raw = build(shape, sender, role_certificate)

    with smtplib.LMTP(lmtp_server.hostname, lmtp_server.port, timeout=60) as client:
        assert client.sendmail(sender.address, [shapes.SUPPORT], raw) == {}

    message = InboundMessage.objects.get()
    assert bytes(message.raw) == raw
    assert message.state == InboundMessage.State.PARSED, message.parse_error
    encryption, signed_whole = EXPECTED_STATUS[shape]
    assert message.encryption == encryption, (message.failures, message.defects)
    signatures = [
        signature for part in message.parts.all() for signature in part.signatures
    ]
    assert signatures, "no signature recorded"
    for signature in signatures:
        assert signature["status"] == "good", signature
    assert message.signed_by_customer is signed_whole, signatures
    assert message.ticket.customer_id == contact.customer_id
    if shape == "combined":
        assert message.subject == f"Line down ({sender_name})"
        assert message.protected_headers is True
    if shape == "attachment":
        [file] = [part for part in message.parts.all() if part.filename]
        assert file.filename == "report.pdf"
        assert bytes(file.content) == ATTACHMENT
    elif shape == "clearsigned":
        assert TEXT.strip() in texts(message)[0]
    elif shape != "nested":
        assert texts(message) == [TEXT]


def test_compressed_signed_message_verified(
    lmtp_server: LMTPController,
    immediate_parsing: None,
    role_certificate: bytes,
    tmp_path: Path,
) -> None:
    """A combined PGP/MIME message whose encrypted payload sq compressed with ZIP.

    PGPainless compresses before encrypting, and so do other clients when
    the recipient's key prefers it. pysequoia 0.1.35's own verifier rejects
    that message structure.
    """
    from tests.inbound.peers import SequoiaPeer

    class CompressingSq(SequoiaPeer):
        def encrypt(self, data: bytes, recipient: bytes, *, sign: bool = True) -> bytes:
            path = self.home / "recipient-cert.asc"
            path.write_bytes(recipient)
            command = [
                self.sq,
                "encrypt",
                "--compression",
                "zip",
                "--recipient-cert",
                str(path),
            ]
            if sign:
                command += ["--signer-key", str(self.key)]
            proc = subprocess.run(
                command, input=data, capture_output=True, timeout=60, check=True
            )
            return proc.stdout

    sender = CompressingSq(tmp_path / "sq", "compressing-sq@customer.test")
    time.sleep(1.1)
    register(sender)
    raw = shapes.combined(
        sender, role_certificate, "...", TEXT, protected_subject="Zipped"
    )

    with smtplib.LMTP(lmtp_server.hostname, lmtp_server.port, timeout=60) as client:
        assert client.sendmail(sender.address, [shapes.SUPPORT], raw) == {}

    message = InboundMessage.objects.get()
    assert message.encryption == "full"
    assert message.signed_by_customer is True
