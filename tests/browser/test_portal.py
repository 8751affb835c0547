"""The portal in a real browser, with real mail through the outbox and GnuPG.

A customer logs in, pastes a key made by GnuPG, reads the confirmation mail
from the Maildir with gpg, confirms, and finds encryption active. Then the
customer changes the address, and the previous address receives a notice that
gpg decrypts with the customer's secret key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from sealmail.contacts.models import Contact, Customer
from tests.contacts.maildir import (
    CONFIRM_LINK,
    decrypt_text,
    messages_to,
    trust_provider,
)
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser test password 1"


@pytest.fixture
def customer_gpg(tmp_path: Path) -> GnuPG:
    return GnuPG(tmp_path / "gnupg")


def shoot(page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_register_key_and_change_address(
    page, live_server, settings, outbox_runs_inline, customer_gpg, screenshot_dir
) -> None:
    settings.SEALMAIL_BASE_URL = live_server.url
    trust_provider(customer_gpg)
    fingerprint = customer_gpg.generate("Carol <carol@customer.test>")
    customer = Customer.objects.create(account_number="C-3003", name="Carol's Bakery")
    user = get_user_model().objects.create_user(
        "carol", "carol@customer.test", PASSWORD
    )
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

    page.goto(link)
    page.wait_for_selector("text=already confirmed")
    shoot(page, screenshot_dir, "08a-link-used")

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

    to_previous = messages_to("carol@customer.test")
    assert len(to_previous) == 3  # key confirmation, key notice, address notice
    notice = to_previous[-1]
    notice_text = decrypt_text(customer_gpg, notice)
    assert "carol@bakery.test" in notice_text
    assert "If you did not make this change" in notice_text


def test_rejected_secret_key_page(
    page, live_server, settings, customer_gpg, screenshot_dir
) -> None:
    settings.SEALMAIL_BASE_URL = live_server.url
    fingerprint = customer_gpg.generate("Dave <dave@customer.test>")
    customer = Customer.objects.create(account_number="C-4004", name="Dave's Garage")
    user = get_user_model().objects.create_user("dave", "dave@customer.test", PASSWORD)
    customer.users.add(user)
    contact = Contact.objects.create(customer=customer, address="dave@customer.test")
    page.goto(live_server.url + "/accounts/password_reset/")
    shoot(page, screenshot_dir, "11-password-reset")
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
