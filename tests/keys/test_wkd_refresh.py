"""Refreshing contact keys from the contacts' Web Key Directories on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sealmail.contacts.models import Contact
from sealmail.keys import wkd
from sealmail.keys.wkd import WkdClient
from sealmail.notifications.keys import run_daily_check
from sealmail.notifications.models import KeyEvent
from sealmail.notifications.wkd_refresh import refresh_from_wkd
from tests.notifications.conftest import add_key, make_customer
from tests.notifications.wkd_server import WkdServer
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.django_db]

ADDRESS = "alice@customer.test"


def mails(category=None):
    from sealmail.outbox.models import OutboxMessage

    queryset = OutboxMessage.objects.order_by("id")
    if category:
        queryset = queryset.filter(category=category)
    return list(queryset)


@pytest.fixture
def server():
    with WkdServer() as running:
        yield running


@pytest.fixture
def gpg(tmp_path):
    return GnuPG(tmp_path / "gnupg")


@pytest.fixture
def contact(db, gpg):
    customer = make_customer("K-1", "Alice Example")
    contact = Contact.objects.create(
        customer=customer, address=ADDRESS, wkd_refresh=True
    )
    fingerprint = gpg.generate(f"Alice <{ADDRESS}>", "ed25519", "10d")
    gpg.run("--quick-add-key", fingerprint, "cv25519", "encr", "10d")
    add_key(contact, gpg.export(fingerprint))
    contact.refresh_from_db()
    return contact


def publish(server: WkdServer, data: bytes) -> None:
    path = wkd.wkd_paths(ADDRESS).advanced.split("?")[0]
    server.publish(path, data)


def client_for(server: WkdServer) -> WkdClient:
    return WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )


def test_same_fingerprint_applied(server, gpg, contact):
    fingerprint = contact.active_key.fingerprint.upper()
    old_until = contact.active_key.usable_until
    gpg.run("--quick-set-expire", fingerprint, "1y")
    gpg.run("--quick-set-expire", fingerprint, "1y", "*")
    publish(server, gpg.export(fingerprint, armor=False))
    result = refresh_from_wkd(client=client_for(server))
    contact.active_key.refresh_from_db()
    assert result.count("refreshed") == 1
    assert contact.active_key.usable_until > old_until + timedelta(days=300)
    notices = mails("account_notice")
    assert len(notices) == 1
    assert "Web Key Directory" in notices[0].text
    # The next day's lookup finds the same copy and changes nothing.
    again = refresh_from_wkd(client=client_for(server))
    assert again.count("unchanged") == 1
    assert len(mails()) == 1


def test_other_fingerprint_never_applied(server, gpg, contact):
    active = contact.active_key.fingerprint
    other = gpg.generate(f"Alice New <{ADDRESS}>", "ed25519", "1y")
    publish(server, gpg.export(other, armor=False))
    result = refresh_from_wkd(client=client_for(server))
    contact.refresh_from_db()
    assert result.count("other_fingerprint") == 1
    assert contact.active_key.fingerprint == active
    notices = mails("account_notice")
    assert len(notices) == 1
    assert notices[0].subject == "Another OpenPGP key is published for your address"
    grouped = " ".join(other[i : i + 4] for i in range(0, 40, 4))
    assert grouped in notices[0].text
    # The contact is notified about each other key once.
    refresh_from_wkd(client=client_for(server))
    assert len(mails()) == 1


def test_contact_without_opt_in_not_looked_up(server, gpg, contact):
    Contact.objects.filter(pk=contact.pk).update(wkd_refresh=False)
    result = refresh_from_wkd(client=client_for(server))
    assert result.looked_up == 0
    assert server.requests == []


def test_lookup_failure_recorded(server, contact):
    result = refresh_from_wkd(client=client_for(server))
    assert result.count("failed") == 1
    event = KeyEvent.objects.get(kind="wkd_failed")
    assert event.detail == "not_found"
    assert mails() == []


def test_daily_check_uses_configured_server(server, gpg, contact, settings, tmp_path):
    """The daily job refreshes by WKD before it warns, so no stale warning goes out."""
    ca_file = tmp_path / "ca.pem"
    server.ca.cert_pem.write_to_path(str(ca_file))
    settings.SEALMAIL_WKD_URLS = {"customer.test": server.url}
    settings.SEALMAIL_WKD_CA_FILE = str(ca_file)
    fingerprint = contact.active_key.fingerprint.upper()
    gpg.run("--quick-set-expire", fingerprint, "1y")
    gpg.run("--quick-set-expire", fingerprint, "1y", "*")
    publish(server, gpg.export(fingerprint, armor=False))
    # Within 30 days of the old expiry, but the refreshed copy runs a year.
    run_daily_check()
    categories = [mail.category for mail in mails()]
    assert categories == ["account_notice"]
    assert len(server.requests) == 1
