"""The portal in a real browser, with real mail through the outbox and GnuPG.

A customer logs in, pastes a key made by GnuPG, reads the confirmation mail
from the Maildir with gpg, confirms, and finds encryption active. Then the
customer changes the address, and the previous address receives a notice that
gpg decrypts with the customer's secret key.
"""

from __future__ import annotations

import email
import mailbox
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from sealmail.contacts.models import Contact, Customer
from sealmail.keys.store import get_keystore
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser test password 1"
ARMORED_MESSAGE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", re.S)
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/\d+/[A-Za-z0-9_-]+/")


def messages_to(address: str) -> list[EmailMessage]:
    """Return the messages in the Maildir addressed to ``address``, oldest first."""
    box = mailbox.Maildir(settings.MAILDIR, create=False)
    found = []
    for key in box.keys():
        raw = box.get_bytes(key)
        message = email.message_from_bytes(raw, policy=policy.default)
        if address in str(message.get("To", "")):
            found.append((message.get("Date"), raw))
    return [email.message_from_bytes(raw, policy=policy.default) for _, raw in sorted(found, key=lambda item: str(item[0]))]


def decrypt_text(gpg: GnuPG, message: EmailMessage) -> str:
    """Decrypt an encrypted message with gpg and return its readable text."""
    blocks = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        blocks += ARMORED_MESSAGE.findall(payload)
    assert blocks, f"the message is not encrypted:\n{message}"
    result = gpg.decrypt(blocks[0])
    assert "DECRYPTION_OKAY" in result.status
    inner = email.message_from_bytes(result.stdout, policy=policy.default)
    texts = [
        part.get_content()
        for part in inner.walk()
        if part.get_content_type() == "text/plain"
    ]
    return "\n".join(texts) if inner.get("Content-Type") else result.stdout.decode()


@pytest.fixture
def outbox_runs_inline(settings) -> None:
    # The outbox task runs inside the request that queues it, so the mail is
    # in the Maildir when the response arrives.
    from huey.contrib.djhuey import HUEY

    previous = HUEY.immediate
    HUEY.immediate = True
    yield
    HUEY.immediate = previous


@pytest.fixture
def customer_gpg(tmp_path: Path) -> GnuPG:
    return GnuPG(tmp_path / "gnupg")


def shoot(page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_register_key_and_change_address(
    page, live_server, settings, outbox_runs_inline, customer_gpg, screenshot_dir
) -> None:
    settings.SEALMAIL_BASE_URL = live_server.url
    store = get_keystore()
    if store.is_empty():
        store.generate([f"<{settings.SEALMAIL_FROM}>"])
    fingerprint = customer_gpg.generate("Carol <carol@customer.test>")
    customer_gpg.import_key(str(store.certificates()[0]).encode())
    customer = Customer.objects.create(account_number="C-3003", name="Carol's Bakery")
    user = get_user_model().objects.create_user("carol", "carol@customer.test", PASSWORD)
    customer.users.add(user)
    contact = Contact.objects.create(customer=customer, address="carol@customer.test")

    page.goto(live_server.url + "/")
    shoot(page, screenshot_dir, "01-home")
    page.click("text=Log in")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    shoot(page, screenshot_dir, "02-login")
    page.click("button:has-text('Log in')")
    page.wait_for_selector("text=Your contacts")
    shoot(page, screenshot_dir, "03-contacts")

    page.click("text=Update contact")
    page.wait_for_selector("h1:has-text('Update contact')")
    shoot(page, screenshot_dir, "04-update")
    page.fill("#id_key_text", customer_gpg.export(fingerprint).decode())
    page.click("button:has-text('Check key only')")
    groups = " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))
    page.wait_for_selector(f"text={groups}")
    shoot(page, screenshot_dir, "05-key-checked")
    page.click("button:has-text('Save and send confirmation')")
    page.wait_for_selector("text=We sent a confirmation link")
    shoot(page, screenshot_dir, "06-pending")
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.PENDING

    confirmation = messages_to("carol@customer.test")[-1]
    text = decrypt_text(customer_gpg, confirmation)
    link = CONFIRM_LINK.search(text).group(0)
    page.goto(link)
    page.wait_for_selector("button:has-text('Confirm')")
    shoot(page, screenshot_dir, "07-confirm")
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.PENDING
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=Encryption active")
    shoot(page, screenshot_dir, "08-confirmed")
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert contact.active_key.fingerprint.upper() == fingerprint

    page.goto(live_server.url + "/")
    page.wait_for_selector("text=Encryption active")
    page.set_viewport_size({"width": 390, "height": 800})
    shoot(page, screenshot_dir, "08b-contacts-narrow")
    page.click("text=Update contact")
    shoot(page, screenshot_dir, "08c-update-narrow")
    page.set_viewport_size({"width": 1100, "height": 900})
    page.fill("#id_address", "carol@bakery.test")
    page.click("button:has-text('Save and send confirmation')")
    page.wait_for_selector("text=We sent a confirmation link to carol@bakery.test")
    shoot(page, screenshot_dir, "09-address-pending")
    contact.refresh_from_db()
    assert contact.address == "carol@customer.test"

    text = decrypt_text(customer_gpg, messages_to("carol@bakery.test")[-1])
    page.goto(CONFIRM_LINK.search(text).group(0))
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=Change confirmed")
    contact.refresh_from_db()
    assert contact.address == "carol@bakery.test"

    notice = messages_to("carol@customer.test")[-1]
    assert notice is not confirmation
    notice_text = decrypt_text(customer_gpg, notice)
    assert "carol@bakery.test" in notice_text
    assert "If you did not make this change" in notice_text


def test_rejected_secret_key_page(page, live_server, settings, customer_gpg, screenshot_dir) -> None:
    settings.SEALMAIL_BASE_URL = live_server.url
    fingerprint = customer_gpg.generate("Dave <dave@customer.test>")
    customer = Customer.objects.create(account_number="C-4004", name="Dave's Garage")
    user = get_user_model().objects.create_user("dave", "dave@customer.test", PASSWORD)
    customer.users.add(user)
    contact = Contact.objects.create(customer=customer, address="dave@customer.test")
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "dave")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.goto(f"{live_server.url}/contacts/{contact.pk}/")
    page.fill("#id_key_text", customer_gpg.export(fingerprint, secret=True).decode())
    page.click("button:has-text('Save and send confirmation')")
    page.wait_for_selector("[role=alert]")
    shoot(page, screenshot_dir, "10-secret-key-rejected")
    alert = page.inner_text("[role=alert]")
    assert "secret" in alert
    assert "did not store" in alert
    assert page.input_value("#id_key_text") == ""
    assert not contact.keys.exists()
