"""The staff ticket queue and the tickets API over HTTP."""

from __future__ import annotations

import pytest

from sealmail.api.models import ApiToken
from sealmail.inbound.models import InboundMessage, Ticket
from tests.inbound import shapes
from tests.inbound.conftest import register
from tests.inbound.test_hostile import deliver

pytestmark = pytest.mark.db_backends


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("agent", password="pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def ticket_message(peers, provider_keys, db, no_acknowledgement) -> InboundMessage:
    peer = peers["gosop"]
    register(peer)
    raw = shapes.attachment(
        peer,
        provider_keys.current,
        "with file",
        "See the file.\n",
        b"%PDF-1.4 data",
        "bill.pdf",
    )
    return deliver(raw)


def test_login_required(client, db):
    response = client.get("/staff/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_non_staff_forbidden(client, django_user_model, db):
    user = django_user_model.objects.create_user("customer", password="pw")
    client.force_login(user)
    assert client.get("/staff/").status_code == 403


def test_list_filters_by_queue_and_status(staff_client, db):
    Ticket.objects.create(queue="support@provider.test", subject="Support question")
    Ticket.objects.create(
        queue="sales@provider.test", subject="Sales question", status="closed"
    )
    page = staff_client.get(
        "/staff/", {"queue": "sales@provider.test"}
    ).content.decode()
    assert "Sales question" in page
    assert "Support question" not in page
    page = staff_client.get("/staff/", {"status": "open"}).content.decode()
    assert "Support question" in page
    assert "Sales question" not in page


def test_detail_shows_badges_outside_content(staff_client, ticket_message):
    response = staff_client.get(f"/staff/tickets/{ticket_message.ticket_id}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "Decrypted (encrypted attachment)" in page
    assert "received as bill.pdf.pgp" in page
    status_start = page.index('<header class="sealmail-status"')
    status_end = page.index("</header>", status_start)
    assert status_start < page.index("Encrypted</li>") < status_end
    assert page.index("See the file.") > status_end


def test_attachment_download(staff_client, ticket_message):
    part = ticket_message.parts.get(filename="bill.pdf")
    response = staff_client.get(f"/staff/parts/{part.pk}/download/")
    assert response.status_code == 200
    assert response.content == b"%PDF-1.4 data"
    assert response["Content-Type"] == "application/octet-stream"
    assert 'filename="bill.pdf"' in response["Content-Disposition"]


def test_raw_message_viewable(staff_client, ticket_message):
    response = staff_client.get(f"/staff/messages/{ticket_message.pk}/raw/")
    assert response.status_code == 200
    assert response.content == bytes(ticket_message.raw)
    assert response["Content-Type"].startswith("text/plain")


def test_html_sanitised_remote_blocked(staff_client, db, no_acknowledgement):
    html = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p onclick="alert(1)">Hi</p><img src="https://tracker.test/p.gif">'
        b'<script>alert(2)</script><div style="background:url(https://tracker.test/b)">x</div>'
    )
    message = deliver(shapes.headers("someone@customer.test", "html") + html)
    page = staff_client.get(f"/staff/tickets/{message.ticket_id}/").content.decode()
    assert "tracker.test" not in page
    assert "alert(" not in page
    assert "<p>Hi</p>" in page


def test_api_lists_and_reads_tickets(client, ticket_message):
    _, token = ApiToken.issue("tests")
    headers = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/v1/tickets", headers=headers)
    assert listed.status_code == 200
    assert [ticket["id"] for ticket in listed.json()] == [ticket_message.ticket_id]
    detail = client.get(
        f"/api/v1/tickets/{ticket_message.ticket_id}", headers=headers
    ).json()
    message = detail["messages"][0]
    assert message["encryption"] == "full"
    parts = {part["filename"]: part for part in message["parts"]}
    assert parts["bill.pdf"]["encryption"] == "decrypted"
    assert parts["bill.pdf"]["original_filename"] == "bill.pdf.pgp"
    assert parts["bill.pdf"]["signatures"][0]["scope"] == "part"


def test_api_rejects_huge_offset(client, db):
    _, token = ApiToken.issue("paging")
    headers = {"Authorization": f"Bearer {token}"}
    huge = client.get("/api/v1/tickets?offset=14888959918488343612477145088", headers=headers)
    assert huge.status_code == 422
    too_many = client.get("/api/v1/tickets?limit=501", headers=headers)
    assert too_many.status_code == 422
    assert client.get("/api/v1/tickets?limit=500", headers=headers).status_code == 200


def test_api_requires_token(client, db):
    assert client.get("/api/v1/tickets").status_code == 401


def test_reply_thread_by_reference(peers, provider_keys, db, no_acknowledgement):
    peer = peers["gnupg"]
    register(peer)
    first = deliver(shapes.plain(peer.address, "Help", "first\n"))
    reference = first.ticket.reference
    second = deliver(shapes.plain(peer.address, f"Re: [{reference}] Help", "second\n"))
    third = deliver(
        shapes.plain(
            peer.address, "no reference", "third\n", ("In-Reply-To", first.message_id)
        )
    )
    assert second.ticket_id == first.ticket_id
    assert third.ticket_id == first.ticket_id
    assert Ticket.objects.count() == 1


def test_reference_of_other_customer_opens_new_ticket(peers, db, no_acknowledgement):
    register(peers["gnupg"])
    register(peers["sq"])
    first = deliver(shapes.plain(peers["gnupg"].address, "Mine", "first\n"))
    other = deliver(
        shapes.plain(peers["sq"].address, f"[{first.ticket.reference}] hijack", "x\n")
    )
    assert other.ticket_id != first.ticket_id


def test_unparseable_message_kept(db, no_acknowledgement, monkeypatch):
    from sealmail.inbound import processing

    def broken(*args, **kwargs):
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(processing, "parse_message", broken)
    message = deliver(shapes.plain("someone@customer.test", "boom", "x\n"))
    assert message.state == InboundMessage.State.FAILED
    assert "parser exploded" in message.parse_error
    assert bytes(message.raw).endswith(b"x\r\n")
