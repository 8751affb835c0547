"""The private Postfix instance itself: loopback only, STARTTLS, Maildir, no relaying."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from email.message import EmailMessage

import pytest

from tests.mta.postfix import PostfixInstance, parse


def listening_addresses(port: int) -> list[str]:
    """Return the local IPv4 and IPv6 addresses with a TCP listener on ``port``."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, state = fields[1], fields[3]
                address_hex, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A is LISTEN
                    addresses.append(address_hex)
    return addresses


def test_listens_on_loopback_only(postfix: PostfixInstance) -> None:
    # /proc/net/tcp stores 127.0.0.1 as the little-endian word 0100007F.
    assert listening_addresses(postfix.port) == ["0100007F"]
    assert (
        postfix.command("postconf", "-h", "inet_interfaces").stdout.strip()
        == "127.0.0.1"
    )


def test_no_listener_on_port_25(postfix: PostfixInstance) -> None:
    assert listening_addresses(25) == []


def test_delivers_over_verified_starttls(postfix: PostfixInstance) -> None:
    recipient = f"alice-{uuid.uuid4().hex[:8]}@customer.test"
    message = EmailMessage()
    message["From"] = "billing@provider.test"
    message["To"] = recipient
    message["Subject"] = "Postfix fixture check"
    message.set_content("delivered through STARTTLS\n")
    context = ssl.create_default_context(cafile=str(postfix.ca_file))

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.starttls(context=context)
        client.send_message(message)

    [delivered] = postfix.wait_for_mail(recipient)
    parsed = parse(delivered)
    assert parsed["Subject"] == "Postfix fixture check"
    assert parsed.get_content() == "delivered through STARTTLS\n"
    assert "using TLSv1" in str(parsed["Received"])


def test_rejects_relaying_elsewhere(postfix: PostfixInstance) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.ehlo()
        client.mail("billing@provider.test")
        code, reply = client.rcpt("someone@example.org")
    assert code == 554
    assert b"Relay access denied" in reply


def test_rejects_unknown_provider_address(postfix: PostfixInstance) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.ehlo()
        client.mail("alice@customer.test")
        code, reply = client.rcpt("nobody@provider.test")
    assert code == 550
    assert b"no such role address" in reply


@pytest.mark.parametrize("address", ["support@provider.test", "sales@provider.test"])
def test_routes_role_addresses_to_lmtp(postfix: PostfixInstance, address: str) -> None:
    transport = postfix.command(
        "postmap", "-q", address, f"texthash:{postfix.config_dir}/transport"
    )
    assert transport.stdout.strip() == f"lmtp:inet:127.0.0.1:{postfix.lmtp_port}"
